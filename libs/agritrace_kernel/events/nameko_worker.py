"""Microservices-mode consumers: a nameko service built from a service's subscriptions, run
in its own process. eventlet monkey-patches the process, so this module must never be
imported next to grpcio: workers are started by `python -m <service> worker` only.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence
from typing import Any

from agritrace_kernel import metrics
from agritrace_kernel.events.bus import Subscription
from agritrace_kernel.events.model import Event
from agritrace_kernel.process import settle_heap

log = logging.getLogger(__name__)

# The least time before an event whose handler failed is delivered again.
REDELIVERY_DELAY_SECONDS = 2.0


def build_worker_service(service: str, subscriptions: Sequence[Subscription]) -> type:
    """A nameko service class with one event handler entrypoint per subscription.

    SERVICE_POOL handlers share one queue per (event, worker service), so replicas of a
    worker compete for events instead of each handling every one; reliable delivery acks
    only after the handler returned, so a crash re-delivers (and the inbox drops repeats).
    An event whose handler fails goes back to the queue too (nameko would ack and drop it):
    a database restart longer than a handler's own retries must not lose events. It comes
    back no sooner than REDELIVERY_DELAY_SECONDS; one that keeps failing is logged and
    counted (agritrace_events_handled_total{outcome="failed"}) each time, not lost.
    """
    import eventlet
    from nameko.events import SERVICE_POOL, event_handler

    attributes: dict[str, Any] = {"name": f"{service}_worker"}
    for subscription in subscriptions:

        def entrypoint(_self: object, payload: dict[str, Any], _sub: Subscription = subscription
                       ) -> None:
            event = Event.from_wire(payload)
            try:
                _sub.handle(event)
            except Exception:
                metrics.events_handled_total.labels(_sub.consumer, event.name, "failed").inc()
                log.exception("event handler failed; the event goes back to its queue",
                              extra={"consumer": _sub.consumer, "event": event.routing_key,
                                     "event_id": event.event_id})
                eventlet.sleep(REDELIVERY_DELAY_SECONDS)
                raise

        method = f"on_{subscription.source}_{subscription.name}__{subscription.consumer}"
        attributes[method] = event_handler(
            subscription.source,
            subscription.name,
            handler_type=SERVICE_POOL,
            reliable_delivery=True,
            requeue_on_error=True,
        )(entrypoint)
    return type(f"{service.title().replace('-', '')}Worker", (), attributes)


def run_worker(service_class: type, amqp_uri: str) -> None:
    """Runs the nameko service until SIGTERM/SIGINT, then stops gracefully (in-flight
    handlers finish, unacked messages return to the queue)."""
    import eventlet
    from nameko.runners import ServiceRunner

    runner = ServiceRunner({"AMQP_URI": amqp_uri, "max_workers": 4})
    runner.add_service(service_class)
    stop_requested = eventlet.event.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("worker stopping", extra={"signal": signum})
        if not stop_requested.ready():
            stop_requested.send(None)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    settle_heap()
    runner.start()
    log.info("worker started", extra={"service": getattr(service_class, "name", "")})
    stop_requested.wait()
    runner.stop()
