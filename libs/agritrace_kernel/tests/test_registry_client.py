"""The registry client: the subject directory over real gRPC (an in-process server with a
small fake registry), and over the registry's use cases in the same process."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass

import grpc
import pytest

from agritrace.registry.v1 import registry_pb2 as rpb
from agritrace.registry.v1 import registry_pb2_grpc
from agritrace_kernel import registry_client as adapter
from agritrace_kernel.errors import InvalidArgument, NotFound, Unavailable
from agritrace_kernel.registry_client import (
    GrpcSubjectDirectory,
    InProcessSubjectDirectory,
    SubjectInfo,
)

KNOWN = "S33KNOWNSUBJECT1"


class FakeRegistry(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(self) -> None:
        self.asked: list[str] = []
        self.status = grpc.StatusCode.OK

    def GetSubject(self, request: rpb.GetSubjectRequest,
                   context: grpc.ServicerContext) -> rpb.GetSubjectResponse:
        self.asked.append(request.subject_id)
        if self.status is not grpc.StatusCode.OK:
            context.abort(self.status, "as configured")
        if request.subject_id == "malformed":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "subject_id: not an id")
        if request.subject_id != KNOWN:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such subject")
        return rpb.GetSubjectResponse(subject=rpb.Subject(
            subject_id=KNOWN, division_code="330106",
            status=rpb.SUBJECT_STATUS_SUSPENDED))


@pytest.fixture
def registry() -> Iterator[tuple[FakeRegistry, grpc.Channel]]:
    fake = FakeRegistry()
    server = grpc.server(futures.ThreadPoolExecutor(2))
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield fake, channel
    finally:
        channel.close()
        server.stop(None)


def test_a_registered_subject_is_read_once_then_cached(
    registry: tuple[FakeRegistry, grpc.Channel],
) -> None:
    fake, channel = registry
    directory = GrpcSubjectDirectory(channel)

    first = directory.get(KNOWN)
    assert first == SubjectInfo(KNOWN, "330106", "SUSPENDED")
    assert first.province == "33"
    assert directory.get(KNOWN) == first
    assert fake.asked == [KNOWN]


def test_an_unknown_subject_is_none_and_remembered_only_briefly(
    registry: tuple[FakeRegistry, grpc.Channel], monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, channel = registry
    now = [1000.0]
    directory = GrpcSubjectDirectory(channel)
    monkeypatch.setattr(directory._cache, "clock", lambda: now[0])

    assert directory.get("S33UNKNOWN000000") is None
    assert directory.get("S33UNKNOWN000000") is None
    assert fake.asked == ["S33UNKNOWN000000"]
    now[0] += adapter.NOT_FOUND_SECONDS + 0.1
    assert directory.get("S33UNKNOWN000000") is None
    assert len(fake.asked) == 2


def test_a_malformed_id_names_the_field(registry: tuple[FakeRegistry, grpc.Channel]) -> None:
    _, channel = registry
    with pytest.raises(InvalidArgument) as error:
        GrpcSubjectDirectory(channel).get("malformed")
    assert [v.field for v in error.value.violations] == ["subject_id"]


@pytest.mark.parametrize("status", [grpc.StatusCode.UNAVAILABLE,
                                    grpc.StatusCode.PERMISSION_DENIED,
                                    grpc.StatusCode.INTERNAL])
def test_a_registry_that_cannot_answer_is_unavailable_and_not_cached(
    registry: tuple[FakeRegistry, grpc.Channel], status: grpc.StatusCode,
) -> None:
    fake, channel = registry
    directory = GrpcSubjectDirectory(channel)
    fake.status = status
    with pytest.raises(Unavailable) as error:
        directory.get(KNOWN)
    assert status.name in error.value.message
    fake.status = grpc.StatusCode.OK
    assert directory.get(KNOWN) is not None


@dataclass(frozen=True)
class _Status:
    value: str


@dataclass(frozen=True)
class _Subject:
    subject_id: str
    division_code: str
    status: _Status


def test_in_process_directory_maps_the_registrys_answers() -> None:
    def get_subject(subject_id: str) -> _Subject:
        if subject_id == "malformed":
            raise InvalidArgument.of("subject_id", "bad")
        if subject_id != KNOWN:
            raise NotFound("no", reason="SUBJECT_NOT_FOUND")
        return _Subject(KNOWN, "440305", _Status("APPROVED"))

    asked: list[str] = []

    def counted(subject_id: str) -> _Subject:
        asked.append(subject_id)
        return get_subject(subject_id)

    directory = InProcessSubjectDirectory(counted)
    assert directory.get(KNOWN) == SubjectInfo(KNOWN, "440305", "APPROVED")
    assert directory.get(KNOWN) == SubjectInfo(KNOWN, "440305", "APPROVED")
    assert asked == [KNOWN]  # cached
    assert directory.get("S44OTHER00000000") is None
    with pytest.raises(InvalidArgument):
        directory.get("malformed")
