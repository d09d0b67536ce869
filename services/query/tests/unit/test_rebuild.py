"""Rebuilding the read model from the sources' event logs: the same read model as the live
handlers build, resumable, sharing the inbox with live delivery, the query log untouched;
and the event log adapters (gRPC and in-process) and the `rebuild` command."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from concurrent import futures
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from agritrace_kernel import db
from agritrace_kernel.config import DatabaseTarget, Settings
from agritrace_kernel.events import log_service
from agritrace_kernel.events.model import Event
from agritrace_kernel.events.store import EventStore, create_event_tables
from agritrace_query.adapters import orm
from agritrace_query.adapters.cache import InMemoryOriginCache
from agritrace_query.adapters.event_log_client import GrpcEventLog, LocalEventLog
from agritrace_query.adapters.unit_of_work import ProjectionUnitOfWork
from agritrace_query.entrypoints import rebuild as command
from agritrace_query.service_layer.projection_ports import (
    EventPage,
    LoggedEvent,
    code_key,
)
from agritrace_query.service_layer.projections import subscriptions
from agritrace_query.service_layer.rebuild import Progress, Rebuild
from agritrace_testing.fakes import load_beside

support = load_beside(__file__, "test_projections_support.py", "agritrace_query_projection_support")
projections_tests = load_beside(__file__, "test_projections.py", "agritrace_query_projection_tests")
engine = support.engine
sessions = support.sessions
uow_factory = support.uow_factory
story = projections_tests.story
rows, snapshot = support.rows, support.snapshot


class FakeEventLog:
    """The sources' logs in memory; tokens are opaque to the rebuild as the real ones are.
    `fail_after` pages it answers, then the next call fails (a source going away)."""

    def __init__(self, events: list[Event], fail_after: int | None = None) -> None:
        self.logs: dict[str, list[LoggedEvent]] = {}
        for position, item in enumerate(events, start=1):
            self.logs.setdefault(item.source, []).append(LoggedEvent(position * 10, item))
        self.requests: list[tuple[str, str]] = []
        self.fail_after = fail_after

    def append(self, item: Event) -> None:
        newest = max((e.position for log in self.logs.values() for e in log), default=0)
        self.logs.setdefault(item.source, []).append(LoggedEvent(newest + 10, item))

    def list_events(self, source: str, page_token: str, page_size: int) -> EventPage:
        if self.fail_after is not None and len(self.requests) >= self.fail_after:
            raise ConnectionError("source unavailable")
        self.requests.append((source, page_token))
        after = int(page_token.removeprefix(f"{source}@")) if page_token else 0
        log = self.logs.get(source, [])
        later = [item for item in log if item.position > after]
        page = later[:page_size]
        more = len(later) > page_size
        return EventPage(page, f"{source}@{page[-1].position}" if more else "",
                         log[-1].position if log else 0)


def live(uow_factory: Callable[[], ProjectionUnitOfWork], *events: Event) -> None:
    handlers = {(s.source, s.name): s.handle
                for s in subscriptions(uow_factory, InMemoryOriginCache())}
    for item in events:
        handlers[(item.source, item.name)](item)


def built_live(engine: Engine, uow_factory: Callable[[], ProjectionUnitOfWork]
               ) -> dict[str, list[dict[str, object]]]:
    """The read model the live handlers build from the story (then emptied again)."""
    live(uow_factory, *story())
    expected = snapshot(engine)
    support.empty(engine)
    return {name: table for name, table in expected.items() if name != "replay_positions"}


def read_model(engine: Engine) -> dict[str, list[dict[str, object]]]:
    return {name: table for name, table in snapshot(engine).items()
            if name != "replay_positions"}


def add_query_log_entry(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(orm.query_log.insert().values(
            seq=1, logged_at=datetime(2024, 5, 1, tzinfo=UTC), asker="anon:0123456789abcdef",
            role="CONSUMER", rpc="GetOriginInfo", target="33K7MXH2TA9WPRC6", scope="ORIGIN_ONLY",
            outcome="OK", prev_hash="0" * 64, entry_hash="1" * 64))


def test_a_rebuild_builds_what_the_live_handlers_build_and_keeps_the_query_log(
        engine: Engine, uow_factory: Callable[[], ProjectionUnitOfWork]) -> None:
    expected = built_live(engine, uow_factory)
    live(uow_factory, support.codes_issued("S9", [support.code(99)]))  # lost from the logs
    add_query_log_entry(engine)
    cache = InMemoryOriginCache()
    cache.set(code_key("stale"), {"view": 1}, 60)
    seen: list[Progress] = []

    result = Rebuild(uow_factory, FakeEventLog(story()), cache, page_size=4).run(
        progress=seen.append)

    assert result.restarted
    assert read_model(engine) == expected
    assert len(rows(engine, orm.query_log)) == 1
    assert cache.get(code_key("stale")) is None
    assert {row["source"]: (row["done"], row["position"])
            for row in rows(engine, orm.replay_positions)} == {
        "registry": (True, 50), "coding": (True, 180), "flow": (True, 170)}
    assert [(p.source, p.position, p.applied, p.done) for p in seen if p.source == "coding"
            ] == [("coding", 160, 4, False), ("coding", 180, 5, True)]
    assert seen[-1].newest_position == 170


def test_an_interrupted_rebuild_resumes_where_it_stopped(
        engine: Engine, uow_factory: Callable[[], ProjectionUnitOfWork]) -> None:
    expected = built_live(engine, uow_factory)
    log = FakeEventLog(story(), fail_after=4)  # registry's 3 pages, coding's first
    with pytest.raises(ConnectionError):
        Rebuild(uow_factory, log, InMemoryOriginCache(), page_size=2).run()
    answered = list(log.requests)
    log.fail_after = None
    add_query_log_entry(engine)  # written meanwhile; a resumed rebuild clears nothing

    result = Rebuild(uow_factory, log, InMemoryOriginCache(), page_size=2).run()

    assert not result.restarted
    assert log.requests[len(answered)] == ("coding", "coding@70")  # the page after the last
    assert read_model(engine) == expected
    assert len(rows(engine, orm.query_log)) == 1


def test_sources_can_be_replayed_one_run_at_a_time(
        engine: Engine, uow_factory: Callable[[], ProjectionUnitOfWork]) -> None:
    expected = built_live(engine, uow_factory)
    log = FakeEventLog(story())
    first = Rebuild(uow_factory, log, InMemoryOriginCache()).run(["registry"])
    assert first.restarted and list(first.progress) == ["registry"]
    assert rows(engine, orm.codes) == []
    second = Rebuild(uow_factory, log, InMemoryOriginCache()).run(["flow", "coding"])
    assert not second.restarted
    assert read_model(engine) == expected
    # Every source replayed: the next rebuild starts afresh.
    third = Rebuild(uow_factory, log, InMemoryOriginCache()).run(["registry"])
    assert third.restarted and rows(engine, orm.codes) == []


def test_restart_starts_over_although_a_rebuild_is_under_way(
        engine: Engine, uow_factory: Callable[[], ProjectionUnitOfWork]) -> None:
    log = FakeEventLog(story())
    Rebuild(uow_factory, log, InMemoryOriginCache()).run(["coding"])
    assert rows(engine, orm.codes) != []
    result = Rebuild(uow_factory, log, InMemoryOriginCache()).run(["registry"], restart=True)
    assert result.restarted and rows(engine, orm.codes) == []
    assert len(rows(engine, orm.subjects)) == 4


def test_an_event_the_live_handler_applied_during_the_rebuild_counts_once(
        engine: Engine, uow_factory: Callable[[], ProjectionUnitOfWork]) -> None:
    expected = built_live(engine, uow_factory)
    events = story()
    log = FakeEventLog(events)
    flow_events = [item for item in events if item.source == "flow"]

    def deliver_live(progress: Progress) -> None:
        if progress.source == "registry":  # while the rebuild is under way
            live(uow_factory, *flow_events)

    Rebuild(uow_factory, log, InMemoryOriginCache(), page_size=3).run(progress=deliver_live)
    assert read_model(engine) == expected


def test_events_written_while_a_source_is_replayed_are_replayed_too(
        engine: Engine, uow_factory: Callable[[], ProjectionUnitOfWork]) -> None:
    log = FakeEventLog(story())
    late = support.codes_issued("S1000000000001", [support.code(77)])

    def write_more(progress: Progress) -> None:
        if progress.source == "coding" and log.logs["coding"][-1].event is not late:
            log.append(late)

    Rebuild(uow_factory, log, InMemoryOriginCache(), page_size=2).run(
        ["coding"], progress=write_more)
    assert support.code(77) in {row["code"] for row in rows(engine, orm.codes)}


def test_events_the_read_model_does_not_use_are_skipped(
        engine: Engine, uow_factory: Callable[[], ProjectionUnitOfWork]) -> None:
    log = FakeEventLog([support.event("registry", "subjects_imported", {"import_id": "x"}),
                        support.event("registry", "subject_registered",
                                      support.subject("S1000000000001"))])
    result = Rebuild(uow_factory, log, InMemoryOriginCache()).run(["registry"])
    assert (result.progress["registry"].applied, result.progress["registry"].skipped) == (1, 1)


def test_an_unknown_source_is_refused(uow_factory: Callable[[], ProjectionUnitOfWork]) -> None:
    with pytest.raises(ValueError, match="bridge"):
        Rebuild(uow_factory, FakeEventLog([]), InMemoryOriginCache()).run(["bridge"])


# -- the event log adapters and the command ------------------------------------------------------

def _source_database(path: Path, events: list[Event]) -> Callable[[], sa.orm.Session]:
    engine = db.create_engine(DatabaseTarget(f"sqlite:///{path}", None), pool_size=1)
    with engine.begin() as connection:
        create_event_tables(connection)
    sessions = db.session_factory(engine)
    with sessions() as session:
        for item in events:
            EventStore(session).append_outbox(item)
        session.commit()
    return sessions


@pytest.fixture
def source_events() -> list[Event]:
    return [support.event("coding", "codes_issued", {"codes": [support.code(n)], "n": "龙"},
                          support.T0) for n in range(5)]


@pytest.fixture
def served_log(tmp_path: Path, source_events: list[Event]) -> Iterator[grpc.Channel]:
    sessions = _source_database(tmp_path / "coding.db", source_events)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    log_service.registration({"coding": sessions}).add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel
    channel.close()
    server.stop(None)


def _read_all(log: GrpcEventLog | LocalEventLog) -> list[LoggedEvent]:
    events: list[LoggedEvent] = []
    token = ""
    while True:
        page = log.list_events("coding", token, 2)
        events.extend(page.events)
        assert page.newest_position == 5
        if not page.next_page_token:
            return events
        token = page.next_page_token


def test_the_grpc_log_pages_through_a_sources_events(served_log: grpc.Channel,
                                                     source_events: list[Event]) -> None:
    logged = _read_all(GrpcEventLog(served_log))
    assert [item.position for item in logged] == [1, 2, 3, 4, 5]
    assert [item.event for item in logged] == source_events


def test_the_in_process_log_pages_through_a_sources_events(
        tmp_path: Path, source_events: list[Event]) -> None:
    sessions = _source_database(tmp_path / "coding.db", source_events)
    logged = _read_all(LocalEventLog(log_service.EventLog({"coding": sessions})))
    assert [item.event for item in logged] == source_events


def test_the_command_rebuilds_the_embedded_platforms_read_model(tmp_path: Path) -> None:
    events = story()
    for source in ("registry", "coding", "flow"):
        _source_database(tmp_path / f"{source}.db",
                         [item for item in events if item.source == source])
    settings = Settings(data_dir=tmp_path)
    target = settings.database_for("query")
    db.migrate(target, support.MIGRATIONS)
    out = io.StringIO()

    assert command.rebuild(settings, ["registry", "coding", "flow"], out=out) == 0

    printed = out.getvalue()
    assert "registry: done, event 5 of 5 (5 applied" in printed
    assert "rebuild started afresh: 18 events applied from registry, coding, flow" in printed
    query = db.create_engine(target, pool_size=1)
    assert len(rows(query, orm.codes)) == 7
    query.dispose()


def test_the_command_parses_its_options() -> None:
    assert command.parse_args([]).source is None
    args = command.parse_args(["--source", "flow", "--source", "coding", "--restart"])
    assert (args.source, args.restart) == (["flow", "coding"], True)
    with pytest.raises(SystemExit):
        command.parse_args(["--source", "bridge"])
