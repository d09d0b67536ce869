"""OpenTelemetry set-up: a batch span processor, and the OTLP exporter when
`OTEL_EXPORTER_OTLP_ENDPOINT` is set. Without an exporter nothing would read recorded spans,
so they are not recorded (sampler off, unless OTEL_TRACES_SAMPLER says otherwise): spans still
get ids, which reach logs and travel with calls and events, at a fraction of the cost.

Context travels as W3C trace-context carriers: gRPC metadata and event headers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider, sampling
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
    if exporter is None and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        exporter = _otlp_exporter(grpc_free)
    sampler = None  # the SDK's default, or OTEL_TRACES_SAMPLER
    if exporter is None and not os.environ.get("OTEL_TRACES_SAMPLER"):
        sampler = sampling.ALWAYS_OFF
    provider = TracerProvider(
        sampler=sampler,
        resource=Resource.create(
            {"service.name": os.environ.get("OTEL_SERVICE_NAME", f"agritrace-{service_name}")}
        ),
    )
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
