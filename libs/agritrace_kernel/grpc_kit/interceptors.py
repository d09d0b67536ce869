"""The server interceptor chain. Each concern is a scope entered before a call and left after
it - for a streamed response, after the last message - so one implementation serves every
streaming shape. Order (outermost first): tracing, metrics, logging, any extra interceptors
such as authentication, then domain-error mapping, so everything outside it sees the final
status code."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from agritrace_kernel import errors, metrics
from agritrace_kernel.grpc_kit.status import internal_status, rich_status
from agritrace_kernel.telemetry import extract_context

log = logging.getLogger("agritrace.rpc")
tracer = trace.get_tracer("agritrace.grpc")

Behavior = Callable[[Any, grpc.ServicerContext], Any]
# Wrapped handlers an interceptor keeps (one per method, in practice).
MAX_WRAPPED_HANDLERS = 4096


@dataclass(frozen=True)
class MethodInfo:
    """What an interceptor knows of the called method."""

    full_method: str  # "/agritrace.registry.v1.RegistryService/GetSubject"
    service: str
    method: str
    request_streaming: bool
    response_streaming: bool

    @property
    def grpc_type(self) -> str:
        if self.request_streaming and self.response_streaming:
            return "bidi_stream"
        if self.request_streaming:
            return "client_stream"
        return "server_stream" if self.response_streaming else "unary"


def final_code(context: grpc.ServicerContext, failed: bool) -> grpc.StatusCode:
    """The code the call ends with: what the handler (or an abort) set, else OK/UNKNOWN."""
    code = context.code()  # type: ignore[attr-defined]  # in grpcio, missing from the stubs
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK


class ScopedInterceptor(grpc.ServerInterceptor):
    """Base: subclasses implement `scope(context, info)`, a context manager around the call."""

    def scope(
        self, context: grpc.ServicerContext, info: MethodInfo
    ) -> AbstractContextManager[None]:
        raise NotImplementedError

    def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(details)
        if handler is None:
            return None
        # grpc runs the chain on every call, but a method's registered handler - and so each
        # interceptor's wrapping of it - is the same object call after call: wrap it once.
        # Keyed by identity, with the handler kept so its id cannot be reused.
        wrapped_handlers: dict[int, tuple[Any, grpc.RpcMethodHandler[Any, Any]]] = (
            self.__dict__.setdefault("_wrapped_handlers", {}))
        found = wrapped_handlers.get(id(handler))
        if found is not None and found[0] is handler:
            return found[1]
        new_handler = self._wrap(handler, details.method)
        if len(wrapped_handlers) >= MAX_WRAPPED_HANDLERS:
            wrapped_handlers.clear()
        wrapped_handlers[id(handler)] = (handler, new_handler)
        return new_handler

    def _wrap(self, handler: grpc.RpcMethodHandler[Any, Any], full_method: str
              ) -> grpc.RpcMethodHandler[Any, Any]:
        service, _, method = full_method.lstrip("/").partition("/")
        info = MethodInfo(
            full_method, service, method, handler.request_streaming, handler.response_streaming
        )
        kind = (
            f"{'stream' if info.request_streaming else 'unary'}_"
            f"{'stream' if info.response_streaming else 'unary'}"
        )
        behavior: Behavior = getattr(handler, kind)
        scope = self.scope

        if info.response_streaming:

            def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
                with scope(context, info):
                    yield from behavior(request, context)

        else:

            def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
                with scope(context, info):
                    return behavior(request, context)

        factory = getattr(grpc, f"{kind}_rpc_method_handler")
        new_handler: grpc.RpcMethodHandler[Any, Any] = factory(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        return new_handler


class TracingInterceptor(ScopedInterceptor):
    """A server span per call, continuing the caller's trace from the metadata."""

    @contextmanager
    def scope(self, context: grpc.ServicerContext, info: MethodInfo) -> Iterator[None]:
        carrier = {
            key: value
            for key, value in context.invocation_metadata()
            if isinstance(value, str)
        }
        token = otel_context.attach(extract_context(carrier))
        try:
            with tracer.start_as_current_span(
                info.full_method.lstrip("/"),
                kind=trace.SpanKind.SERVER,
                attributes={
                    "rpc.system": "grpc",
                    "rpc.service": info.service,
                    "rpc.method": info.method,
                },
                record_exception=False,
                set_status_on_exception=False,
            ) as span, observed(context, lambda outcome: _end_span(span, outcome)):
                yield
        finally:
            otel_context.detach(token)


# Client mistakes are the caller's, not the server's: they do not mark the span as failed.
_CLIENT_CODES = frozenset({grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
                           grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS})


def _end_span(span: trace.Span, outcome: CallOutcome) -> None:
    span.set_attribute("rpc.grpc.status_code", outcome.code.value[0])
    if outcome.code not in _CLIENT_CODES:
        span.set_status(Status(StatusCode.ERROR, outcome.code.name))


@dataclass
class CallOutcome:
    """How a call ended, as the observing interceptors see it."""

    code: grpc.StatusCode = grpc.StatusCode.OK
    seconds: float = 0.0


@contextmanager
def observed(
    context: grpc.ServicerContext, on_done: Callable[[CallOutcome], None]
) -> Iterator[None]:
    """Times the call and reports its final status code to `on_done`, however it ends."""
    started = time.perf_counter()
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        on_done(CallOutcome(final_code(context, failed), time.perf_counter() - started))


class MetricsInterceptor(ScopedInterceptor):
    """RED metrics per method, named like the go-grpc-prometheus middleware."""

    def scope(
        self, context: grpc.ServicerContext, info: MethodInfo
    ) -> AbstractContextManager[None]:
        labels = (info.grpc_type, info.service, info.method)
        metrics.grpc_server_started_total.labels(*labels).inc()

        def record(outcome: CallOutcome) -> None:
            metrics.grpc_server_handling_seconds.labels(*labels).observe(outcome.seconds)
            metrics.grpc_server_handled_total.labels(*labels, outcome.code.name).inc()

        return observed(context, record)


class LoggingInterceptor(ScopedInterceptor):
    """One line per call: method, code, duration. Never the request: it may hold personal
    data. Successful calls log at DEBUG, client errors at INFO, server errors at WARNING."""

    _SERVER_FAULTS = frozenset(
        {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE,
         grpc.StatusCode.DATA_LOSS, grpc.StatusCode.DEADLINE_EXCEEDED}
    )

    def scope(
        self, context: grpc.ServicerContext, info: MethodInfo
    ) -> AbstractContextManager[None]:
        def write(outcome: CallOutcome) -> None:
            if outcome.code is grpc.StatusCode.OK:
                level = logging.DEBUG
            elif outcome.code in self._SERVER_FAULTS:
                level = logging.WARNING
            else:
                level = logging.INFO
            if log.isEnabledFor(level):
                log.log(
                    level,
                    "rpc %s %s",
                    info.full_method,
                    outcome.code.name,
                    extra={
                        "grpc_method": info.full_method,
                        "grpc_code": outcome.code.name,
                        "duration_ms": round(outcome.seconds * 1000, 3),
                    },
                )

        return observed(context, write)


class ErrorInterceptor(ScopedInterceptor):
    """Domain errors become canonical codes with rich details; anything unexpected becomes
    INTERNAL with a trace id and no internals. Refuses calls whose deadline already passed."""

    @contextmanager
    def scope(self, context: grpc.ServicerContext, info: MethodInfo) -> Iterator[None]:
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed before the call")
        try:
            yield
        except errors.DomainError as error:
            context.abort_with_status(rich_status(error))
        except Exception as error:
            if _is_abort(context, error):
                raise
            span_context = trace.get_current_span().get_span_context()
            trace_id = format(span_context.trace_id, "032x") if span_context.is_valid else ""
            log.exception("unhandled error in %s", info.full_method)
            context.abort_with_status(internal_status(trace_id))


def _is_abort(context: grpc.ServicerContext, error: Exception) -> bool:
    """grpc's abort() raises a bare Exception after setting the code; let it through."""
    code = context.code()  # type: ignore[attr-defined]
    return type(error) is Exception and isinstance(code, grpc.StatusCode)


def default_interceptors(extra: list[grpc.ServerInterceptor] | None = None
                         ) -> list[grpc.ServerInterceptor]:
    """The chain every server uses; `extra` (e.g. authentication) sits just outside error
    mapping so its refusals become proper statuses too."""
    return [
        TracingInterceptor(),
        MetricsInterceptor(),
        LoggingInterceptor(),
        *(extra or []),
        ErrorInterceptor(),
    ]
