"""The query service's use cases over a SQLite read model: the consumer scan (statuses, the
cache, the counterfeit signal), the traces' input checks, the query log's paging and
jurisdiction filter, and what each call leaves in the log."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from agritrace_coding.domain.codes import new_codes
from agritrace_kernel.errors import InvalidArgument, NotFound, PermissionDenied
from agritrace_kernel.events.store import outbox
from agritrace_query.domain.origin import BatchOrigin, CodeFacts, OriginStatus
from agritrace_query.service_layer.ports import LogFilter
from agritrace_query.service_layer.projection_ports import batch_key, code_key
from agritrace_testing.fakes import load_beside

side = load_beside(__file__, "read_side.py", "agritrace_query_unit_read_side")


class CountingOrigins:
    """The real point queries, counted."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def code_facts(self, code: str) -> CodeFacts | None:
        self.calls.append("code")
        found: CodeFacts | None = self.inner.code_facts(code)
        return found

    def code_origin(self, code: str
                    ) -> tuple[CodeFacts, Callable[[], BatchOrigin | None]] | None:
        self.calls.append("code with batch")
        found: tuple[CodeFacts, Callable[[], BatchOrigin | None]] | None = (
            self.inner.code_origin(code))
        return found

    def batch_origin(self, batch_id: str) -> BatchOrigin | None:
        self.calls.append("batch")
        found: BatchOrigin | None = self.inner.batch_origin(batch_id)
        return found


class FarCache:
    """A cache as RedisOriginCache is: nothing of it held in the process."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    holds_views_locally = False

    def get_local_text(self, key: str) -> str | None:
        return None


model = side.model  # each test on SQLite and on PostgreSQL


@pytest.fixture
def wiring(model: Any) -> Any:
    wiring = side.wire(model, threshold=3)
    wiring.service.origins = CountingOrigins(wiring.service.origins)
    return wiring


CONSUMER = side.caller(None, "330106")


def test_a_genuine_code_shows_its_origin_only(model: Any, wiring: Any) -> None:
    chain = side.seed_chain(model)
    answer = wiring.service.get_origin_info(CONSUMER, chain.b1_code.lower())
    view = answer.view
    assert view.status is OriginStatus.GENUINE_ACTIVE and view.code == chain.b1_code
    assert view.origin is not None
    assert view.origin.producer_name == f"Subject {side.FARM}"
    assert view.producer_place.name == "浙江省 杭州市 西湖区"
    assert view.origin.certificate.contact_phone_masked == "138****5678"
    # Nothing about later holders, anywhere in the answer.
    text = repr(view)
    for later in (side.WHOLESALER, side.PROCESSOR, side.RETAILER):
        assert later not in text
    entry = wiring.sink.last
    assert (entry.rpc, entry.target, entry.target_division, entry.scope, entry.outcome,
            entry.asker, entry.role, entry.place) == (
        "GetOriginInfo", chain.b1_code, "330106", "ORIGIN_ONLY", "OK",
        "anon:f00dfeedf00dfeed", "CONSUMER", "330106")


def test_a_phone_in_clear_is_never_read(model: Any, wiring: Any) -> None:
    model.subject("F", "330106")
    model.batch("B", "F", "330106", certificate={"certificate_id": "C",
                                                 "contact_phone": "13812345678",
                                                 "contact_phone_masked": "138****5678"})
    (code,) = model.codes("B")
    view = wiring.service.get_origin_info(CONSUMER, code).view
    assert "13812345678" not in repr(view)


def test_a_first_scan_reads_its_code_and_only_a_batch_not_held_here(model: Any,
                                                                      wiring: Any) -> None:
    chain = side.seed_chain(model)
    first = wiring.service.get_origin_info(CONSUMER, chain.b1_code)
    # The code's row, then its batch's origin (not held here yet); both views cached after.
    assert wiring.service.origins.calls == ["code", "batch"]
    assert wiring.cache.get(batch_key("B1"))["product_name"] == "Tea"
    again = wiring.service.get_origin_info(CONSUMER, chain.b1_code)
    assert wiring.service.origins.calls == ["code", "batch"]
    assert again.view.origin is not None and again.view.origin.product_name == "Tea"
    assert again.view.origin == first.view.origin
    # Another code of the same batch needs its own row alone; its batch's origin is the
    # cached one, the same object as every other scan of the batch takes from the cache.
    (other,) = model.codes("B1")
    third = wiring.service.get_origin_info(CONSUMER, other)
    assert wiring.service.origins.calls == ["code", "batch", "code"]
    assert third.view.origin is again.view.origin
    # A code whose own view is cached but whose batch's is not: the batch alone.
    wiring.cache.invalidate([], ["B1"])
    wiring.service.get_origin_info(CONSUMER, chain.b1_code)
    assert wiring.service.origins.calls == ["code", "batch", "code", "batch"]


@pytest.mark.parametrize(("state", "batch"), [("ISSUED", ""), ("VOID", "B")])
def test_a_first_scan_reads_no_batch_it_does_not_show(model: Any, wiring: Any, state: str,
                                                      batch: str) -> None:
    model.subject("F", "330106")
    model.batch("B", "F", "330106")
    (code,) = model.codes(batch, state=state)
    assert wiring.service.get_origin_info(CONSUMER, code).view.origin is None
    assert wiring.service.origins.calls == ["code"]


def test_an_unknown_code_costs_its_own_query_alone(model: Any, wiring: Any) -> None:
    answer = wiring.service.get_origin_info(CONSUMER, new_codes("33", 1)[0])
    assert answer.view.status is OriginStatus.UNKNOWN
    assert wiring.service.origins.calls == ["code"]


def test_a_first_scan_takes_its_batch_from_the_query_when_the_cache_has_none_nearby(
        model: Any, wiring: Any) -> None:
    """A cache that holds nothing in the process (Redis alone): the code is read with its
    batch's origin in one query; the batch's view is stored for the scans after."""
    chain = side.seed_chain(model)
    wiring.service.cache = FarCache(wiring.cache)
    view = wiring.service.get_origin_info(CONSUMER, chain.b1_code).view
    assert view.origin is not None and view.origin.product_name == "Tea"
    assert wiring.service.origins.calls == ["code with batch"]
    assert wiring.cache.get(batch_key("B1"))["product_name"] == "Tea"


def test_a_hot_code_is_answered_from_its_memoised_answer_until_its_views_change(
        model: Any, wiring: Any) -> None:
    """Both views in the cache: the same answer object comes back (nothing decoded again);
    a view changed by the read model is another text, so the answer follows at once."""
    chain = side.seed_chain(model)
    first = wiring.service.get_origin_info(CONSUMER, chain.b1_code)  # read, then cached
    cached = wiring.service.get_origin_info(CONSUMER, chain.b1_code)
    again = wiring.service.get_origin_info(CONSUMER, chain.b1_code)
    assert not first.memoised and cached.memoised and again.memoised
    cached, again = cached.view, again.view
    assert again is cached and wiring.service.origins.calls == ["code", "batch"]
    assert again.origin is not None and again.origin.product_name == "Tea"
    # The worker's projection of a void: the code's view changes in the cache.
    wiring.cache.set(code_key(chain.b1_code), {"state": "VOID", "batch_id": "B1"}, 60)
    voided = wiring.service.get_origin_info(CONSUMER, chain.b1_code).view
    assert voided.status is OriginStatus.VOID and voided.origin is None
    assert wiring.service.origins.calls == ["code", "batch"]


@pytest.mark.parametrize(("state", "batch", "status", "has_origin"), [
    ("ISSUED", "", OriginStatus.GENUINE_NOT_ACTIVE, False),
    ("PRINTED", "", OriginStatus.GENUINE_NOT_ACTIVE, False),
    ("ACTIVE", "B", OriginStatus.GENUINE_ACTIVE, True),
    ("ISSUED", "B", OriginStatus.GENUINE_ACTIVE, True),  # bound before the activation event
    ("CONSUMED", "B", OriginStatus.CONSUMED, True),
    ("VOID", "B", OriginStatus.VOID, False),
])
def test_statuses(model: Any, wiring: Any, state: str, batch: str, status: OriginStatus,
                  has_origin: bool) -> None:
    model.subject("F", "330106")
    model.batch("B", "F", "330106")
    (code,) = model.codes(batch, state=state)
    view = wiring.service.get_origin_info(CONSUMER, code).view
    assert view.status is status and (view.origin is not None) is has_origin
    assert view.message


def test_unknown_and_malformed_codes_are_answered_and_counted_per_place(
        model: Any, wiring: Any) -> None:
    unknown = new_codes("33", 1)[0]
    answer = wiring.service.get_origin_info(CONSUMER, unknown)
    assert answer.view.status is OriginStatus.UNKNOWN and answer.view.origin is None
    assert wiring.sink.last.target_division == "33"
    bad_check = unknown[:-1] + ("0" if unknown[-1] != "0" else "1")
    malformed = wiring.service.get_origin_info(CONSUMER, bad_check)
    assert malformed.view.status is OriginStatus.MALFORMED
    assert wiring.sink.last.outcome == "OK"
    # The third unknown scan from the place reaches the threshold (3 here): one signal.
    third = wiring.service.get_origin_info(CONSUMER, "hello")
    assert third.counterfeit_signal
    assert not wiring.service.get_origin_info(CONSUMER, unknown).counterfeit_signal
    elsewhere = side.caller(None, "ip:203.0.113.0/24")
    assert not wiring.service.get_origin_info(elsewhere, unknown).counterfeit_signal
    with model.engine.connect() as connection:
        events = connection.execute(sa.select(outbox.c.name, outbox.c.payload)).all()
    assert [name for name, _ in events] == ["counterfeit_suspected"]
    payload = json.loads(events[0][1])
    assert payload["place"] == "330106" and payload["unknown_scans"] == 3
    # Without a place there is nothing to count against.
    nowhere = side.caller(None, "")
    for _ in range(5):
        assert not wiring.service.get_origin_info(nowhere, unknown).counterfeit_signal


@pytest.mark.parametrize(("code", "batch_id", "depth", "field"), [
    ("", "", 10, "code"),
    ("33K7MXH2TA9WPRC6", "B1", 10, "code"),
    ("", "B1", 51, "depth"),
    ("", "B1", -1, "depth"),
    ("not a code", "", 10, "code"),
])
def test_trace_input_is_checked(model: Any, wiring: Any, code: str, batch_id: str,
                                depth: int, field: str) -> None:
    side.seed_chain(model)
    with pytest.raises(InvalidArgument) as raised:
        wiring.service.trace_forward(side.caller(side.ADMIN), code, batch_id, depth)
    assert [v.field for v in raised.value.violations] == [field]
    assert wiring.sink.last.outcome == "INVALID_ARGUMENT"


def test_trace_by_code_and_depth(model: Any, wiring: Any) -> None:
    chain = side.seed_chain(model)
    admin = side.caller(side.ADMIN)
    one = wiring.service.trace_forward(admin, chain.b1_code, "", 1)
    assert {(n.node.batch_id, n.node.subject_id) for n in one.nodes} == {
        ("B1", side.FARM), ("B1", side.WHOLESALER)}
    assert wiring.sink.last.target == chain.b1_code
    assert wiring.sink.last.target_division == "330106"
    default = wiring.service.trace_forward(admin, chain.b1_code, "", 0)
    assert len(default.nodes) == 5
    with pytest.raises(NotFound):
        wiring.service.trace_forward(admin, new_codes("33", 1)[0], "", 3)
    unbound = model.codes("", state="ISSUED")[0]
    with pytest.raises(NotFound):
        wiring.service.trace_back(admin, unbound, "", 3)


def test_facts_that_arrived_before_their_batch_or_shipment_are_not_shown_yet(
    model: Any, wiring: Any
) -> None:
    """Events of different sources arrive in any order: a production record can make a
    batch row before batch_created fills it (created_at NULL), a receipt a shipment row
    before batch_shipped (ship_time NULL). Until then they are not part of any answer."""
    chain = side.seed_chain(model)
    model.insert(side.orm.batches, {
        "batch_id": "B9", "subject_id": "", "subject_division": "", "product_code": "",
        "product_name": "", "category": "", "quantity": "", "unit": "",
        "origin_division": "", "inspections_passed": 1, "created_at": None})
    early = model.codes("B9")[0]
    model.insert(side.orm.shipments, {
        "shipment_id": "S9", "batch_id": "B1", "seller_subject_id": side.RETAILER,
        "buyer_subject_id": side.FARM, "seller_province": "", "buyer_province": "",
        "quantity": "", "unit": "", "ship_time": None, "received_at": side.T0})

    answer = wiring.service.get_origin_info(CONSUMER, early)
    assert answer.view.status is OriginStatus.GENUINE_ACTIVE and answer.view.origin is None
    admin = side.caller(side.ADMIN)
    forward = wiring.service.trace_forward(admin, chain.b1_code, "", 10)
    assert "S9" not in {view.edge.record_id for view in forward.edges}
    with pytest.raises(NotFound):
        wiring.service.trace_forward(admin, "", "B9", 3)


def _log(model: Any, wiring: Any, n: int) -> None:
    """n entries alternating between a 浙江 and a 上海 target."""
    model.subject("F", "330106")
    model.batch("ZJ", "F", "330106")
    model.subject("G", "310101")
    model.batch("SH", "G", "310101")
    zj, sh = model.codes("ZJ")[0], model.codes("SH", province="31")[0]
    for index in range(n):
        wiring.clock.advance(seconds=1)
        wiring.service.get_origin_info(CONSUMER, zj if index % 2 == 0 else sh)


def test_query_logs_page_newest_first(model: Any) -> None:
    wiring = side.wire(model, real_log=True)
    _log(model, wiring, 25)
    wiring.sink.flush()
    auditor = side.caller(side.regulator("", "AUDITOR"))
    entries, token = wiring.service.list_query_logs(auditor, LogFilter(), 10, "")
    assert [e.seq for e in entries] == list(range(25, 15, -1)) and token
    seen = [e.seq for e in entries]
    while token:
        entries, token = wiring.service.list_query_logs(auditor, LogFilter(), 10, token)
        seen.extend(e.seq for e in entries)
    assert seen == list(range(25, 0, -1))
    with pytest.raises(InvalidArgument):
        first_token = wiring.service.list_query_logs(auditor, LogFilter(), 10, "")[1]
        wiring.service.list_query_logs(auditor, LogFilter(rpc="TraceBack"), 10, first_token)
    with pytest.raises(InvalidArgument):
        wiring.service.list_query_logs(auditor, LogFilter(), 10, "garbage")
    start = side.T0 + timedelta(days=1, seconds=3)
    window = LogFilter(start_time=start, end_time=start + timedelta(seconds=2))
    entries, _ = wiring.service.list_query_logs(auditor, window, 10, "")
    assert [e.seq for e in entries] == [4, 3]


def test_regulators_read_their_jurisdiction_only(model: Any) -> None:
    wiring = side.wire(model, real_log=True)
    _log(model, wiring, 6)
    wiring.sink.flush()
    shanghai = side.caller(side.regulator("31"))
    entries, _ = wiring.service.list_query_logs(shanghai, LogFilter(), 100, "")
    assert entries and {e.record.target_division[:2] for e in entries} == {"31"}
    narrower, _ = wiring.service.list_query_logs(
        shanghai, LogFilter(division_prefix="310101"), 100, "")
    assert [e.seq for e in narrower] == [e.seq for e in entries]
    with pytest.raises(PermissionDenied):
        wiring.service.list_query_logs(shanghai, LogFilter(division_prefix="33"), 100, "")
    with pytest.raises(InvalidArgument):
        wiring.service.list_query_logs(shanghai, LogFilter(division_prefix="3"), 100, "")
    wiring.sink.flush()
    everything, _ = wiring.service.list_query_logs(side.caller(side.ADMIN), LogFilter(
        asker=side.regulator("31").account_id), 100, "")
    assert [e.record.outcome for e in everything] == ["INVALID_ARGUMENT", "DENIED", "OK", "OK"]
