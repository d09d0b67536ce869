"""The gRPC server kit on a real in-process server (127.0.0.1, port 0) hosting a tiny generic
service with bytes messages: error mapping with rich details, metrics, health, reflection and
deadlines."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from agritrace_kernel import telemetry
from agritrace_kernel.errors import (
    ConcurrencyConflict,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from agritrace_kernel.grpc_kit.interceptors import MethodInfo, ScopedInterceptor
from agritrace_kernel.grpc_kit.server import GrpcServer, ServiceRegistration, create_server
from agritrace_kernel.telemetry import configure_tracing

SERVICE = "agritrace.test.v1.Probe"
SECRET = "connection to 10.0.0.7 failed for 330106199001011234"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module", autouse=True)
def tracing() -> None:
    configure_tracing("kernel-tests", InMemorySpanExporter())


def fail(what: bytes) -> None:
    """Raises what the request asks for."""
    if what == b"invalid":
        raise InvalidArgument([
            FieldViolation("registration.credit_code", "has 16 characters"),
            FieldViolation("registration.name", "is required"),
        ])
    if what == b"notfound":
        raise NotFound("subject S1 does not exist", reason="SUBJECT_NOT_FOUND")
    if what == b"stale":
        raise ConcurrencyConflict("version 1 is stale", metadata={"current_version": "3"})
    if what == b"illegal":
        raise FailedPrecondition("cannot approve", reason="ILLEGAL_STATUS_TRANSITION")
    if what == b"boom":
        raise RuntimeError(SECRET)


@dataclass
class Probe:
    """The behaviour behind the test service, and what it saw."""

    ready: bool = False
    calls: list[bytes] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.calls.append(request)
        if request == b"block":
            self.release.wait(10)
        fail(request)
        return b"pong:" + request

    def server_stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self.calls.append(request)
        yield b"first"
        fail(request)
        yield b"second"

    def bidi(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for request in requests:
            self.calls.append(request)
            fail(request)
            yield b"echo:" + request

    def registration(self) -> ServiceRegistration:
        handler = grpc.method_handlers_generic_handler(SERVICE, {
            "Unary": grpc.unary_unary_rpc_method_handler(self.unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi),
        })
        return ServiceRegistration(
            name=SERVICE,
            add_to_server=lambda server: server.add_generic_rpc_handlers((handler,)),
            readiness=(lambda: self.ready,),
        )


@dataclass
class Running:
    probe: Probe
    server: GrpcServer
    channel: grpc.Channel

    def unary(self) -> grpc.UnaryUnaryMultiCallable:
        return self.channel.unary_unary(f"/{SERVICE}/Unary")

    def server_stream(self) -> grpc.UnaryStreamMultiCallable:
        return self.channel.unary_stream(f"/{SERVICE}/ServerStream")

    def bidi(self) -> grpc.StreamStreamMultiCallable:
        return self.channel.stream_stream(f"/{SERVICE}/Bidi")


def start(max_workers: int = 4, extra: list[grpc.ServerInterceptor] | None = None) -> Running:
    probe = Probe()
    server = create_server("127.0.0.1:0", [probe.registration()], max_workers=max_workers,
                           extra_interceptors=extra)
    server.server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    return Running(probe, server, channel)


def stop(running: Running) -> None:
    running.probe.release.set()
    running.channel.close()
    running.server.stop(0)


@pytest.fixture
def running() -> Iterator[Running]:
    handle = start()
    yield handle
    stop(handle)


def details(error: grpc.RpcError) -> tuple[status_pb2.Status, dict[str, Any]]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no google.rpc.Status in the trailers"
    unpacked: dict[str, Any] = {}
    for packed in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
            if packed.Is(kind.DESCRIPTOR):
                message = kind()
                packed.Unpack(message)
                unpacked[kind.__name__] = message
    return status, unpacked


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def eventually(check: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


# -- error mapping ------------------------------------------------------------------------------


def test_a_successful_call(running: Running) -> None:
    assert running.unary()(b"ping", timeout=5) == b"pong:ping"


def test_invalid_argument_carries_field_violations_and_reason(running: Running) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        running.unary()(b"invalid", timeout=5)

    error = raised.value
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    status, found = details(error)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [(v.field, v.description) for v in found["BadRequest"].field_violations] == [
        ("registration.credit_code", "has 16 characters"),
        ("registration.name", "is required"),
    ]
    assert found["ErrorInfo"].reason == "INVALID_ARGUMENT"
    assert found["ErrorInfo"].domain == "agritrace"
    assert "registration.name: is required" in error.details()


@pytest.mark.parametrize(
    ("request_bytes", "code", "reason", "metadata"),
    [
        (b"notfound", grpc.StatusCode.NOT_FOUND, "SUBJECT_NOT_FOUND", {}),
        (b"stale", grpc.StatusCode.ABORTED, "STALE_VERSION", {"current_version": "3"}),
        (b"illegal", grpc.StatusCode.FAILED_PRECONDITION, "ILLEGAL_STATUS_TRANSITION", {}),
    ],
)
def test_domain_errors_map_to_canonical_codes(
    request_bytes: bytes,
    code: grpc.StatusCode,
    reason: str,
    metadata: dict[str, str],
    running: Running,
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        running.unary()(request_bytes, timeout=5)

    assert raised.value.code() is code
    _, found = details(raised.value)
    assert found["ErrorInfo"].reason == reason
    assert dict(found["ErrorInfo"].metadata) == metadata
    assert "BadRequest" not in found


def test_an_unexpected_error_is_internal_with_a_trace_id_and_no_internals(
    running: Running,
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        running.unary()(b"boom", timeout=5, metadata=(("traceparent", TRACEPARENT),))

    error = raised.value
    assert error.code() is grpc.StatusCode.INTERNAL
    assert TRACE_ID in error.details()  # the caller's trace continues on the server
    assert SECRET not in error.details()
    assert "RuntimeError" not in error.details()
    status, found = details(error)
    assert SECRET not in str(status)
    assert found["ErrorInfo"].reason == "INTERNAL"


def test_an_unexpected_error_without_a_caller_trace_gets_a_new_trace_id(
    running: Running,
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        running.unary()(b"boom", timeout=5)
    match = re.search(r"trace id ([0-9a-f]{32})", raised.value.details())
    assert match is not None
    assert match.group(1) != "0" * 32


@pytest.mark.parametrize("traceparent", [TRACEPARENT, None])
def test_where_spans_are_not_recorded_calls_still_carry_the_trace(
    running: Running, monkeypatch: pytest.MonkeyPatch, traceparent: str | None
) -> None:
    # As configure_tracing leaves it without an exporter: server spans made without the SDK.
    monkeypatch.setattr(telemetry, "_ids_only", True)
    metadata = (("traceparent", traceparent),) if traceparent else ()
    with pytest.raises(grpc.RpcError) as raised:
        running.unary()(b"boom", timeout=5, metadata=metadata)

    match = re.search(r"trace id ([0-9a-f]{32})", raised.value.details())
    assert match is not None
    if traceparent:
        assert match.group(1) == TRACE_ID
    else:
        assert match.group(1) not in ("0" * 32, TRACE_ID)
    assert running.unary()(b"ping", timeout=5, metadata=metadata) == b"pong:ping"


def test_a_server_stream_failing_mid_stream_is_mapped(running: Running) -> None:
    received: list[bytes] = []
    with pytest.raises(grpc.RpcError) as raised:
        for message in running.server_stream()(b"notfound", timeout=5):
            received.append(message)

    assert received == [b"first"]
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    assert details(raised.value)[1]["ErrorInfo"].reason == "SUBJECT_NOT_FOUND"


def test_a_server_stream_with_an_unexpected_error_is_internal(running: Running) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        list(running.server_stream()(b"boom", timeout=5))
    assert raised.value.code() is grpc.StatusCode.INTERNAL
    assert SECRET not in raised.value.details()


def test_a_bidi_stream_failing_mid_stream_is_mapped(running: Running) -> None:
    received: list[bytes] = []
    with pytest.raises(grpc.RpcError) as raised:
        for message in running.bidi()(iter([b"a", b"b", b"invalid", b"c"]), timeout=5):
            received.append(message)

    assert received == [b"echo:a", b"echo:b"]
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    _, found = details(raised.value)
    assert [v.field for v in found["BadRequest"].field_violations] == [
        "registration.credit_code", "registration.name"
    ]
    assert b"c" not in running.probe.calls


def test_a_complete_bidi_stream(running: Running) -> None:
    assert list(running.bidi()(iter([b"x", b"y"]), timeout=5)) == [b"echo:x", b"echo:y"]


# -- metrics ------------------------------------------------------------------------------------


def test_handled_counts_and_latency_by_method_and_code(running: Running) -> None:
    unary = {"grpc_type": "unary", "grpc_service": SERVICE, "grpc_method": "Unary"}
    stream = {"grpc_type": "server_stream", "grpc_service": SERVICE,
              "grpc_method": "ServerStream"}
    ok_before = counter("grpc_server_handled_total", **unary, grpc_code="OK")
    invalid_before = counter("grpc_server_handled_total", **unary, grpc_code="INVALID_ARGUMENT")
    aborted_before = counter("grpc_server_handled_total", **stream, grpc_code="ABORTED")
    seconds_before = counter("grpc_server_handling_seconds_count", **unary)
    started_before = counter("grpc_server_started_total", **unary)

    running.unary()(b"ping", timeout=5)
    running.unary()(b"ping", timeout=5)
    with pytest.raises(grpc.RpcError):
        running.unary()(b"invalid", timeout=5)
    with pytest.raises(grpc.RpcError):
        list(running.server_stream()(b"stale", timeout=5))

    assert eventually(
        lambda: counter("grpc_server_handled_total", **unary, grpc_code="OK") == ok_before + 2
    )
    assert counter("grpc_server_handled_total", **unary,
                   grpc_code="INVALID_ARGUMENT") == invalid_before + 1
    assert eventually(
        lambda: counter("grpc_server_handled_total", **stream,
                        grpc_code="ABORTED") == aborted_before + 1
    )
    assert counter("grpc_server_handling_seconds_count", **unary) == seconds_before + 3
    assert counter("grpc_server_started_total", **unary) == started_before + 3


# -- health and reflection ------------------------------------------------------------------------


def health_status(running: Running, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(running.channel)
    response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(response.status)


def test_health_follows_the_readiness_checks(running: Running) -> None:
    serving, not_serving = (health_pb2.HealthCheckResponse.SERVING,
                            health_pb2.HealthCheckResponse.NOT_SERVING)
    # Every service starts NOT_SERVING.
    assert health_status(running, SERVICE) == not_serving
    assert health_status(running, "") == not_serving

    running.probe.ready = False
    assert running.server.health.check_now() is False
    assert health_status(running, SERVICE) == not_serving
    assert health_status(running, "") == not_serving

    running.probe.ready = True
    assert running.server.health.check_now() is True
    assert health_status(running, SERVICE) == serving
    assert health_status(running, "") == serving

    running.probe.ready = False
    running.server.health.check_now()
    assert health_status(running, SERVICE) == not_serving


def test_a_readiness_check_that_raises_counts_as_not_ready() -> None:
    def broken() -> bool:
        raise ConnectionError("database down")

    registration = ServiceRegistration(SERVICE, lambda server: None, readiness=(broken,))
    server = create_server("127.0.0.1:0", [registration])
    try:
        assert server.health.check_now() is False
    finally:
        server.stop(0)


def test_reflection_lists_the_service(running: Running) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(running.channel)
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {service.name for response in responses
             for service in response.list_services_response.service}
    assert SERVICE in names
    assert "grpc.health.v1.Health" in names


def test_create_server_picks_a_free_port() -> None:
    first = create_server("127.0.0.1:0", [])
    second = create_server("127.0.0.1:0", [])
    try:
        assert first.port > 0
        assert second.port > 0
        assert first.port != second.port
    finally:
        first.stop(0)
        second.stop(0)


# -- deadlines ------------------------------------------------------------------------------------


@pytest.fixture
def single_worker() -> Iterator[Running]:
    handle = start(max_workers=1)
    yield handle
    stop(handle)


def test_a_call_whose_deadline_passed_before_it_ran_does_not_run(
    single_worker: Running,
) -> None:
    probe = single_worker.probe
    unary = single_worker.unary()
    blocker = unary.future(b"block", timeout=10)
    assert eventually(lambda: probe.calls == [b"block"])

    # The only worker is busy: this call waits in the queue until its deadline is gone.
    late = unary.future(b"late", timeout=0.3)
    with pytest.raises(grpc.RpcError) as raised:
        late.result()
    assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED

    probe.release.set()
    assert blocker.result(timeout=5) == b"pong:block"
    # One worker, first come first served: once this call ran, the late one was dealt with.
    assert unary(b"after", timeout=5) == b"pong:after"

    assert probe.calls == [b"block", b"after"]


class SlowInterceptor(ScopedInterceptor):
    """An extra interceptor (think: authentication against a slow identity provider) that
    takes longer than the caller's deadline before the call goes on."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.finished = threading.Event()

    @contextmanager
    def scope(self, context: grpc.ServicerContext, info: MethodInfo) -> Iterator[None]:
        time.sleep(self.delay)
        try:
            yield
        finally:
            self.finished.set()


def test_a_call_whose_deadline_passed_in_an_outer_interceptor_does_not_run() -> None:
    slow = SlowInterceptor(0.5)
    handle = start(extra=[slow])
    try:
        with pytest.raises(grpc.RpcError) as raised:
            handle.unary()(b"late", timeout=0.2)
        assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED

        # The server received the request; once the slow interceptor let go, the error
        # interceptor saw the deadline had passed and never called the behaviour.
        assert slow.finished.wait(5)
        time.sleep(0.05)
        assert handle.probe.calls == []
    finally:
        stop(handle)


class CountingInterceptor(ScopedInterceptor):
    """Counts the calls it sees and the handlers it builds."""

    def __init__(self) -> None:
        self.scopes: list[str] = []
        self.wraps = 0

    def _wrap(self, handler: grpc.RpcMethodHandler[Any, Any], full_method: str
              ) -> grpc.RpcMethodHandler[Any, Any]:
        self.wraps += 1
        return super()._wrap(handler, full_method)

    @contextmanager
    def scope(self, context: grpc.ServicerContext, info: MethodInfo) -> Iterator[None]:
        self.scopes.append(info.method)
        yield


def test_the_chain_wraps_a_method_once_and_runs_every_call_through_it() -> None:
    counting = CountingInterceptor()
    handle = start(extra=[counting])
    try:
        assert handle.unary()(b"ping", timeout=5) == b"pong:ping"
        list(handle.server_stream()(b"ping", timeout=5))
        # Registered methods are wrapped when added; others on their first call.
        wrapped = counting.wraps
        for _ in range(4):
            assert handle.unary()(b"ping", timeout=5) == b"pong:ping"
        list(handle.server_stream()(b"ping", timeout=5))
        assert counting.scopes == ["Unary", "ServerStream"] + ["Unary"] * 4 + ["ServerStream"]
        assert counting.wraps == wrapped  # no handler built per call
    finally:
        stop(handle)


def test_start_up_objects_are_frozen_out_of_the_collector() -> None:
    import gc

    from agritrace_kernel.process import settle_heap

    gc.unfreeze()
    built_at_start_up = [{"n": n} for n in range(1000)]
    settle_heap()
    try:
        assert gc.get_freeze_count() >= len(built_at_start_up)
    finally:
        gc.unfreeze()


def _full_collections_while_answering(answers: int) -> int:
    """Full collections CPython starts while `answers` large answers are built one after
    the other, each held whole until it is done (a young collection every ~700 objects
    promotes the part built so far), after a first full collection (which leaves the frozen
    heap out of the count that paces the next)."""
    import gc

    gc.collect()
    full: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.append(1)

    young = gc.get_threshold()[0]
    gc.callbacks.append(count)
    try:
        for _ in range(answers):
            answer = [[{"n": n} for n in range(young + 1)] for _ in range(8)]
            del answer
    finally:
        gc.callbacks.remove(count)
    return len(full)


def test_settled_heap_makes_full_collections_rare() -> None:
    import gc

    from agritrace_kernel.process import FULL_COLLECTION_AFTER, settle_heap

    defaults = gc.get_threshold()
    gc.unfreeze()
    try:
        gc.set_threshold(700, 10, 10)
        gc.collect()
        gc.freeze()
        assert _full_collections_while_answering(60) >= 2  # CPython's own pace
        gc.unfreeze()
        settle_heap()
        assert gc.get_threshold()[2] == FULL_COLLECTION_AFTER
        assert _full_collections_while_answering(60) == 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*defaults)
