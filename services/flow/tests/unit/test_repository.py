"""The SQL store under the capture path, on SQLite and (when there is one at 127.0.0.1) on
PostgreSQL, both migrated by the service's migrations: flags judged message by message from
what a batch keeps (its flags, its end of production, on PostgreSQL only the applications
still inside their interval) equal those of all its records judged at once."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from agritrace_flow.adapters.repository import FlowUnitOfWork
from agritrace_flow.bootstrap import MIGRATIONS
from agritrace_flow.domain.model import Activity, interval_flags
from agritrace_flow.domain.products import ProductCatalog
from agritrace_flow.service_layer.services import (
    BatchCommand,
    BatchInput,
    FlowService,
    ShipmentCommand,
    ShipmentInput,
    TraceInput,
)
from agritrace_kernel import db
from agritrace_kernel.config import DatabaseTarget
from agritrace_kernel.registry_client import SubjectInfo
from agritrace_testing.fakes import load_beside
from agritrace_testing.postgres import throwaway_database

fakes = load_beside(__file__, "fakes.py", "agritrace_flow_unit_fakes")
COOP, MARKET = fakes.COOP, fakes.MARKET


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DatabaseTarget]:
    if request.param == "sqlite":
        yield DatabaseTarget(f"sqlite:///{tmp_path / 'flow.db'}", None)
        return
    with throwaway_database("agritrace_flow", skip_without=True) as url:
        yield DatabaseTarget(url, "flow")


@pytest.fixture
def service(target: DatabaseTarget) -> Iterator[FlowService]:
    db.migrate(target, MIGRATIONS)
    engine = db.create_engine(target, pool_size=2)
    sessions, readers = db.session_factory(engine), db.reader_session_factory(engine)
    subjects = fakes.FakeSubjectDirectory([SubjectInfo(COOP, "370783", "APPROVED"),
                                           SubjectInfo(MARKET, "110106", "APPROVED")])
    yield FlowService(lambda: FlowUnitOfWork(sessions), subjects,
                      fakes.FakeCodeService(subjects), ProductCatalog.bundled(),
                      reader_factory=lambda: FlowUnitOfWork(readers))
    engine.dispose()


def _record(rng: random.Random, batch_id: str, number: int) -> TraceInput:
    activity = rng.choice([Activity.PESTICIDE, Activity.VETERINARY_DRUG, Activity.HARVEST,
                           Activity.SLAUGHTER, Activity.INSPECTION, Activity.FERTILISER])
    at = datetime(2024, 3, 1, tzinfo=UTC) + timedelta(hours=rng.randrange(0, 40 * 24, 6))
    return TraceInput("37", f"R-{batch_id}-{number}", batch_id, at, activity, {"n": "1"},
                      rng.choice([0, 1, 3, 7, 14]) if activity.has_interval else 0,
                      rng.random() > 0.1)


def test_flags_judged_message_by_message_equal_those_of_all_the_records(
    service: FlowService,
) -> None:
    rng = random.Random(5)
    created = service.record_batches_and_shipments([BatchCommand(f"req-{n}", BatchInput(
        subject_id=COOP, product_code="010403001", product_name="", amount="900", unit="KG",
        production_date=date(2024, 3, 1) + timedelta(days=rng.randrange(0, 40)),
        origin_division="", certificate=None)) for n in range(12)])
    batches = [outcome.value for outcome in created]  # type: ignore[union-attr]
    sent: dict[str, list[TraceInput]] = {batch.batch_id: [] for batch in batches}
    for message in range(8):
        records = [_record(rng, batch.batch_id, message * 100 + n)
                   for batch in batches for n in range(rng.randrange(0, 4))]
        service.record_internal_traces(records)
        for record in records:
            sent[record.batch_id].append(record)
        for batch in batches:
            stored = service.get_batch(batch.batch_id)
            with service.uow_factory() as uow:
                everything = uow.flow.traces_of(batch.batch_id)
            assert len(everything) == len(sent[batch.batch_id])
            assert sorted(stored.flags) == sorted(interval_flags(everything,
                                                                 batch.production_date))
            ends = [t.occurred_at for t in everything if t.activity.ends_production]
            assert stored.ended_at == (max(ends) if ends else None)


def test_a_run_of_batches_and_shipments_is_written_in_bulk(service: FlowService) -> None:
    batch = BatchInput(subject_id=COOP, product_code="010403001", product_name="",
                       amount="900", unit="KG", production_date=date(2024, 3, 1),
                       origin_division="", certificate=None)
    outcomes = service.record_batches_and_shipments([BatchCommand("req-b", batch)])
    batch_id = outcomes[0].value.batch_id  # type: ignore[union-attr]
    ship = ShipmentInput(batch_id, COOP, MARKET, (), "300", "KG", None, "")
    outcomes = service.record_batches_and_shipments([
        ShipmentCommand("req-s1", ship), ShipmentCommand("req-s2", ship),
        ShipmentCommand("req-s3", ship), ShipmentCommand("req-s4", ship),
        BatchCommand("req-b", batch)])

    assert [getattr(o, "reason", "STORED") for o in outcomes[:4]] == [
        "STORED", "STORED", "STORED", "NOT_HELD"]
    assert outcomes[4].replayed  # type: ignore[union-attr]
    with service.uow_factory() as uow:
        assert uow.flow.holding(batch_id, COOP).amount == 0  # type: ignore[union-attr]
        assert uow.flow.holding(batch_id, MARKET).amount == 900  # type: ignore[union-attr]
        assert [e.kind for e in uow.flow.history(batch_id, None, 10)] == [
            "CREATED", "SHIPPED", "SHIPPED", "SHIPPED"]


def test_concurrent_writers_of_one_batch_judge_one_after_the_other(
    service: FlowService,
) -> None:
    """Two bridges' messages for the same batches at once: each judges from what the other
    wrote (the batch rows stay locked until the writer commits), so no verdict is lost."""
    created = service.record_batches_and_shipments([BatchCommand(f"req-{n}", BatchInput(
        subject_id=COOP, product_code="010403001", product_name="", amount="900", unit="KG",
        production_date=date(2024, 3, 20), origin_division="", certificate=None))
        for n in range(4)])
    batch_ids = [outcome.value.batch_id for outcome in created]  # type: ignore[union-attr]

    def bridge(seed: int) -> None:
        rng = random.Random(seed)
        for message in range(6):
            service.record_internal_traces([
                _record(rng, batch_id, seed * 1000 + message * 10 + n)
                for batch_id in batch_ids for n in range(3)])

    threads = [threading.Thread(target=bridge, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for batch_id in batch_ids:
        stored = service.get_batch(batch_id)
        with service.uow_factory() as uow:
            everything = uow.flow.traces_of(batch_id)
        assert len(everything) == 36
        assert sorted(stored.flags) == sorted(interval_flags(everything, date(2024, 3, 20)))
