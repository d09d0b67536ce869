"""The permission matrix: every QueryService RPC × every kind of asker, on the cross-province
chain of read_side.py (farm and wholesaler in 浙江 杭州, processor and retailer in 上海, an
outsider in 广东). Each cell asserts what the asker gets - the error, or the scope and exactly
which nodes it sees and which of them are redacted - and that the call was logged. It runs on
SQLite and on PostgreSQL (skipped without one)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from agritrace_kernel.auth.principal import Principal, Role
from agritrace_kernel.errors import NotFound, PermissionDenied, Unauthenticated
from agritrace_query.domain.graph import TraceView
from agritrace_query.service_layer.ports import LogFilter
from agritrace_testing.fakes import load_beside

side = load_beside(__file__, "read_side.py", "agritrace_query_unit_read_side")
FARM, WHOLESALER, PROCESSOR, RETAILER, OUTSIDER = (
    side.FARM, side.WHOLESALER, side.PROCESSOR, side.RETAILER, side.OUTSIDER)

ASKERS: dict[str, Principal | None] = {
    "consumer": side.CONSUMER,
    "producer": side.operator(FARM),
    "two_hops_down": side.operator(PROCESSOR),
    "never_handled": side.operator(OUTSIDER),
    "county_inside": side.regulator("330106"),
    "county_outside": side.regulator("440106"),
    "city_inside": side.regulator("3301"),
    "city_outside": side.regulator("4401"),
    "province_inside": side.regulator("33"),
    "province_other_end": side.regulator("31"),
    "province_outside": side.regulator("44"),
    "national": side.regulator(""),
    "auditor": side.regulator("33", Role.AUDITOR),
    "platform_33": side.PLATFORM_33,
    "admin": side.ADMIN,
    "service": side.SERVICE,
}
ALL_NODES = {("B1", FARM), ("B1", WHOLESALER), ("B1", PROCESSOR), ("B2", PROCESSOR),
             ("B2", RETAILER)}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The same matrix on both databases the service runs on."""
    model = (side.ReadModel.create(Path(tmp_path_factory.mktemp("matrix")))
             if request.param == "sqlite" else side.ReadModel.postgres())
    chain = side.seed_chain(model)
    wiring = side.wire(model, real_log=True)
    yield wiring, chain
    model.close()


def _nodes(view: TraceView) -> dict[tuple[str, str], bool]:
    """(batch, subject) -> redacted."""
    return {(n.node.batch_id, n.node.subject_id): n.redacted for n in view.nodes}


def _call(world: Any, asker: str, rpc: str) -> Any:
    wiring, chain = world
    service, who = wiring.service, side.caller(ASKERS[asker])
    calls = {
        "GetOriginInfo": lambda: service.get_origin_info(who, chain.b2_code).view,
        "TraceCode": lambda: service.trace_code(who, chain.b1_code),
        "TraceBatch": lambda: service.trace_batch(who, "B1"),
        "TraceBack": lambda: service.trace_back(who, "", "B2", 10),
        "TraceForward": lambda: service.trace_forward(who, "", "B1", 10),
        "ListQueryLogs": lambda: service.list_query_logs(who, LogFilter(), 10, ""),
        "VerifyQueryLog": lambda: service.verify_query_log(who, 0, 0),
        "GetStatistics": lambda: service.statistics(who, "33", date(2024, 5, 1),
                                                    date(2024, 5, 31)),
    }
    wiring.sink.flush()
    before = len(wiring.sink.records)
    try:
        return calls[rpc]()
    finally:
        # Every call, refused or not, leaves exactly one entry naming the asker and the RPC.
        assert len(wiring.sink.records) == before + 1
        assert wiring.sink.last.rpc == rpc
        principal = ASKERS[asker]
        expected_asker = principal.account_id if principal else "anon:f00dfeedf00dfeed"
        assert wiring.sink.last.asker == expected_asker


def _refused(world: Any, asker: str, rpc: str, error: type[Exception], reason: str = "") -> None:
    wiring, _ = world
    with pytest.raises(error) as raised:
        _call(world, asker, rpc)
    if reason:
        assert getattr(raised.value, "reason", "") == reason
    assert wiring.sink.last.scope == "NONE"
    assert wiring.sink.last.outcome in ("DENIED", "UNAUTHENTICATED", "NOT_FOUND")


# -- GetOriginInfo: the same origin-only view for everyone --------------------------------------


@pytest.mark.parametrize("asker", list(ASKERS))
def test_everyone_gets_the_same_origin_view(world: Any, asker: str) -> None:
    view = _call(world, asker, "GetOriginInfo")
    assert view.status.value == "GENUINE_ACTIVE"
    assert view.origin is not None and view.origin.batch_id == "B2"
    assert view.origin.producer_name == f"Subject {PROCESSOR}"
    assert world[0].sink.last.scope == "ORIGIN_ONLY"
    reference = _call(world, "consumer", "GetOriginInfo")
    assert view == reference


# -- TraceCode / TraceBatch --------------------------------------------------------------------

NEIGHBOURS = {
    # The farm made B1 and shipped it to the wholesaler: itself + one node downstream.
    "producer": {("B1", FARM), ("B1", WHOLESALER)},
    # The processor bought B1 from the wholesaler and repacked it into B2 (its own record).
    "two_hops_down": {("B1", WHOLESALER), ("B1", PROCESSOR), ("B2", PROCESSOR)},
}


@pytest.mark.parametrize("rpc", ["TraceCode", "TraceBatch"])
@pytest.mark.parametrize("asker", list(NEIGHBOURS))
def test_operators_see_their_records_and_one_node_either_side(world: Any, rpc: str,
                                                              asker: str) -> None:
    view = _call(world, asker, rpc)
    assert set(_nodes(view)) == NEIGHBOURS[asker]
    assert not any(_nodes(view).values())
    assert view.scope == "NEIGHBOURS" == world[0].sink.last.scope


@pytest.mark.parametrize("rpc", ["TraceCode", "TraceBatch"])
def test_goods_never_handled_look_unknown(world: Any, rpc: str) -> None:
    wiring, chain = world
    with pytest.raises(NotFound) as handled_not:
        _call(world, "never_handled", rpc)
    assert wiring.sink.last.outcome == "NOT_FOUND"
    outsider = side.caller(ASKERS["never_handled"])
    unknown_code = side.new_codes("33", 1)[0]
    with pytest.raises(NotFound) as unknown:
        if rpc == "TraceCode":
            wiring.service.trace_code(outsider, unknown_code)
        else:
            wiring.service.trace_batch(outsider, "NOSUCHBATCH")
    asked = chain.b1_code if rpc == "TraceCode" else "B1"
    never = unknown_code if rpc == "TraceCode" else "NOSUCHBATCH"
    # Word for word the same answer: nothing tells the goods exist.
    assert handled_not.value.reason == unknown.value.reason
    assert str(handled_not.value).replace(asked, "?") == str(unknown.value).replace(never, "?")


@pytest.mark.parametrize("rpc", ["TraceCode", "TraceBatch"])
@pytest.mark.parametrize("asker", ["admin", "service"])
def test_administrators_and_services_see_every_holder_and_its_neighbours(
        world: Any, rpc: str, asker: str) -> None:
    view = _call(world, asker, rpc)
    # Every holder of B1, and B2 at the processor one transformation away.
    assert set(_nodes(view)) == ALL_NODES - {("B2", RETAILER)}
    assert view.scope == "FULL"


@pytest.mark.parametrize("rpc", ["TraceCode", "TraceBatch"])
@pytest.mark.parametrize("asker", ["county_inside", "county_outside", "city_inside",
                                   "city_outside", "province_inside", "province_other_end",
                                   "province_outside", "national", "auditor", "platform_33"])
def test_regulators_and_platforms_are_sent_to_trace_back_or_forward(
        world: Any, rpc: str, asker: str) -> None:
    _refused(world, asker, rpc, PermissionDenied, "USE_TRACE_BACK_OR_FORWARD")


@pytest.mark.parametrize("rpc", ["TraceCode", "TraceBatch", "TraceBack", "TraceForward",
                                 "ListQueryLogs", "VerifyQueryLog", "GetStatistics"])
def test_consumers_must_sign_in_for_everything_but_the_scan(world: Any, rpc: str) -> None:
    _refused(world, "consumer", rpc, Unauthenticated)


# -- TraceBack / TraceForward ------------------------------------------------------------------

# Which holders each regulator sees in full (the others: id and division only).
FULL_VIEW = {
    "county_inside": {FARM},
    "county_outside": set(),
    "city_inside": {FARM, WHOLESALER},
    "city_outside": set(),
    "province_inside": {FARM, WHOLESALER},
    "province_other_end": {PROCESSOR, RETAILER},
    "province_outside": set(),
    "national": {FARM, WHOLESALER, PROCESSOR, RETAILER},
    "auditor": {FARM, WHOLESALER},
    "platform_33": {FARM, WHOLESALER},
    "admin": {FARM, WHOLESALER, PROCESSOR, RETAILER},
    "service": {FARM, WHOLESALER, PROCESSOR, RETAILER},
}


@pytest.mark.parametrize("asker", list(FULL_VIEW))
def test_trace_forward_reaches_every_holder_redacted_outside_the_jurisdiction(
        world: Any, asker: str) -> None:
    view = _call(world, asker, "TraceForward")
    nodes = _nodes(view)
    assert set(nodes) == ALL_NODES
    assert {subject for (_, subject), redacted in nodes.items() if not redacted} == \
        FULL_VIEW[asker]
    for node in view.nodes:
        if node.redacted:
            assert node.subject_name == "" and node.division_code
    # A shipment is shown in full when one of its parties is inside.
    for edge in view.edges:
        inside = any(party in FULL_VIEW[asker] for party in edge.edge.parties)
        assert edge.redacted is not inside
    jurisdiction = ASKERS[asker].jurisdiction if ASKERS[asker] else ""
    expected_scope = ("FULL" if asker in ("national", "admin", "service")
                      else f"JURISDICTION:{jurisdiction}")
    assert view.scope == expected_scope == world[0].sink.last.scope


@pytest.mark.parametrize("asker", list(FULL_VIEW))
def test_trace_back_reaches_the_farm_through_the_repack(world: Any, asker: str) -> None:
    view = _call(world, asker, "TraceBack")
    assert set(_nodes(view)) == {("B2", PROCESSOR), ("B1", PROCESSOR), ("B1", WHOLESALER),
                                 ("B1", FARM)}
    farm = next(node for node in view.nodes if node.node == ("B1", FARM))
    # The batch's details follow its producer's division.
    assert (farm.batch is not None) is (FARM in FULL_VIEW[asker])


@pytest.mark.parametrize("rpc", ["TraceBack", "TraceForward"])
@pytest.mark.parametrize("asker", ["producer", "two_hops_down", "never_handled"])
def test_operators_may_not_trace_whole_chains(world: Any, rpc: str, asker: str) -> None:
    _refused(world, asker, rpc, PermissionDenied, "REGULATORS_ONLY")


# -- the query log -----------------------------------------------------------------------------

LOG_SCOPES = {"county_inside": "JURISDICTION:330106", "county_outside": "JURISDICTION:440106",
              "city_inside": "JURISDICTION:3301", "city_outside": "JURISDICTION:4401",
              "province_inside": "JURISDICTION:33", "province_other_end": "JURISDICTION:31",
              "province_outside": "JURISDICTION:44", "national": "FULL", "auditor": "FULL",
              "admin": "FULL"}


@pytest.mark.parametrize("asker", list(ASKERS))
def test_list_query_logs(world: Any, asker: str) -> None:
    if asker not in LOG_SCOPES:
        if asker != "consumer":
            _refused(world, asker, "ListQueryLogs", PermissionDenied)
        return
    wiring, _ = world
    _call(world, "national", "TraceForward")  # an entry filed under the farm's county
    entries, _ = _call(world, asker, "ListQueryLogs")
    scope = LOG_SCOPES[asker]
    assert wiring.sink.last.scope == scope
    flushed = wiring.sink.records[:-1]
    prefix = scope.partition(":")[2]
    expected = [r for r in flushed if r.target_division.startswith(prefix)][::-1][:10]
    assert [entry.record for entry in entries] == expected
    # Nothing was asked about 广东's goods; plenty about the chain's.
    assert (entries == []) is (asker in ("county_outside", "city_outside", "province_outside"))


@pytest.mark.parametrize("asker", list(ASKERS))
def test_only_auditors_and_administrators_verify_the_log(world: Any, asker: str) -> None:
    if asker in ("auditor", "admin"):
        assert _call(world, asker, "VerifyQueryLog").ok
    elif asker != "consumer":
        _refused(world, asker, "VerifyQueryLog", PermissionDenied, "AUDITORS_ONLY")


# -- statistics of province 33 -----------------------------------------------------------------

STATISTICS_33 = {"province_inside": "JURISDICTION:33", "auditor": "JURISDICTION:33",
                 "platform_33": "JURISDICTION:33", "national": "FULL", "admin": "FULL",
                 "service": "FULL"}


@pytest.mark.parametrize("asker", list(ASKERS))
def test_statistics_of_a_province(world: Any, asker: str) -> None:
    if asker in STATISTICS_33:
        report = _call(world, asker, "GetStatistics")
        assert report.total.division_code == "33"
        assert world[0].sink.last.scope == STATISTICS_33[asker]
    elif asker != "consumer":
        _refused(world, asker, "GetStatistics", PermissionDenied)
