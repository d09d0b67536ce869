"""Query event consumer process (microservices mode): a nameko worker that keeps the read
model up to date from the registry's, coding's and flow's events. Imported only by
`python -m agritrace_query worker`, after eventlet has patched the process."""

from __future__ import annotations

from agritrace_kernel.config import Settings
from agritrace_kernel.events.nameko_worker import build_worker_service, run_worker
from agritrace_kernel.metrics import serve_metrics
from agritrace_query.bootstrap import bootstrap


def main(settings: Settings) -> None:
    app = bootstrap(settings, publisher=None)
    serve_metrics(settings.metrics_port)
    run_worker(build_worker_service("query", app.subscriptions), settings.amqp_uri)
