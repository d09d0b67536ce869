"""Events with a real (embedded) SQLite database: the outbox written with the state change, the
relay that publishes it in order, the inbox that makes handling idempotent, and the buses."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from agritrace_kernel import db, metrics
from agritrace_kernel.config import DatabaseTarget
from agritrace_kernel.events.bus import IdempotentHandler, InProcessBus, Subscription
from agritrace_kernel.events.model import Event
from agritrace_kernel.events.relay import OutboxRelay, unpublished_probe
from agritrace_kernel.events.store import create_event_tables, inbox, outbox
from agritrace_kernel.telemetry import configure_tracing

tracer = trace.get_tracer("agritrace.tests")


@pytest.fixture(scope="module", autouse=True)
def tracing() -> None:
    configure_tracing("kernel-tests", InMemorySpanExporter())


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = db.create_engine(DatabaseTarget(f"sqlite:///{tmp_path / 'events.db'}", None),
                              pool_size=2)
    with engine.begin() as connection:
        create_event_tables(connection)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return db.session_factory(engine)


def outbox_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row) for row in
                connection.execute(sa.select(outbox).order_by(outbox.c.id)).mappings()]


def inbox_rows(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        return [(row.consumer, row.event_id) for row in connection.execute(sa.select(inbox))]


def event(event_name: str, /, **payload: Any) -> Event:
    return Event("registry", event_name, dict(payload))


def write_events(sessions: sessionmaker[Session], *events: Event) -> None:
    with db.SqlAlchemyUnitOfWork(sessions) as uow:
        for item in events:
            uow.publish(item)
        uow.commit()


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class RecordingPublisher:
    def __init__(self, fail_on_call: int | None = None) -> None:
        self.events: list[Event] = []
        self.calls = 0
        self._fail_on_call = fail_on_call

    def publish(self, item: Event) -> None:
        self.calls += 1
        if self.calls == self._fail_on_call:
            raise ConnectionError("broker unavailable")
        self.events.append(item)


# -- the outbox ------------------------------------------------------------------------------


def test_commit_writes_the_events_with_the_trace_context(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    woken: list[bool] = []
    with tracer.start_as_current_span("register") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        with db.SqlAlchemyUnitOfWork(sessions, after_commit=lambda: woken.append(True)) as uow:
            uow.publish(event("subject_registered", subject_id="S1", name="茶场"))
            uow.publish(event("subject_reviewed", subject_id="S1"))
            uow.commit()

    rows = outbox_rows(engine)
    assert [row["name"] for row in rows] == ["subject_registered", "subject_reviewed"]
    assert json.loads(rows[0]["payload"]) == {"subject_id": "S1", "name": "茶场"}
    assert all(row["published_at"] is None for row in rows)
    assert all(row["source"] == "registry" for row in rows)
    for row in rows:
        context = json.loads(row["trace_context"])
        assert trace_id in context["traceparent"]
    assert woken == [True]


def test_an_event_keeps_a_trace_context_it_already_has(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    carried = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with tracer.start_as_current_span("relay"):
        write_events(sessions, Event("registry", "x", {}, trace_context=carried))
    assert json.loads(outbox_rows(engine)[0]["trace_context"]) == carried


def test_leaving_without_commit_writes_nothing(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    woken: list[bool] = []
    with db.SqlAlchemyUnitOfWork(sessions, after_commit=lambda: woken.append(True)) as uow:
        uow.publish(event("subject_registered", subject_id="S1"))

    with pytest.raises(RuntimeError), db.SqlAlchemyUnitOfWork(sessions) as uow:
        uow.publish(event("subject_registered", subject_id="S2"))
        raise RuntimeError("use case failed")

    with db.SqlAlchemyUnitOfWork(sessions, after_commit=lambda: woken.append(True)) as uow:
        uow.publish(event("subject_registered", subject_id="S3"))
        uow.rollback()
        uow.commit()  # nothing left to write

    assert outbox_rows(engine) == []
    assert woken == []


# -- the relay ------------------------------------------------------------------------------


def test_relay_publishes_in_order_and_marks_published(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    first = event("subject_registered", subject_id="S1")
    second = event("subject_updated", subject_id="S1")
    third = event("subject_registered", subject_id="S2")
    write_events(sessions, first, second)
    write_events(sessions, third)
    publisher = RecordingPublisher()
    relay = OutboxRelay("registry", sessions, publisher)
    published_before = sample("agritrace_events_published_total",
                              {"service": "registry", "event": "subject_registered"})

    assert relay.relay_once() == 3

    assert [e.event_id for e in publisher.events] == [
        first.event_id, second.event_id, third.event_id
    ]
    assert publisher.events[0] == first  # the envelope survives the outbox unchanged
    assert all(row["published_at"] is not None for row in outbox_rows(engine))
    assert relay.pending() == 0
    assert sample("agritrace_events_published_total",
                  {"service": "registry", "event": "subject_registered"}) == published_before + 2

    assert relay.relay_once() == 0
    assert len(publisher.events) == 3


def test_relay_works_in_batches(sessions: sessionmaker[Session]) -> None:
    write_events(sessions, *(event("e", n=n) for n in range(5)))
    publisher = RecordingPublisher()
    relay = OutboxRelay("registry", sessions, publisher, batch_size=2)

    assert [relay.relay_once() for _ in range(4)] == [2, 2, 1, 0]
    assert [e.payload["n"] for e in publisher.events] == [0, 1, 2, 3, 4]


def test_a_publish_failure_keeps_the_rest_for_a_later_relay(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    events = [event("e", n=n) for n in range(3)]
    write_events(sessions, *events)
    publisher = RecordingPublisher(fail_on_call=2)
    relay = OutboxRelay("registry", sessions, publisher)

    with pytest.raises(ConnectionError):
        relay.relay_once()

    rows = outbox_rows(engine)
    assert rows[0]["published_at"] is not None
    assert [row["published_at"] for row in rows[1:]] == [None, None]
    assert relay.pending() == 2
    assert [e.event_id for e in publisher.events] == [events[0].event_id]

    assert relay.relay_once() == 2

    assert [e.event_id for e in publisher.events] == [e.event_id for e in events]
    assert relay.pending() == 0


def test_relaying_everything_sets_the_pending_gauge_to_zero(
    sessions: sessionmaker[Session]
) -> None:
    write_events(sessions, *(event("e", n=n) for n in range(5)))
    publisher = RecordingPublisher()
    relay = OutboxRelay("registry", sessions, publisher, batch_size=2)
    metrics.outbox_pending.labels("registry").set(7)

    relay.relay_all()

    assert [e.payload["n"] for e in publisher.events] == [0, 1, 2, 3, 4]
    assert sample("agritrace_outbox_pending", {"service": "registry"}) == 0


def test_a_failed_relay_sets_the_pending_gauge_to_what_is_left(
    sessions: sessionmaker[Session]
) -> None:
    write_events(sessions, *(event("e", n=n) for n in range(3)))
    relay = OutboxRelay("registry", sessions, RecordingPublisher(fail_on_call=2))

    with pytest.raises(ConnectionError):
        relay.relay_all()

    assert sample("agritrace_outbox_pending", {"service": "registry"}) == 2


class CountingSessions:
    """A session factory that counts the sessions it opens."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self.opened = 0

    def __call__(self) -> Session:
        self.opened += 1
        return self._sessions()


def test_a_relay_whose_probe_finds_nothing_opens_no_session(
    sessions: sessionmaker[Session]
) -> None:
    write_events(sessions, event("e"))  # the probe's answer is what the relay goes by
    counting = CountingSessions(sessions)
    publisher = RecordingPublisher()
    relay = OutboxRelay("registry", counting, publisher,  # type: ignore[arg-type]
                        probe=lambda: False)
    metrics.outbox_pending.labels("registry").set(3)

    relay.relay_all()

    assert counting.opened == 0
    assert publisher.events == []
    assert sample("agritrace_outbox_pending", {"service": "registry"}) == 0


def test_a_relay_whose_probe_finds_events_publishes_them(
    sessions: sessionmaker[Session]
) -> None:
    write_events(sessions, *(event("e", n=n) for n in range(3)))
    publisher = RecordingPublisher()
    relay = OutboxRelay("registry", sessions, publisher, batch_size=2, probe=lambda: True)

    relay.relay_all()

    assert [e.payload["n"] for e in publisher.events] == [0, 1, 2]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_unpublished_probe_sees_committed_events_until_they_are_published(
    database: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    target = (request.getfixturevalue("postgres") if database == "postgresql"
              else DatabaseTarget(f"sqlite:///{tmp_path / 'probe.db'}", None))
    engine = db.create_engine(target, pool_size=2)
    with engine.begin() as connection:
        create_event_tables(connection)
    sessions = db.session_factory(engine)
    # Its own engine, as ServiceStore gives it: it must see other connections' commits.
    probe_engine = db.create_engine(target, pool_size=1, pre_ping=False, autocommit=True)
    try:
        probe = unpublished_probe(probe_engine)
        assert probe() is False
        write_events(sessions, event("e"), event("f"))
        assert probe() is True
        publisher = RecordingPublisher()
        OutboxRelay("registry", sessions, publisher, probe=probe).relay_all()
        assert [e.name for e in publisher.events] == ["e", "f"]
        assert probe() is False
    finally:
        probe_engine.dispose()
        engine.dispose()


def test_the_relay_thread_delivers_after_a_wake(sessions: sessionmaker[Session]) -> None:
    publisher = RecordingPublisher()
    relay = OutboxRelay("registry", sessions, publisher, poll_seconds=30)
    relay.start()
    try:
        write_events(sessions, event("e"))
        relay.wake()
        deadline = time.monotonic() + 5  # far less than the 30 s poll interval
        while not publisher.events and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        relay.stop()
    assert [e.name for e in publisher.events] == ["e"]


# -- idempotent handling -----------------------------------------------------------------------


def handler_for(
    sessions: sessionmaker[Session], consumer: str, effect: Callable[[Event, Any], None]
) -> IdempotentHandler:
    return IdempotentHandler(consumer, effect, lambda: db.SqlAlchemyUnitOfWork(sessions))


def test_a_handler_runs_once_per_event_id(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    consumer = f"test.{uuid.uuid4().hex[:8]}"
    handled: list[str] = []
    handler = handler_for(sessions, consumer, lambda e, uow: handled.append(e.event_id))
    item = event("subject_registered", subject_id="S1")
    labels = {"consumer": consumer, "event": "subject_registered"}

    handler(item)
    handler(item)
    handler(Event.from_wire(item.to_wire()))  # the same event, re-delivered over the wire

    assert handled == [item.event_id]
    assert inbox_rows(engine) == [(consumer, item.event_id)]
    assert sample("agritrace_events_handled_total", labels | {"outcome": "handled"}) == 1
    assert sample("agritrace_events_handled_total", labels | {"outcome": "duplicate"}) == 2


def test_consumers_and_events_are_independent(sessions: sessionmaker[Session]) -> None:
    handled: list[tuple[str, str]] = []
    first = handler_for(sessions, "test.a", lambda e, uow: handled.append(("a", e.name)))
    second = handler_for(sessions, "test.b", lambda e, uow: handled.append(("b", e.name)))
    one, other = event("one"), event("other")

    for handler in (first, second):
        handler(one)
        handler(other)

    assert handled == [("a", "one"), ("a", "other"), ("b", "one"), ("b", "other")]


def test_a_failing_handler_leaves_no_claim_so_a_redelivery_runs_it_again(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    calls: list[str] = []

    def flaky(item: Event, uow: Any) -> None:
        calls.append(item.event_id)
        if len(calls) == 1:
            raise RuntimeError("handler failed")

    handler = handler_for(sessions, "test.flaky", flaky)
    item = event("subject_registered")

    with pytest.raises(RuntimeError):
        handler(item)
    assert inbox_rows(engine) == []

    handler(item)
    assert calls == [item.event_id, item.event_id]
    assert inbox_rows(engine) == [("test.flaky", item.event_id)]


# -- the envelope and the in-process bus -------------------------------------------------------


def test_event_wire_round_trip() -> None:
    original = Event(
        "registry",
        "subjects_imported",
        {"import_id": "imp-1", "created": 3, "names": ["茶场", "果园"]},
        occurred_at=datetime(2024, 5, 1, 8, 30, 15, 123456, tzinfo=UTC),
        trace_context={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )

    wire = json.loads(json.dumps(original.to_wire()))
    copy = Event.from_wire(wire)

    assert copy == original
    assert copy.routing_key == "registry.subjects_imported"
    assert wire["occurred_at"] == "2024-05-01T08:30:15.123456+00:00"


def test_events_get_unique_ids() -> None:
    assert event("e").event_id != event("e").event_id
    assert len(event("e").event_id) == 32


def test_in_process_bus_delivers_to_subscribers_of_that_event_only() -> None:
    received: list[tuple[str, str]] = []

    def subscriber(tag: str) -> Callable[[Event], None]:
        return lambda item: received.append((tag, item.event_id))

    bus = InProcessBus()
    bus.subscribe(Subscription("c1", "registry", "subject_registered", subscriber("c1")))
    bus.subscribe(Subscription("c2", "registry", "subject_registered", subscriber("c2")))
    bus.subscribe(Subscription("c3", "registry", "subject_updated", subscriber("c3")))
    bus.subscribe(Subscription("c4", "trace", "subject_registered", subscriber("c4")))

    registered = event("subject_registered")
    bus.publish(registered)
    bus.publish(event("subjects_imported"))  # nobody listens: nothing happens

    assert received == [("c1", registered.event_id), ("c2", registered.event_id)]


def test_in_process_bus_fails_the_publish_when_a_handler_fails() -> None:
    def broken(item: Event) -> None:
        raise RuntimeError("handler failed")

    bus = InProcessBus()
    bus.subscribe(Subscription("c1", "registry", "e", broken))
    with pytest.raises(RuntimeError):
        bus.publish(event("e"))


def test_relay_through_the_in_process_bus_to_an_idempotent_handler(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    handled: list[str] = []
    bus = InProcessBus()
    handler = handler_for(sessions, "test.bus", lambda e, uow: handled.append(e.event_id))
    bus.subscribe(Subscription("test.bus", "registry", "subject_registered", handler))
    item = event("subject_registered")
    write_events(sessions, item)

    assert OutboxRelay("registry", sessions, bus).relay_once() == 1
    handler(item)  # a re-delivery

    assert handled == [item.event_id]
    assert inbox_rows(engine) == [("test.bus", item.event_id)]
