"""sso event consumer process (microservices mode): a nameko worker. Imported only by
`python -m agritrace_sso worker`, after eventlet has patched the process. sso subscribes to
no events yet, so the worker has no handlers; it exists so every service runs the same way."""

from __future__ import annotations

from agritrace_kernel.config import Settings
from agritrace_kernel.events.nameko_worker import build_worker_service, run_worker
from agritrace_kernel.metrics import serve_metrics
from agritrace_sso.bootstrap import bootstrap


def main(settings: Settings) -> None:
    app = bootstrap(settings, publisher=None)
    serve_metrics(settings.metrics_port)
    run_worker(build_worker_service("sso", app.subscriptions), settings.amqp_uri)
