"""Prometheus metrics shared by every process, in the naming of the widely used gRPC
Prometheus middleware (grpc_server_handled_total and friends), plus the event machinery's."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")

grpc_server_started_total = Counter(
    "grpc_server_started_total", "RPCs started on the server.", GRPC_LABELS
)
grpc_server_handled_total = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, regardless of success or failure.",
    (*GRPC_LABELS, "grpc_code"),
)
grpc_server_handling_seconds = Histogram(
    "grpc_server_handling_seconds",
    "Response latency of RPCs handled by the server.",
    GRPC_LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
grpc_server_msg_received_total = Counter(
    "grpc_server_msg_received_total", "Stream messages received by the server.", GRPC_LABELS
)
grpc_server_msg_sent_total = Counter(
    "grpc_server_msg_sent_total", "Stream messages sent by the server.", GRPC_LABELS
)

events_published_total = Counter(
    "agritrace_events_published_total", "Events relayed from the outbox.", ("service", "event")
)
events_handled_total = Counter(
    "agritrace_events_handled_total",
    "Events handled by consumers; outcome is handled or duplicate.",
    ("consumer", "event", "outcome"),
)
outbox_pending = Gauge(
    "agritrace_outbox_pending", "Events written but not yet relayed.", ("service",)
)
outbox_relay_errors_total = Counter(
    "agritrace_outbox_relay_errors_total", "Failed relay attempts (retried).", ("service",)
)


def serve_metrics(port: int) -> None:
    """Starts the /metrics HTTP endpoint (a daemon thread); port 0 disables it."""
    if port:
        start_http_server(port)
