"""unrecorded_span against what the OpenTelemetry SDK's tracer makes under ALWAYS_OFF."""

from __future__ import annotations

import pytest
from opentelemetry import context, trace
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from agritrace_kernel.telemetry import unrecorded_span

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


def carrier(flags: str) -> dict[str, str]:
    return {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-{flags}", "tracestate": "vendor=abc"}


def sdk_span(parent: context.Context) -> trace.Span:
    tracer = TracerProvider(sampler=sampling.ALWAYS_OFF).get_tracer("tests")
    return tracer.start_span("call", context=parent, kind=trace.SpanKind.SERVER)


@pytest.mark.parametrize("flags", ["00", "01", "02", "03"])  # sampled, random trace id
def test_a_callers_trace_continues_as_the_sdk_would_continue_it(flags: str) -> None:
    parent = TraceContextTextMapPropagator().extract(carrier(flags))
    ours, theirs = unrecorded_span(parent), sdk_span(parent)
    made, expected = ours.get_span_context(), theirs.get_span_context()

    assert made.trace_id == expected.trace_id == int(TRACE_ID, 16)
    assert made.trace_state == expected.trace_state
    assert made.trace_flags == expected.trace_flags  # not sampled, whatever the caller said
    assert not made.trace_flags.sampled
    assert made.is_remote is expected.is_remote is False
    assert made.is_valid
    assert made.span_id != int(SPAN_ID, 16)
    assert ours.is_recording() is theirs.is_recording() is False


def test_without_a_caller_trace_each_span_starts_a_new_one() -> None:
    first = unrecorded_span(context.Context()).get_span_context()
    second = unrecorded_span(context.Context()).get_span_context()
    expected = sdk_span(context.Context()).get_span_context()

    assert first.is_valid and second.is_valid
    assert first.trace_id != second.trace_id
    assert first.span_id != second.span_id
    assert first.trace_flags == expected.trace_flags
    assert first.trace_state == expected.trace_state
