"""The bridge's event consumer (microservices mode): a nameko worker subscribed to the
national events that may concern its province, queueing each one that does for the pusher
in the serve process. Imported only by `python -m agritrace_bridge worker`, after eventlet
has patched the process: nothing here may import grpc."""

from __future__ import annotations

from agritrace_bridge.adapters.repository import SqlAlchemyBridgeUnitOfWork
from agritrace_bridge.config import BridgeConfig, load_config
from agritrace_bridge.domain.outbound import SUBSCRIBED
from agritrace_bridge.service_layer.outbound import NationalEventIntake
from agritrace_kernel.config import Settings
from agritrace_kernel.events.bus import IdempotentHandler, Subscription
from agritrace_kernel.events.nameko_worker import build_worker_service, run_worker
from agritrace_kernel.metrics import serve_metrics
from agritrace_kernel.store import ServiceStore


def subscriptions(config: BridgeConfig, store: ServiceStore) -> list[Subscription]:
    # One consumer (and so one queue per event) for each province's bridge.
    consumer = config.service.replace("-", "_")
    handler = IdempotentHandler(consumer, NationalEventIntake(config.province).handle,
                                lambda: SqlAlchemyBridgeUnitOfWork(store.sessions))
    return [Subscription(consumer, source, name, handler) for source, name in SUBSCRIBED]


def main(settings: Settings) -> int:
    config = load_config()
    if config is None:
        return 2
    store = ServiceStore.open(settings, config.service, None)
    serve_metrics(settings.metrics_port)
    try:
        run_worker(build_worker_service(config.service.replace("-", "_"),
                                        subscriptions(config, store)), settings.amqp_uri)
    finally:
        store.close()
    return 0
