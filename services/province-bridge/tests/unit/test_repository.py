"""The bridge's SQLAlchemy adapters on a migrated SQLite file: the import's checkpoint and
report survive a new process (a new engine), and each province has its own file."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agritrace_bridge.adapters.repository import SqlAlchemyBridgeUnitOfWork
from agritrace_bridge.bootstrap import BridgeConfig, migrate
from agritrace_bridge.domain.imports import Outcome, RunState
from agritrace_bridge.domain.retry import Backoff
from agritrace_bridge.service_layer.imports import HistoricalImport
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
