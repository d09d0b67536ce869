"""The event log (EventLogService) over real outbox tables in SQLite: log order, published
rows included, paging to the end, one servicer for several sources, refusals, and who may
call it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from sqlalchemy.orm import Session, sessionmaker

from agritrace.events.v1 import event_log_pb2 as pb
from agritrace.events.v1 import event_log_pb2_grpc
from agritrace_kernel import db
from agritrace_kernel.auth.principal import Principal, PrincipalKind
from agritrace_kernel.config import DatabaseTarget
from agritrace_kernel.errors import InvalidArgument
from agritrace_kernel.events import log_service
from agritrace_kernel.events.log_service import EventLog
from agritrace_kernel.events.model import Event
from agritrace_kernel.events.store import (
    EventStore,
    create_event_tables,
    fetch_unpublished,
    mark_published,
)
from agritrace_kernel.grpc_kit.server import create_server
from agritrace_testing.grpc_errors import violations


def open_source(path: Path) -> sessionmaker[Session]:
    engine = db.create_engine(DatabaseTarget(f"sqlite:///{path}", None), pool_size=2)
    with engine.begin() as connection:
        create_event_tables(connection)
    return db.session_factory(engine)


@pytest.fixture
def sources(tmp_path: Path) -> Iterator[dict[str, sessionmaker[Session]]]:
    opened = {name: open_source(tmp_path / f"{name}.db") for name in ("coding", "registry")}
    yield opened
    for sessions in opened.values():
        bind = sessions.kw["bind"]
        bind.dispose()


def write(sessions: sessionmaker[Session], *events: Event) -> None:
    with db.transaction(sessions) as session:
        store = EventStore(session)
        for event in events:
            store.append_outbox(event)


def coding_event(number: int) -> Event:
    return Event("coding", "codes_issued", {"n": number, "名": "绿源"},
                 occurred_at=datetime(2026, 5, 1, 8, number % 60, tzinfo=UTC),
                 trace_context={"traceparent": f"00-{number:032x}-{number:016x}-01"})


def test_an_empty_log_is_one_empty_last_page(sources: dict[str, sessionmaker[Session]]
                                             ) -> None:
    page = EventLog(sources).list_events("coding")
    assert (page.events, page.next_page_token, page.newest_position) == ([], "", 0)


def test_events_come_in_log_order_published_or_not(sources: dict[str, sessionmaker[Session]]
                                                   ) -> None:
    write(sources["coding"], *(coding_event(n) for n in range(1, 6)))
    with db.transaction(sources["coding"]) as session:  # the relay published the first two
        mark_published(session, [int(row._mapping["id"])
                                 for row in fetch_unpublished(session, 2)])

    page = EventLog(sources).list_events("coding")

    assert [json.loads(e.payload_json)["n"] for e in page.events] == [1, 2, 3, 4, 5]
    positions = [e.position for e in page.events]
    assert positions == sorted(positions) and len(set(positions)) == 5
    assert page.newest_position == positions[-1]
    assert page.next_page_token == ""
    first = page.events[0]
    assert (first.source, first.name) == ("coding", "codes_issued")
    assert first.occurred_at == datetime(2026, 5, 1, 8, 1, tzinfo=UTC)
    assert first.trace_context == {"traceparent": f"00-{1:032x}-{1:016x}-01"}
    # The stored JSON itself, not a re-serialisation.
    assert first.payload_json == json.dumps({"n": 1, "名": "绿源"}, ensure_ascii=False,
                                            sort_keys=True)


def test_pages_cover_the_log_once_and_later_events_follow(
        sources: dict[str, sessionmaker[Session]]) -> None:
    log = EventLog(sources)
    write(sources["coding"], *(coding_event(n) for n in range(1, 8)))

    seen: list[int] = []
    page = log.list_events("coding", page_size=3)
    tokens = []
    while True:
        seen.extend(json.loads(e.payload_json)["n"] for e in page.events)
        assert page.newest_position >= page.events[-1].position
        if not page.next_page_token:
            break
        tokens.append(page.next_page_token)
        page = log.list_events("coding", page_size=3, page_token=page.next_page_token)
    assert seen == [1, 2, 3, 4, 5, 6, 7]
    assert len(tokens) == 2  # 3 + 3 + 1

    # Events written later appear after the position a saved token stands for.
    write(sources["coding"], coding_event(8))
    later = log.list_events("coding", page_size=3, page_token=tokens[-1])
    assert [json.loads(e.payload_json)["n"] for e in later.events] == [7, 8]


def test_one_log_serves_each_source_from_its_own_database(
        sources: dict[str, sessionmaker[Session]]) -> None:
    write(sources["coding"], coding_event(1), coding_event(2))
    write(sources["registry"], Event("registry", "subject_registered", {"subject_id": "X"}))
    log = EventLog(sources)

    assert [e.name for e in log.list_events("registry").events] == ["subject_registered"]
    assert [e.name for e in log.list_events("coding").events] == ["codes_issued"] * 2
    assert log.sources == ["coding", "registry"]


@pytest.mark.parametrize("source", ["flow", "", "CODING"])
def test_a_source_the_process_does_not_host_is_invalid(
        sources: dict[str, sessionmaker[Session]], source: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        EventLog(sources).list_events(source)
    assert [v.field for v in raised.value.violations] == ["source"]


def test_a_token_of_another_source_or_a_forged_one_is_invalid(
        sources: dict[str, sessionmaker[Session]]) -> None:
    write(sources["coding"], coding_event(1), coding_event(2))
    write(sources["registry"], coding_event(3), coding_event(4))
    log = EventLog(sources)
    token = log.list_events("coding", page_size=1).next_page_token
    assert token

    for source, bad in (("registry", token), ("coding", "not-a-token"),
                        ("coding", "WyJjb2RpbmciLCAieCJd")):  # ["coding", "x"]
        with pytest.raises(InvalidArgument) as raised:
            log.list_events(source, page_size=1, page_token=bad)
        assert [v.field for v in raised.value.violations] == ["page_token"]


def test_page_size_defaults_caps_and_refuses_negative(
        sources: dict[str, sessionmaker[Session]]) -> None:
    write(sources["coding"], *(coding_event(n) for n in range(1, 4)))
    log = EventLog(sources)
    assert len(log.list_events("coding", page_size=0).events) == 3
    assert log_service.DEFAULT_PAGE_SIZE == 500 and log_service.MAX_PAGE_SIZE == 5000
    with pytest.raises(InvalidArgument) as raised:
        log.list_events("coding", page_size=-1)
    assert [v.field for v in raised.value.violations] == ["page_size"]


def principal(kind: PrincipalKind) -> Principal:
    return Principal("acct", kind, "user", "", "", frozenset(), "session", "agritrace")


@pytest.mark.parametrize("kind", list(PrincipalKind))
def test_only_services_and_administrators_may_list_events(kind: PrincipalKind) -> None:
    rule = log_service.POLICIES.rule_for(f"/{log_service.SERVICE_NAME}/ListEvents")
    assert rule is not None
    assert rule.allows(principal(kind)) == (kind in {PrincipalKind.SERVICE,
                                                     PrincipalKind.OPS_ADMIN})
    assert not rule.allows(None)


def test_over_grpc_the_messages_carry_every_field_and_errors_name_the_field(
        sources: dict[str, sessionmaker[Session]]) -> None:
    write(sources["coding"], coding_event(1), coding_event(2))
    server = create_server("127.0.0.1:0", [log_service.registration(sources)])
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = event_log_pb2_grpc.EventLogServiceStub(channel)
            first = stub.ListEvents(pb.ListEventsRequest(source="coding", page_size=1))
            rest = stub.ListEvents(pb.ListEventsRequest(source="coding",
                                                        page_token=first.next_page_token))
            with pytest.raises(grpc.RpcError) as raised:
                stub.ListEvents(pb.ListEventsRequest(source="flow"))
    finally:
        server.stop(0)

    [event] = first.events
    assert event.source == "coding" and event.name == "codes_issued"
    assert len(event.event_id) == 32
    assert json.loads(event.payload_json) == {"n": 1, "名": "绿源"}
    assert event.occurred_at.ToDatetime(tzinfo=UTC) == datetime(2026, 5, 1, 8, 1, tzinfo=UTC)
    assert dict(event.trace_context) == {"traceparent": f"00-{1:032x}-{1:016x}-01"}
    assert first.newest_position == rest.events[0].position == event.position + 1
    assert rest.next_page_token == ""
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(raised.value)) == {"source"}


def sized_event(number: int, length: int) -> Event:
    return Event("coding", "codes_issued", {"n": number, "codes": "x" * length})


def test_a_page_stops_at_its_byte_budget_but_holds_at_least_one_event(
        sources: dict[str, sessionmaker[Session]], monkeypatch: pytest.MonkeyPatch) -> None:
    # Budget 1,000 bytes: two 400-byte payloads fit, a third does not; a 2,500-byte one
    # goes alone.
    monkeypatch.setattr(log_service, "MAX_PAGE_BYTES", 1000)
    write(sources["coding"], sized_event(1, 400), sized_event(2, 400), sized_event(3, 400),
          sized_event(4, 2500), sized_event(5, 10))
    log = EventLog(sources)

    pages: list[list[int]] = []
    token = ""
    while True:
        page = log.list_events("coding", page_size=10, page_token=token)
        pages.append([json.loads(e.payload_json)["n"] for e in page.events])
        token = page.next_page_token
        if not token:
            break
    assert pages == [[1, 2], [3], [4], [5]]
