"""The server interceptor chain. Each concern is a scope entered before a call and left after
it - for a streamed response, after the last message - so one implementation serves every
streaming shape. Order (outermost first): tracing, metrics, logging, any extra interceptors
such as authentication, then domain-error mapping, so everything outside it sees the final
status code. create_server applies the chain to each handler once, as it is added
(ChainedServer), rather than as grpc interceptors, whose pipeline grpc runs on its one
poller thread for every call; each scope still works as a grpc interceptor too."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from agritrace_kernel import errors, metrics, telemetry
from agritrace_kernel.grpc_kit.status import internal_status, rich_status

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


class _WrappedOnce:
    """A method's handler is the same object call after call, and so is its wrapping: each
    is built once. Keyed by identity, with the handler kept so its id cannot be reused."""

    def __init__(self) -> None:
        self._kept: dict[int, tuple[Any, grpc.RpcMethodHandler[Any, Any]]] = {}

    def get(self, handler: grpc.RpcMethodHandler[Any, Any],
            wrap: Callable[[], grpc.RpcMethodHandler[Any, Any]]
            ) -> grpc.RpcMethodHandler[Any, Any]:
        found = self._kept.get(id(handler))
        if found is not None and found[0] is handler:
            return found[1]
        wrapped = wrap()
        if len(self._kept) >= MAX_WRAPPED_HANDLERS:
            self._kept.clear()
        self._kept[id(handler)] = (handler, wrapped)
        return wrapped


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
        wrapped: _WrappedOnce = self.__dict__.setdefault("_wrapped_handlers", _WrappedOnce())
        return wrapped.get(handler, lambda: self._wrap(handler, details.method))

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

    def __init__(self) -> None:
        self._attributes: dict[str, dict[str, str]] = {}

    def _span_attributes(self, info: MethodInfo) -> dict[str, str]:
        found = self._attributes.get(info.full_method)
        if found is None:
            found = self._attributes[info.full_method] = {
                "rpc.system": "grpc", "rpc.service": info.service, "rpc.method": info.method}
        return found

    def scope(self, context: grpc.ServicerContext, info: MethodInfo
              ) -> AbstractContextManager[None]:
        return _ServerSpan(context, info.full_method.lstrip("/"), self._span_attributes(info))


class _ServerSpan:
    """A call's span, started and made current by hand: `start_as_current_span` nests three
    generator context managers, and this runs around every call. (Every scope of the chain
    is a class for that reason: a generator-based one costs ~1 µs more per call.)"""

    __slots__ = ("_attributes", "_context", "_name", "_span", "_token")

    def __init__(self, context: grpc.ServicerContext, name: str,
                 attributes: dict[str, str]) -> None:
        self._context = context
        self._name = name
        self._attributes = attributes

    def __enter__(self) -> None:
        carrier = {key: value for key, value in self._context.invocation_metadata()
                   if isinstance(value, str)}
        parent = telemetry.extract_context(carrier)
        if telemetry.ids_only():
            self._span = telemetry.unrecorded_span(parent)
        else:
            self._span = tracer.start_span(
                self._name, context=parent, kind=trace.SpanKind.SERVER,
                attributes=self._attributes, record_exception=False,
                set_status_on_exception=False)
        self._token = otel_context.attach(trace.set_span_in_context(self._span, parent))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: object) -> None:
        try:
            if self._span.is_recording():
                _end_span(self._span, final_code(self._context, exc_type is not None))
                self._span.end()
        finally:
            otel_context.detach(self._token)


# Client mistakes are the caller's, not the server's: they do not mark the span as failed.
_CLIENT_CODES = frozenset({grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
                           grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS})


def _end_span(span: trace.Span, code: grpc.StatusCode) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code not in _CLIENT_CODES:
        span.set_status(Status(StatusCode.ERROR, code.name))


@dataclass
class CallOutcome:
    """How a call ended, as the observing interceptors see it."""

    code: grpc.StatusCode = grpc.StatusCode.OK
    seconds: float = 0.0


class observed:  # noqa: N801 - used as a function: `with observed(context, on_done):`
    """Times the call and reports its final status code to `on_done`, however it ends. (A
    class, not a generator: it runs around every call, twice.)"""

    __slots__ = ("_context", "_on_done", "_started")

    def __init__(self, context: grpc.ServicerContext,
                 on_done: Callable[[CallOutcome], None]) -> None:
        self._context = context
        self._on_done = on_done
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: object) -> None:
        self._on_done(CallOutcome(final_code(self._context, exc_type is not None),
                                  time.perf_counter() - self._started))


class _MethodMetrics:
    """A method's labelled series, looked up once instead of on every call."""

    def __init__(self, info: MethodInfo) -> None:
        self._labels = (info.grpc_type, info.service, info.method)
        self.started = metrics.grpc_server_started_total.labels(*self._labels)
        self._seconds = metrics.grpc_server_handling_seconds.labels(*self._labels)
        self._handled: dict[grpc.StatusCode, Any] = {}

    def record(self, outcome: CallOutcome) -> None:
        self._seconds.observe(outcome.seconds)
        handled = self._handled.get(outcome.code)
        if handled is None:
            handled = self._handled[outcome.code] = metrics.grpc_server_handled_total.labels(
                *self._labels, outcome.code.name)
        handled.inc()


class MetricsInterceptor(ScopedInterceptor):
    """RED metrics per method, named like the go-grpc-prometheus middleware."""

    def __init__(self) -> None:
        self._methods: dict[str, _MethodMetrics] = {}

    def scope(
        self, context: grpc.ServicerContext, info: MethodInfo
    ) -> AbstractContextManager[None]:
        series = self._methods.get(info.full_method)
        if series is None:
            series = self._methods[info.full_method] = _MethodMetrics(info)
        series.started.inc()
        return observed(context, series.record)


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

    def scope(self, context: grpc.ServicerContext, info: MethodInfo
              ) -> AbstractContextManager[None]:
        return _ErrorMapping(context, info.full_method)


class _ErrorMapping:
    __slots__ = ("_context", "_method")

    def __init__(self, context: grpc.ServicerContext, method: str) -> None:
        self._context = context
        self._method = method

    def __enter__(self) -> None:
        remaining = self._context.time_remaining()
        if remaining is not None and remaining <= 0:
            self._context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                "deadline passed before the call")

    def __exit__(self, exc_type: type[BaseException] | None, error: BaseException | None,
                 traceback: object) -> None:
        # Raising here (abort raises) replaces the error, as an `except` clause would.
        if isinstance(error, errors.DomainError):
            self._context.abort_with_status(rich_status(error))
        elif isinstance(error, Exception) and not _is_abort(self._context, error):
            span_context = trace.get_current_span().get_span_context()
            trace_id = format(span_context.trace_id, "032x") if span_context.is_valid else ""
            log.error("unhandled error in %s", self._method, exc_info=error)
            self._context.abort_with_status(internal_status(trace_id))


def _is_abort(context: grpc.ServicerContext, error: Exception) -> bool:
    """grpc's abort() raises a bare Exception after setting the code; let it through."""
    code = context.code()  # type: ignore[attr-defined]
    return type(error) is Exception and isinstance(code, grpc.StatusCode)


def default_interceptors(extra: list[ScopedInterceptor] | None = None
                         ) -> list[ScopedInterceptor]:
    """The chain every server uses; `extra` (e.g. authentication) sits just outside error
    mapping so its refusals become proper statuses too."""
    return [
        TracingInterceptor(),
        MetricsInterceptor(),
        LoggingInterceptor(),
        *(extra or []),
        ErrorInterceptor(),
    ]


def chain_handler(handler: grpc.RpcMethodHandler[Any, Any], full_method: str,
                  chain: Sequence[ScopedInterceptor]) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` wrapped in `chain`'s scopes, the first outermost."""
    for interceptor in reversed(chain):
        handler = interceptor._wrap(handler, full_method)
    return handler


class _ChainedGenericHandler(grpc.GenericRpcHandler):
    """A generic handler whose answers (looked up per call by grpc) come wrapped."""

    def __init__(self, inner: grpc.GenericRpcHandler, chain: Sequence[ScopedInterceptor]
                 ) -> None:
        self._inner = inner
        self._chain = chain
        self._wrapped = _WrappedOnce()

    def service(self, details: grpc.HandlerCallDetails
                ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = self._inner.service(details)
        if handler is None:
            return None
        return self._wrapped.get(
            handler, lambda: chain_handler(handler, details.method, self._chain))


class ChainedServer(grpc.Server):
    """A server as registrations see it: each handler they add is wrapped in the chain once,
    when added, instead of grpc running an interceptor pipeline on the poller thread for
    every call."""

    def __init__(self, server: grpc.Server, chain: Sequence[ScopedInterceptor]) -> None:
        self._server = server
        self._chain = list(chain)

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(tuple(
            _ChainedGenericHandler(handler, self._chain) for handler in generic_rpc_handlers))

    def add_registered_method_handlers(self, service_name: str, method_handlers: Any) -> None:
        self._server.add_registered_method_handlers(service_name, {
            name: chain_handler(handler, f"/{service_name}/{name}", self._chain)
            for name, handler in method_handlers.items()})

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: Any) -> int:
        return self._server.add_secure_port(address, server_credentials)

    def start(self) -> None:
        self._server.start()

    def stop(self, grace: float | None) -> Any:
        return self._server.stop(grace)

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._server.wait_for_termination(timeout)
