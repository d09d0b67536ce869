"""The bridge's SQLAlchemy adapters on a migrated SQLite file: the import's checkpoint and
report survive a new process (a new engine), and each province has its own file."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agritrace_bridge.adapters.repository import SqlAlchemyBridgeUnitOfWork
from agritrace_bridge.bootstrap import migrate
from agritrace_bridge.config import BridgeConfig
from agritrace_bridge.domain.imports import Outcome, RunState
from agritrace_bridge.domain.inbound import CaptureOutcome
from agritrace_bridge.domain.outbound import national_record
from agritrace_bridge.domain.retry import Backoff
from agritrace_bridge.service_layer.imports import HistoricalImport
from agritrace_bridge.service_layer.observe import Direction
from agritrace_bridge.service_layer.ports import AdapterConfig
from agritrace_kernel.config import Settings
from agritrace_kernel.events.store import outbox
from agritrace_kernel.store import ServiceStore


def test_the_import_checkpoint_and_report_live_in_the_provinces_own_database(
        tmp_path: Path, fake: Any) -> None:
    settings = Settings(data_dir=tmp_path)
    config = BridgeConfig("rest", AdapterConfig("37"))
    migrate(settings, config)
    assert (tmp_path / "province-bridge-37.db").exists()
    assert settings.database_for(config.service).schema is None
    subjects = [fake.subject(n) for n in range(1, 8)]
    platform, registry = fake.FakePlatform(subjects), fake.FakeRegistry()

    def use_case() -> tuple[HistoricalImport, ServiceStore]:
        store = ServiceStore.open(settings, config.service, None)
        return HistoricalImport("37", lambda: SqlAlchemyBridgeUnitOfWork(store.sessions),
                                platform, registry, page_size=3,
                                backoff=Backoff(0, 0)), store

    first, store = use_case()
    started = first.start(None, "one")
    stop = threading.Event()
    first._step(started, stop)  # one page, then the process "dies"
    store.close()

    second, store = use_case()
    resumed = second.get()
    assert (resumed.state, resumed.pages, resumed.page_token) == (RunState.RUNNING, 1, "3")
    done = second.run_pending(stop)
    assert done is not None and done.state is RunState.COMPLETED
    assert done.counts.created == 7
    report = second.report(None, "", "", 5)
    assert len(report.outcomes) == 5 and report.next_page_token
    rest = second.report(None, "", report.next_page_token, 5)
    assert [o.source_record_id for o in report.outcomes + rest.outcomes] == \
        [s.source_record_id for s in subjects]
    assert second.report(None, "", "", 5, Outcome.REJECTED).outcomes == []
    with store.sessions() as session:
        events = session.execute(sa.select(outbox.c.name).order_by(outbox.c.id)).scalars().all()
    assert events == ["import_started", "import_completed"]
    store.close()
    assert Settings(database_url="postgresql+psycopg://h/db", pii_key="A" * 43 + "=") \
        .database_for(config.service).schema == "province_bridge_37"


def test_the_inbox_the_outbound_queue_and_dead_letters_on_sqlite(
        tmp_path: Path, fake: Any) -> None:
    settings = Settings(data_dir=tmp_path)
    config = BridgeConfig("rest", AdapterConfig("37"))
    migrate(settings, config)
    store = ServiceStore.open(settings, config.service, None)
    now = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)

    def uow() -> SqlAlchemyBridgeUnitOfWork:
        return SqlAlchemyBridgeUnitOfWork(store.sessions)

    with uow() as work:
        records = [fake.trace(n) for n in range(3)]
        assert work.inbox.add(records, now) == 3
        assert work.inbox.add([records[0], fake.trace(0, variety="changed")], now) == 1
        work.inbox.set_cursor("trace_records", "c1", now)
        work.inbox.set_cursor("trace_records", "c2", now)
        work.commit()
    with uow() as work:
        pending = work.inbox.pending(10)
        assert [p.record.record_id for p in pending] == [r.record_id for r in records] + [
            records[0].record_id]
        work.inbox.settle([(pending[0].seq, CaptureOutcome("STORED")),
                           (pending[3].seq, CaptureOutcome("REFUSED", "ALREADY_EXISTS: x"))],
                          now)
        work.inbox.attempted([pending[1].seq], "UNAVAILABLE: down")
        work.commit()
    with uow() as work:
        assert work.inbox.cursor("trace_records") == "c2"
        assert [p.seq for p in work.inbox.pending(10)] == [pending[1].seq, pending[2].seq]
        assert work.inbox.pending(10)[0].attempts == 1
        status = work.sync.status(Direction.INBOUND, now + timedelta(seconds=30))
        assert (status.queue_depth, status.lag_seconds) == (2, 30.0)

        record = national_record("e" * 32, "subject_reviewed", now,
                                 {"subject_id": "S1", "division_code": "370102"}, now)
        assert work.outbound.enqueue(record, now) and not work.outbound.enqueue(record, now)
        work.outbound.retry_later(record.record_id, 1, now + timedelta(seconds=5), "down")
        assert work.outbound.due(now, 10) == [] and work.outbound.next_due() == \
            now + timedelta(seconds=5)
        work.outbound.dead(record.record_id, 2, "UNAVAILABLE: down", now)
        assert not work.outbound.enqueue(record, now)  # a dead letter is not queued again
        assert work.sync.status(Direction.OUTBOUND, now).dead_letters == 1
        assert work.outbound.replay([], now) == 1
        [due] = work.outbound.due(now, 10)
        assert (due.record_id, due.attempts, due.payload) == (
            record.record_id, 0, {"subject_id": "S1", "division_code": "370102"})
        work.outbound.delivered(record.record_id, now)
        work.sync.note_delivered(Direction.OUTBOUND, 1, now)
        work.commit()
    with uow() as work:
        assert work.outbound.due(now, 10) == []
        assert work.sync.status(Direction.OUTBOUND, now).delivered == 1
    store.close()
