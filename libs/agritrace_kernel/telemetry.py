"""OpenTelemetry set-up: a batch span processor, and the OTLP exporter when
`OTEL_EXPORTER_OTLP_ENDPOINT` is set. Without an endpoint no exporter runs, but spans are
still created so trace ids reach logs and travel with events.

Context travels as W3C trace-context carriers: gRPC metadata and event headers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

_configured = False


def configure_tracing(
    service_name: str, exporter: SpanExporter | None = None, *, grpc_free: bool = False
) -> None:
    """Installs the global tracer provider once per process. `grpc_free` processes (nameko
    workers: eventlet must not meet grpcio) export over OTLP/HTTP instead of OTLP/gRPC."""
    global _configured
    if _configured:
        return
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": os.environ.get("OTEL_SERVICE_NAME", f"agritrace-{service_name}")}
        )
    )
    if exporter is None and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        exporter = _otlp_exporter(grpc_free)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = True


def inject_context() -> dict[str, str]:
    """The current trace context as a carrier (for event headers)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract_context(carrier: Mapping[str, str]) -> context.Context:
    return propagate.extract(carrier)


def inject_into(carrier: MutableMapping[str, str]) -> None:
    propagate.inject(carrier)


def _otlp_exporter(grpc_free: bool) -> SpanExporter:
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    if grpc_free or protocol.startswith("http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()
