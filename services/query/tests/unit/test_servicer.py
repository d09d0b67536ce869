"""The gRPC face: who and where a caller is (fingerprint, place), the policy table, and the
messages the servicer builds (redacted edges carry no quantity or time)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agritrace.query.v1 import query_pb2 as pb
from agritrace_kernel.auth.principal import acting_as
from agritrace_query.entrypoints.grpc_servicer import (
    BuiltOnce,
    QueryServicer,
    caller_of,
    fingerprint_key,
    network_place,
    peer_address,
)
from agritrace_query.entrypoints.policy import POLICIES, SERVICE
from agritrace_query.service_layer.projection_ports import code_key
from agritrace_testing.fakes import load_beside

side = load_beside(__file__, "read_side.py", "agritrace_query_unit_read_side")
KEY = fingerprint_key(b"k" * 32)


class Context:
    """The two things the servicer reads of a grpc.ServicerContext."""

    def __init__(self, peer: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._peer = peer
        self._metadata = metadata

    def peer(self) -> str:
        return self._peer

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


def test_peer_addresses_and_network_places() -> None:
    assert peer_address("ipv4:203.0.113.7:51234") == "203.0.113.7"
    assert peer_address("ipv6:[2001:db8:1:2::7]:51234") == "2001:db8:1:2::7"
    assert peer_address("unix:/tmp/socket") == ""
    assert network_place("203.0.113.7") == "ip:203.0.113.0/24"
    assert network_place("2001:db8:1:2::7") == "ip:2001:db8:1::/48"
    assert network_place("") == ""


def test_an_anonymous_caller_is_a_keyed_fingerprint_never_its_address() -> None:
    context: Any = Context("ipv4:203.0.113.7:5000", (("user-agent", "scanner/1"),))
    first = caller_of(context, KEY)
    assert first.asker.account.startswith("anon:") and len(first.asker.account) == 21
    assert "203.0.113.7" not in repr(first)
    assert first.place == "ip:203.0.113.0/24"
    # The same client again (another port): the same fingerprint; another key: another one.
    again = caller_of(Context("ipv4:203.0.113.7:6000", (("user-agent", "scanner/1"),)), KEY)
    assert again.asker.account == first.asker.account
    other_key = caller_of(context, fingerprint_key(b"x" * 32))
    assert other_key.asker.account != first.asker.account
    other_agent = caller_of(Context("ipv4:203.0.113.7:5000", (("user-agent", "b"),)), KEY)
    assert other_agent.asker.account != first.asker.account


def test_a_declared_scan_division_is_the_place() -> None:
    declared = caller_of(Context("ipv4:203.0.113.7:5000", (("x-scan-division", "330106"),)),
                         KEY)
    assert declared.place == "330106"
    junk = caller_of(Context("ipv4:203.0.113.7:5000", (("x-scan-division", "DROP"),)), KEY)
    assert junk.place == "ip:203.0.113.0/24"


def test_a_signed_in_caller_is_its_account() -> None:
    with acting_as(side.regulator("33")):
        who = caller_of(Context("ipv4:10.0.0.1:1"), KEY)
    assert who.asker.account == side.regulator("33").account_id
    assert who.asker.jurisdiction == "33"


def test_policy_anonymous_only_for_the_scan() -> None:
    POLICIES.check_complete(SERVICE)
    for method in SERVICE.methods:
        rule = POLICIES[f"/{SERVICE.full_name}/{method.name}"]
        assert rule.allows(None) is (method.name == "GetOriginInfo")
        # Every signed-in kind reaches the use case, which refuses and logs.
        assert rule.allows(side.operator("S")) and rule.allows(side.regulator("33"))


@pytest.fixture
def servicer(tmp_path: Path) -> Iterator[tuple[QueryServicer, Any]]:
    model = side.ReadModel.create(tmp_path)
    chain = side.seed_chain(model)
    wiring = side.wire(model)
    yield QueryServicer(wiring.service, b"k" * 32), chain
    model.close()


def test_origin_message(servicer: Any) -> None:
    service, chain = servicer
    response = service.GetOriginInfo(pb.GetOriginInfoRequest(code=chain.b1_code),
                                     Context("ipv4:203.0.113.7:5000"))
    assert response.status == pb.ORIGIN_STATUS_GENUINE_ACTIVE
    assert response.origin.producer_division_name == "浙江省 杭州市 西湖区"
    assert response.origin.certificate.contact_phone_masked == "138****5678"
    assert response.origin.certificate.issue_date.year == 2024
    assert response.origin.production_date.day == 28
    unknown = service.GetOriginInfo(pb.GetOriginInfoRequest(code="nonsense"),
                                    Context("ipv4:203.0.113.7:5000"))
    assert unknown.status == pb.ORIGIN_STATUS_MALFORMED and not unknown.HasField("origin")


def test_a_memoised_answer_shares_its_message_and_a_changed_one_gets_its_own(
        servicer: Any) -> None:
    service, chain = servicer
    scan = pb.GetOriginInfoRequest(code=chain.b1_code)
    where = Context("ipv4:203.0.113.7:5000")
    service.GetOriginInfo(scan, where)  # read from the model, then cached
    cached = service.GetOriginInfo(scan, where)
    assert service.GetOriginInfo(scan, where) is cached  # built once, shared
    service.service.cache.set(code_key(chain.b1_code), {"state": "VOID", "batch_id": "B1"}, 60)
    voided = service.GetOriginInfo(scan, where)
    assert voided is not cached and voided.status == pb.ORIGIN_STATUS_VOID
    assert cached.status == pb.ORIGIN_STATUS_GENUINE_ACTIVE  # the shared one never changes


def test_first_scans_of_one_batchs_codes_share_its_origin_part(tmp_path: Path) -> None:
    model = side.ReadModel.create(tmp_path)
    chain = side.seed_chain(model)
    more = model.codes("B1", count=2)
    service = QueryServicer(side.wire(model).service, b"k" * 32)
    where = Context("ipv4:203.0.113.7:5000")
    try:
        service.GetOriginInfo(pb.GetOriginInfoRequest(code=chain.b1_code), where)  # B1 cached
        built_before = len(service._origins._kept)
        first, second = (service.GetOriginInfo(pb.GetOriginInfoRequest(code=code), where)
                         for code in more)
    finally:
        model.close()
    assert [first.code, second.code] == list(more) and first is not second
    assert first.origin == second.origin and first.origin.producer_division_name
    assert first.origin.certificate.contact_phone_masked == "138****5678"
    # B1's view now comes from the cache: its origin part is built once for both.
    assert len(service._origins._kept) == built_before + 1
    assert not service._answers._kept  # first scans are never answered twice: not kept


def test_built_once_drops_the_oldest_when_full() -> None:
    kept: BuiltOnce[object, str] = BuiltOnce(max_entries=3)
    keys = [object() for _ in range(4)]
    builds: list[int] = []

    def get(number: int) -> str:
        return kept.get(keys[number], lambda: builds.append(number) or f"built {number}")

    assert [get(n) for n in range(4)] == ["built 0", "built 1", "built 2", "built 3"]
    assert [get(n) for n in (1, 2, 3)] == ["built 1", "built 2", "built 3"]
    assert builds == [0, 1, 2, 3]  # the three newest were kept, built once each
    assert get(0) == "built 0"
    assert builds == [0, 1, 2, 3, 0]  # the oldest had gone


def test_trace_message_redacts_edges(servicer: Any) -> None:
    service, _ = servicer
    with acting_as(side.regulator("330106")):
        response = service.TraceForward(pb.TraceForwardRequest(batch_id="B1"),
                                        Context("ipv4:10.0.0.1:1"))
    graph = response.graph
    assert graph.scope == "JURISDICTION:330106" and not graph.truncated
    assert graph.start_node_id == f"B1/{side.FARM}"
    edges = {edge.to_node_id: edge for edge in graph.edges}
    shipped_by_farm = edges[f"B1/{side.WHOLESALER}"]
    assert not shipped_by_farm.redacted and shipped_by_farm.quantity == "10"
    assert shipped_by_farm.HasField("occur_time")
    far = edges[f"B2/{side.RETAILER}"]
    assert far.redacted and far.quantity == "" and not far.HasField("occur_time")
    assert far.record_id == "" and far.kind == pb.EDGE_KIND_SHIPMENT
    nodes = {node.node_id: node for node in graph.nodes}
    assert nodes[f"B2/{side.RETAILER}"].redacted
    assert nodes[f"B2/{side.RETAILER}"].division_code == "310104"


def test_the_counterfeit_metric_labels_divisions_and_lumps_networks(servicer: Any) -> None:
    """Its `place` label stays bounded: a declared division, else "network" (the prefixes
    themselves would make a series per network)."""
    from prometheus_client import REGISTRY

    def signals(place: str) -> float:
        value = REGISTRY.get_sample_value("agritrace_query_counterfeit_signals_total",
                                          {"place": place})
        return value or 0.0

    def last_signal(place: str) -> float:
        value = REGISTRY.get_sample_value(
            "agritrace_query_counterfeit_last_signal_timestamp_seconds", {"place": place})
        return value or 0.0

    service, _ = servicer
    before_network, before_county = signals("network"), signals("440305")
    started = time.time()
    for index in range(5):  # the wiring's threshold
        service.GetOriginInfo(pb.GetOriginInfoRequest(code=f"nonsense-{index}"),
                              Context("ipv4:198.51.100.9:5000"))
        service.GetOriginInfo(pb.GetOriginInfoRequest(code=f"nonsense-{index}"),
                              Context("ipv4:198.51.100.9:5000",
                                      (("x-scan-division", "440305"),)))
    assert signals("network") == before_network + 1
    assert signals("440305") == before_county + 1
    assert signals("ip:198.51.100.0/24") == 0
    # The alerts read when the latest signal was (deploy/monitoring).
    assert started <= last_signal("network") <= time.time()
    assert started <= last_signal("440305") <= time.time()
