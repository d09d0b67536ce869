"""The read model's projections: every source event, through the subscriptions the query
service registers (inbox, lag metric, cache invalidation), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from agritrace_kernel.events.model import Event
from agritrace_query.adapters import orm
from agritrace_query.adapters.cache import InMemoryOriginCache
from agritrace_query.adapters.projection_store import LINEAGE_PAIRS_LIMIT
from agritrace_query.adapters.unit_of_work import ProjectionUnitOfWork
from agritrace_query.service_layer.projection_ports import batch_key, code_key
from agritrace_query.service_layer.projections import (
    CONSUMER,
    PROJECTIONS,
    ProjectionHandler,
    china_day,
    subscriptions,
)
from agritrace_testing.fakes import FixedClock, load_beside

support = load_beside(__file__, "test_projections_support.py", "agritrace_query_projection_support")
engine = support.engine
sessions = support.sessions
uow_factory = support.uow_factory
T0 = support.T0
DAY = china_day(T0)
code, event, subject, rows, counts, snapshot = (support.code, support.event, support.subject,
                                                support.rows, support.counts, support.snapshot)

S1, S2, S3, S4 = "S1000000000001", "S2000000000002", "S3000000000003", "S4000000000004"
B1, B2 = "B100000000000001", "B200000000000002"
CERTIFICATE = {"certificate_id": "CERT-1", "producer_name": "Green Tea Co-op",
               "contact_phone_masked": "138****0000", "issue_date": "2024-04-28",
               "commitment": "no banned pesticides", "basis": "SELF_TEST",
               "test_result": "passed", "contact_phone": "13800000000"}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class Projection:
    """The query service's subscriptions as a bus would call them."""

    def __init__(self, uow_factory: Callable[[], ProjectionUnitOfWork],
                 cache: InMemoryOriginCache | None = None) -> None:
        self.cache = cache if cache is not None else InMemoryOriginCache()
        self.clock = FixedClock(at(60))
        self.handlers = {(s.source, s.name): s for s in
                         subscriptions(uow_factory, self.cache, clock=self.clock)}

    def __call__(self, *events: Event) -> None:
        for item in events:
            subscription = self.handlers[(item.source, item.name)]
            assert subscription.consumer == CONSUMER
            subscription.handle(item)


@pytest.fixture
def project(uow_factory: Callable[[], ProjectionUnitOfWork]) -> Projection:
    return Projection(uow_factory)


def story() -> list[Event]:
    """Every event the read model is built from, in the order they happened: a co-op grows
    tea, a trader buys it and sells it on to a market in another province, which repacks it."""
    c = [code(n) for n in range(1, 6)]
    children = [code(10, "44"), code(11, "44")]
    return [
        event("registry", "subject_registered", subject(S1, 1), at(0)),
        event("registry", "subject_updated", subject(S1, 2, name="Longjing Co-op"), at(1)),
        event("registry", "subject_reviewed", subject(S1, 3, name="Longjing Co-op",
                                                      status="SUSPENDED"), at(2)),
        event("registry", "subject_registered", subject(S2, 1, "330102", "Hangzhou Trader"),
              at(3)),
        event("registry", "import_batch_applied", {
            "import_id": "imp-1", "source_province": "44",
            "subjects": [subject(S3, 1, "440305", "Shenzhen Market"),
                         subject(S4, 1, "370102", "Jinan Farm")]}, at(4)),
        support.codes_issued(S1, c, at=at(5)),
        support.codes_moved("codes_printed", [S1], c, at(6), printed=5, activated=0),
        support.codes_moved("codes_activated", [S1], c[:3], at(7), activated=3,
                            product_batch_ids=[B1], on_print=False),
        event("flow", "batch_created", support.batch_payload(
            B1, S1, codes=c[:3], certificate=CERTIFICATE, certificate_id="CERT-1",
            created_at=at(8).isoformat(), code_count=3), at(8)),
        event("flow", "internal_trace_recorded", {
            "records": [{"batch_id": B1, "source_province": "33", "source_record_id": "r1",
                         "activity": "INSPECTION", "occur_time": at(9).isoformat(),
                         "result": {"passed": True, "summary": "residues below limits"}}],
            "flags": {B1: []}}, at(9)),
        event("flow", "internal_trace_recorded", {
            "records": [{"batch_id": B1, "source_province": "33", "source_record_id": "r2",
                         "activity": "PESTICIDE", "occur_time": at(9.5).isoformat()},
                        {"batch_id": B1, "source_province": "33", "source_record_id": "r3",
                         "activity": "INSPECTION", "occur_time": at(9.8).isoformat(),
                         "result": {"passed": False, "summary": "chlorpyrifos found"}}],
            "flags": {B1: ["INSPECTION_FAILED", "PESTICIDE_INTERVAL_NOT_PASSED"]}}, at(10)),
        support.shipped("SH1", B1, S1, S2, at=at(11)),
        event("flow", "batch_received", {
            "shipment_id": "SH1", "batch_id": B1, "buyer_subject_id": S2,
            "seller_subject_id": S1, "code": c[0], "receive_time": at(12).isoformat()},
            at(12)),
        support.shipped("SH2", B1, S2, S3, "33", "44", at=at(13)),
        event("flow", "market_entry_checked", {
            "entry_id": "E1", "market_subject_id": S3, "market_province": "44",
            "admitted": False, "refusal": "FLAGGED", "reason": "inspection failed",
            "batch_id": B1, "code": c[0], "check_time": at(14).isoformat()}, at(14)),
        event("coding", "codes_derived", {
            "issuance_id": "7002", "subject_id": S3, "subject_division": "440305",
            "province": "44", "mode": "ONLINE", "product_batch_id": B2,
            "printer_subject_id": "", "line_id": "", "reason": "REPACK",
            "parent_codes": c[:2], "codes": children, "code_count": 2, "part": 1,
            "parts": 1}, at(15)),
        event("flow", "batch_transformed", {
            "transformation_id": "T1", "kind": "REPACK", "subject_id": S3,
            "inputs": [{"batch_id": B1, "quantity": "10.000", "unit": "KG",
                        "codes": c[:2]}],
            "output": support.batch_payload(B2, S3, "440305", parent_batch_ids=[B1],
                                            code_count=2),
            "output_codes": children}, at(16)),
        support.codes_moved("codes_voided", [S1], [c[4]], at(17), voided=1,
                            reason="label spoiled"),
    ]


def table(engine: Engine, tbl: Any, key: str) -> dict[str, dict[str, Any]]:
    return {row[key]: row for row in rows(engine, tbl)}


def test_the_story_in_order_builds_the_read_model(engine: Engine, project: Projection) -> None:
    project(*story())
    c = [code(n) for n in range(1, 6)]

    subjects = table(engine, orm.subjects, "subject_id")
    assert subjects[S1] | {"registered_at": None} == {
        "subject_id": S1, "kind": "COOPERATIVE", "name": "Longjing Co-op",
        "division_code": "330106", "province": "33", "status": "SUSPENDED", "version": 3,
        "registered_at": None, "registered_division": "330106"}
    assert subjects[S1]["registered_at"] == at(0)
    assert subjects[S4]["division_code"] == "370102" and subjects[S4]["registered_at"] == at(4)

    codes = table(engine, orm.codes, "code")
    assert {k: (v["state"], v["batch_id"]) for k, v in codes.items()} == {
        c[0]: ("CONSUMED", B1), c[1]: ("CONSUMED", B1), c[2]: ("ACTIVE", B1),
        c[3]: ("PRINTED", ""), c[4]: ("VOID", ""),
        code(10, "44"): ("ISSUED", B2), code(11, "44"): ("ISSUED", B2)}
    assert codes[c[0]]["issuance_id"] == "7001" and codes[c[0]]["subject_id"] == S1
    assert codes[c[4]]["updated_at"] == at(17)
    assert codes[code(10, "44")]["issuance_id"] == "7002"
    assert {(r["parent_code"], r["child_code"]) for r in rows(engine, orm.code_lineage)} == {
        (p, ch) for p in c[:2] for ch in (code(10, "44"), code(11, "44"))}

    batches = table(engine, orm.batches, "batch_id")
    b1 = batches[B1]
    assert (b1["product_name"], b1["production_date"], b1["created_at"]) == (
        "Longjing tea", date(2024, 4, 28), at(8))
    certificate = json.loads(b1["certificate"])
    assert certificate["contact_phone_masked"] == "138****0000"
    assert "contact_phone" not in certificate  # only the fields the origin view may show
    assert b1["flags"] == "INSPECTION_FAILED,PESTICIDE_INTERVAL_NOT_PASSED"
    assert (b1["inspections_passed"], b1["inspections_failed"]) == (1, 1)
    assert (b1["last_inspection_at"], b1["last_inspection_result"]) == (
        at(9.8), "FAILED: chlorpyrifos found")
    assert batches[B2]["parent_batch_ids"] == B1
    assert batches[B2]["certificate"] == ""

    shipments = table(engine, orm.shipments, "shipment_id")
    assert shipments["SH1"]["received_at"] == at(12)
    assert shipments["SH1"]["ship_time"] == at(11)
    assert (shipments["SH2"]["seller_province"], shipments["SH2"]["buyer_province"]) == (
        "33", "44")
    assert [(r["input_batch_id"], r["output_batch_id"], r["quantity"])
            for r in rows(engine, orm.transformation_inputs)] == [(B1, B2, "10.000")]
    entry = rows(engine, orm.market_entries)[0]
    assert (entry["admitted"], entry["refusal"], entry["batch_id"]) == (False, "FLAGGED", B1)


def test_the_story_counts_statistics_per_county_and_china_day(engine: Engine,
                                                               project: Projection) -> None:
    project(*story())
    assert counts(engine) == {
        (DAY, "330106", "subjects_registered"): 1,
        (DAY, "330102", "subjects_registered"): 1,
        (DAY, "440305", "subjects_registered"): 1,
        (DAY, "370102", "subjects_registered"): 1,
        (DAY, "330106", "codes_issued"): 5,
        (DAY, "440305", "codes_issued"): 2,  # derived codes are issued too
        (DAY, "330106", "codes_activated"): 3,
        (DAY, "330106", "flows"): 1,
        (DAY, "330102", "flows"): 1,
        (DAY, "330102", "cross_province_out"): 1,
        (DAY, "440305", "cross_province_in"): 1,
        (DAY, "440305", "market_entries"): 1,
        (DAY, "440305", "market_refusals"): 1,
    }
    assert {(r["subject_id"], r["day"], r["division_code"])
            for r in rows(engine, orm.subject_activity)} == {
        (S1, DAY, "330106"), (S2, DAY, "330102"), (S3, DAY, "440305")}


def test_the_china_day_of_an_event_late_in_the_utc_day_is_the_next_day(
        engine: Engine, project: Projection) -> None:
    late = datetime(2024, 5, 1, 17, 30, tzinfo=UTC)  # 01:30 on 2 May in China
    project(event("registry", "subject_registered", subject(S1), late))
    assert counts(engine) == {(date(2024, 5, 2), "330106", "subjects_registered"): 1}


def test_every_event_is_projected(engine: Engine, project: Projection) -> None:
    handled = {(item.source, item.name) for item in story()}
    assert handled == set(PROJECTIONS)
    assert set(project.handlers) == set(PROJECTIONS)


def test_a_repeated_event_changes_nothing(
        engine: Engine, uow_factory: Callable[[], ProjectionUnitOfWork]) -> None:
    Projection(uow_factory)(*story())
    expected = snapshot(engine)
    support.empty(engine)
    Projection(uow_factory)(*(item for item in story() for _ in range(2)))
    assert snapshot(engine) == expected


@pytest.mark.parametrize("order", ["reversed", "seed-1"])
def test_events_in_any_order_converge_on_the_same_read_model(
        engine: Engine, uow_factory: Callable[[], ProjectionUnitOfWork], order: str) -> None:
    Projection(uow_factory)(*story())
    expected = snapshot(engine)
    support.empty(engine)
    events = story()
    if order == "reversed":
        events.reverse()
    else:
        random.Random(order).shuffle(events)
    Projection(uow_factory)(*events)
    assert snapshot(engine) == expected


def test_a_subject_keeps_its_highest_version_and_its_earliest_registration(
        engine: Engine, project: Projection) -> None:
    yesterday = T0 - timedelta(days=1)
    project(event("registry", "subject_reviewed", subject(S1, 3, status="SUSPENDED"), at(5)))
    assert counts(engine) == {(DAY, "330106", "subjects_registered"): 1}
    project(event("registry", "subject_registered", subject(S1, 1, "330102"), yesterday))
    (row,) = rows(engine, orm.subjects)
    assert (row["version"], row["status"], row["division_code"]) == (3, "SUSPENDED", "330106")
    assert row["registered_at"] == yesterday
    # The registration counts once, on the day and in the county of the registration; the
    # counter it moved from is gone, not left at zero.
    assert counts(engine) == {(china_day(yesterday), "330102", "subjects_registered"): 1}


def test_counts_made_before_their_subject_was_known_move_to_its_county(
        engine: Engine, project: Projection) -> None:
    project(support.shipped("SH1", B1, S1, S2, "33", "44", at=at(1)))
    assert counts(engine) == {(DAY, "330000", "flows"): 1,
                              (DAY, "330000", "cross_province_out"): 1,
                              (DAY, "440000", "cross_province_in"): 1}
    assert rows(engine, orm.subject_activity)[0]["division_code"] == "330000"
    project(event("registry", "subject_registered", subject(S1), at(2)),
            event("registry", "import_batch_applied", {
                "import_id": "i", "source_province": "44",
                "subjects": [subject(S2, 1, "440305")]}, at(3)))
    assert {key: n for key, n in counts(engine).items() if n} == {
        (DAY, "330106", "flows"): 1, (DAY, "330106", "cross_province_out"): 1,
        (DAY, "440305", "cross_province_in"): 1,
        (DAY, "330106", "subjects_registered"): 1, (DAY, "440305", "subjects_registered"): 1}
    assert rows(engine, orm.subject_activity)[0]["division_code"] == "330106"
    assert rows(engine, orm.held_counts) == []


def test_activation_of_several_subjects_codes_counts_each_subject(
        engine: Engine, project: Projection) -> None:
    project(event("registry", "subject_registered", subject(S1), at(0)),
            event("registry", "subject_registered", subject(S2, 1, "330102"), at(0)),
            support.codes_issued(S1, [code(1), code(2)], issuance_id="1", at=at(1)),
            support.codes_issued(S2, [code(3)], "", "330102", "2", at(1)),
            support.codes_moved("codes_activated", [S1, S2], [code(1), code(2), code(3)],
                                at(2), ("1", "2"), product_batch_ids=[B1]))
    assert counts(engine)[(DAY, "330106", "codes_activated")] == 2
    assert counts(engine)[(DAY, "330102", "codes_activated")] == 1
    issuances = {r["code"]: r["issuance_id"] for r in rows(engine, orm.codes)}
    assert issuances == {code(1): "1", code(2): "1", code(3): "2"}


def test_a_code_never_moves_back_to_an_earlier_state(engine: Engine,
                                                      project: Projection) -> None:
    c = [code(1)]
    project(support.codes_moved("codes_activated", [S1], c, at(2), product_batch_ids=[B1]),
            support.codes_moved("codes_printed", [S1], c, at(1)),
            support.codes_issued(S1, c, at=at(0)))
    (row,) = rows(engine, orm.codes)
    assert (row["state"], row["batch_id"], row["issuance_id"], row["updated_at"]) == (
        "ACTIVE", B1, "7001", at(2))


def test_older_flags_never_overwrite_newer_ones(engine: Engine, project: Projection) -> None:
    def traces(flags: list[str], when: datetime) -> Event:
        return event("flow", "internal_trace_recorded", {"records": [], "flags": {B1: flags}},
                     when)

    project(traces(["PESTICIDE_INTERVAL_NOT_PASSED"], at(1)), traces([], at(2)),
            traces(["WITHDRAWAL_PERIOD_NOT_PASSED"], at(0)))
    (row,) = rows(engine, orm.batches)
    assert (row["flags"], row["flags_at"]) == ("", at(2))


def test_a_batch_known_only_from_its_records_is_completed_by_batch_created(
        engine: Engine, project: Projection) -> None:
    project(event("flow", "internal_trace_recorded", {
        "records": [{"batch_id": B1, "activity": "INSPECTION",
                     "occur_time": at(1).isoformat(),
                     "result": {"passed": True, "summary": ""}}],
        "flags": {B1: []}}, at(1)))
    (partial,) = rows(engine, orm.batches)
    assert (partial["created_at"], partial["production_date"], partial["product_name"]) == (
        None, None, "")
    assert partial["last_inspection_result"] == "PASSED"
    # A flow payload from before `certificate`, `codes` and `created_at` came along.
    project(event("flow", "batch_created", support.batch_payload(
        B1, S1, certificate_id="CERT-9"), at(0)))
    (row,) = rows(engine, orm.batches)
    assert (row["created_at"], row["product_name"], row["inspections_passed"]) == (
        at(0), "Longjing tea", 1)
    assert json.loads(row["certificate"]) == {"certificate_id": "CERT-9"}


def test_an_inspection_without_a_result_is_counted_neither_way(
        engine: Engine, project: Projection) -> None:
    project(event("flow", "internal_trace_recorded", {
        "records": [{"batch_id": B1, "activity": "INSPECTION",
                     "occur_time": at(1).isoformat()}], "flags": {B1: []}}, at(1)))
    (row,) = rows(engine, orm.batches)
    assert (row["inspections_passed"], row["inspections_failed"],
            row["last_inspection_at"]) == (0, 0, None)


def test_a_receipt_before_its_shipment_is_completed_by_it(engine: Engine,
                                                          project: Projection) -> None:
    project(event("flow", "batch_received", {
        "shipment_id": "SH1", "batch_id": B1, "buyer_subject_id": S2,
        "seller_subject_id": S1, "code": code(1), "receive_time": at(2).isoformat()}, at(2)))
    (partial,) = rows(engine, orm.shipments)
    assert (partial["ship_time"], partial["received_at"]) == (None, at(2))
    project(support.shipped("SH1", B1, S1, S2, at=at(1)))
    (row,) = rows(engine, orm.shipments)
    assert (row["ship_time"], row["received_at"], row["quantity"]) == (at(1), at(2), "40.000")


def test_ten_thousand_codes_of_one_part_are_stored(engine: Engine,
                                                   project: Projection) -> None:
    many = [code(n) for n in range(10_000)]
    project(support.codes_issued(S1, many, at=at(0)),
            support.codes_moved("codes_voided", [S1], many[:5000] + many[:10], at(1)))
    states = [r["state"] for r in rows(engine, orm.codes)]
    assert states.count("VOID") == 5000 and states.count("ISSUED") == 5000
    assert counts(engine)[(DAY, "330106", "codes_issued")] == 10_000


def test_a_large_derivation_keeps_a_spanning_lineage(engine: Engine,
                                                     project: Projection) -> None:
    parents = [code(n) for n in range(400)]
    children = [code(n, "44") for n in range(LINEAGE_PAIRS_LIMIT // 400 + 1)]
    project(event("coding", "codes_derived", {
        "issuance_id": "9", "subject_id": S3, "subject_division": "440305",
        "product_batch_id": B2, "parent_codes": parents, "codes": children}, at(0)))
    pairs = {(r["parent_code"], r["child_code"]) for r in rows(engine, orm.code_lineage)}
    assert {parent for parent, _ in pairs} == set(parents)
    assert {child for _, child in pairs} == set(children)
    assert len(pairs) == len(parents) + len(children) - 1


def test_malformed_payloads_are_skipped_not_raised(engine: Engine,
                                                   project: Projection) -> None:
    project(event("registry", "subject_registered", {"name": "no id"}),
            event("registry", "import_batch_applied", {"subjects": "nonsense"}),
            event("coding", "codes_issued", {"codes_omitted": True, "code_count": 20_000,
                                             "subject_id": S1, "subject_division": "330106"}),
            event("flow", "batch_created", {"batch_id": B1}),
            event("flow", "batch_transformed", {"output": None}),
            event("flow", "internal_trace_recorded", {"records": [None, {"x": 1}]}))
    assert snapshot(engine)["subjects"] == [] and snapshot(engine)["batches"] == []
    # An issuance too large to list (an older coding) is still counted.
    assert counts(engine) == {(DAY, "330106", "codes_issued"): 20_000}


def test_touched_origin_views_are_dropped_after_the_commit(
        engine: Engine, uow_factory: Callable[[], ProjectionUnitOfWork]) -> None:
    cache = InMemoryOriginCache()
    project = Projection(uow_factory, cache)
    for key in (code_key(code(1)), code_key(code(2)), batch_key(B1), batch_key(B2)):
        cache.set(key, {"cached": True}, 60)
    project(event("flow", "batch_created", support.batch_payload(B1, S1, codes=[code(1)]),
                  at(0)))
    assert cache.get(code_key(code(1))) is None and cache.get(batch_key(B1)) is None
    assert cache.get(code_key(code(2))) == {"cached": True}
    assert cache.get(batch_key(B2)) == {"cached": True}


def test_a_duplicate_drops_no_cached_view(engine: Engine,
                                          uow_factory: Callable[[], ProjectionUnitOfWork]
                                          ) -> None:
    cache = InMemoryOriginCache()
    project = Projection(uow_factory, cache)
    issued = support.codes_issued(S1, [code(1)], at=at(0))
    project(issued)
    cache.set(code_key(code(1)), {"cached": True}, 60)
    project(issued)
    assert cache.get(code_key(code(1))) == {"cached": True}


def _lag_count(source: str) -> float:
    value = REGISTRY.get_sample_value("agritrace_query_read_model_lag_seconds_count",
                                      {"source": source})
    return value or 0.0


def _lag_sum(source: str) -> float:
    return REGISTRY.get_sample_value("agritrace_query_read_model_lag_seconds_sum",
                                     {"source": source}) or 0.0


def test_the_read_model_lag_is_observed_per_source_once_per_event(
        engine: Engine, project: Projection) -> None:
    before_count, before_sum = _lag_count("coding"), _lag_sum("coding")
    issued = support.codes_issued(S1, [code(1)], at=project.clock.now - timedelta(seconds=2))
    project(issued, issued)
    assert _lag_count("coding") == before_count + 1
    assert _lag_sum("coding") == pytest.approx(before_sum + 2.0)


def test_a_failing_attempt_leaves_nothing_and_is_tried_again(
        engine: Engine, sessions: sessionmaker[Session]) -> None:
    failures = [RuntimeError("deadlock detected"), RuntimeError("connection reset")]

    class Flaky(ProjectionUnitOfWork):
        def commit(self) -> None:
            if failures:
                raise failures.pop(0)
            super().commit()

    waits: list[float] = []
    handler = ProjectionHandler(lambda: Flaky(sessions), InMemoryOriginCache(),
                                retry_delays=(0.1, 0.5, 2.0), sleep=waits.append)
    handler(support.codes_issued(S1, [code(1)], at=at(0)))
    assert waits == [0.1, 0.5]
    assert len(rows(engine, orm.codes)) == 1
    assert counts(engine) == {(DAY, "330106", "codes_issued"): 1}


def test_an_event_that_keeps_failing_is_given_up_with_nothing_half_written(
        engine: Engine, sessions: sessionmaker[Session]) -> None:
    class Broken(ProjectionUnitOfWork):
        def commit(self) -> None:
            raise RuntimeError("database went away")

    waits: list[float] = []
    handler = ProjectionHandler(lambda: Broken(sessions), InMemoryOriginCache(),
                                retry_delays=(0.1, 0.5), sleep=waits.append)
    with pytest.raises(RuntimeError):
        handler(support.codes_issued(S1, [code(1)], at=at(0)))
    assert waits == [0.1, 0.5]
    assert rows(engine, orm.codes) == [] and counts(engine) == {}


def test_handlers_running_concurrently_build_the_same_read_model(
        engine: Engine, uow_factory: Callable[[], ProjectionUnitOfWork]) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writing transaction at a time")
    Projection(uow_factory)(*story())
    expected = snapshot(engine)
    support.empty(engine)
    events = story() * 2  # every event delivered twice, as after a redelivery
    random.Random(7).shuffle(events)
    project = Projection(uow_factory)
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(project, events))
    assert snapshot(engine) == expected
