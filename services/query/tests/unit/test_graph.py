"""Trace traversal over (batch, holder) nodes, on an in-memory chain: depth in both
directions, transformations and code lineage, the ±1 neighbourhood, redaction, the node cap,
and the number of reads per level."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

from agritrace_query.domain.graph import (
    BatchInfo,
    Direction,
    EdgeKind,
    LineageLink,
    Node,
    ShipmentLink,
    SubjectInfo,
    TransformationLink,
    holders,
    neighbourhood,
    operator_centres,
    present,
    traverse,
)
from agritrace_query.domain.visibility import FULL, Scope, ScopeKind

T = datetime(2024, 5, 1, tzinfo=UTC)


class Chain:
    """A ChainReader over lists, counting its reads."""

    def __init__(self) -> None:
        self.batch_rows: dict[str, BatchInfo] = {}
        self.subject_rows: dict[str, SubjectInfo] = {}
        self.shipments: list[ShipmentLink] = []
        self.transformations: list[TransformationLink] = []
        self.lineage: list[LineageLink] = []
        self.reads: list[tuple[str, int]] = []

    def add_batch(self, batch_id: str, subject_id: str, division: str = "330106") -> BatchInfo:
        batch = BatchInfo(batch_id, subject_id, division, "P1", "Tea", "Tea", "1", "KG",
                          date(2024, 4, 1), division)
        self.batch_rows[batch_id] = batch
        return batch

    def add_subject(self, subject_id: str, division: str) -> None:
        self.subject_rows[subject_id] = SubjectInfo(subject_id, f"name {subject_id}",
                                                    "ENTERPRISE", division)

    def ship(self, batch_id: str, seller: str, buyer: str) -> None:
        self.shipments.append(ShipmentLink(f"S{len(self.shipments)}", batch_id, seller, buyer,
                                           "1", "KG", T))

    def transform(self, inputs: list[str], output: str, subject_id: str) -> None:
        for batch_id in inputs:
            self.transformations.append(TransformationLink(
                f"T-{output}", batch_id, output, subject_id, "1", "KG", T))

    def _read(self, name: str, ids: Sequence[str]) -> set[str]:
        self.reads.append((name, len(ids)))
        return set(ids)

    def batches(self, batch_ids: Sequence[str]) -> dict[str, BatchInfo]:
        wanted = self._read("batches", batch_ids)
        return {k: v for k, v in self.batch_rows.items() if k in wanted}

    def subjects(self, subject_ids: Sequence[str]) -> dict[str, SubjectInfo]:
        wanted = self._read("subjects", subject_ids)
        return {k: v for k, v in self.subject_rows.items() if k in wanted}

    def shipments_of(self, batch_ids: Sequence[str]) -> list[ShipmentLink]:
        wanted = self._read("shipments", batch_ids)
        return [s for s in self.shipments if s.batch_id in wanted]

    def transformations_from(self, batch_ids: Sequence[str]) -> list[TransformationLink]:
        wanted = self._read("from", batch_ids)
        return [t for t in self.transformations if t.input_batch_id in wanted]

    def transformations_into(self, batch_ids: Sequence[str]) -> list[TransformationLink]:
        wanted = self._read("into", batch_ids)
        return [t for t in self.transformations if t.output_batch_id in wanted]

    def lineage_children(self, batch_ids: Sequence[str]) -> list[LineageLink]:
        wanted = self._read("children", batch_ids)
        return [link for link in self.lineage if link.parent_batch_id in wanted]

    def lineage_parents(self, batch_ids: Sequence[str]) -> list[LineageLink]:
        wanted = self._read("parents", batch_ids)
        return [link for link in self.lineage if link.child_batch_id in wanted]


def straight_chain(length: int) -> tuple[Chain, BatchInfo]:
    """B shipped S0 -> S1 -> ... -> S<length>."""
    chain = Chain()
    batch = chain.add_batch("B", "S0")
    for index in range(length):
        chain.ship("B", f"S{index}", f"S{index + 1}")
    return chain, batch


def test_forward_depth_counts_edges_from_the_creator() -> None:
    chain, batch = straight_chain(5)
    trace = traverse(chain, batch, Direction.FORWARD, 3)
    assert trace.depths == {Node("B", f"S{i}"): i for i in range(4)}
    assert len(trace.edges) == 3
    assert not trace.truncated


def test_backward_follows_transformations_and_the_shipments_before_them() -> None:
    chain = Chain()
    chain.add_batch("RAW1", "FARM1")
    chain.add_batch("RAW2", "FARM2")
    chain.ship("RAW1", "FARM1", "MILL")
    chain.ship("RAW2", "FARM2", "MILL")
    flour = chain.add_batch("FLOUR", "MILL")
    chain.transform(["RAW1", "RAW2"], "FLOUR", "MILL")
    trace = traverse(chain, flour, Direction.BACKWARD, 10)
    assert trace.depths == {Node("FLOUR", "MILL"): 0, Node("RAW1", "MILL"): 1,
                            Node("RAW2", "MILL"): 1, Node("RAW1", "FARM1"): 2,
                            Node("RAW2", "FARM2"): 2}
    kinds = sorted(edge.kind for edge in trace.edges.values())
    assert kinds == [EdgeKind.SHIPMENT, EdgeKind.SHIPMENT, EdgeKind.TRANSFORMATION,
                     EdgeKind.TRANSFORMATION]


def test_backward_through_two_transformations_and_the_shipments_between() -> None:
    chain = Chain()
    chain.add_batch("WHEAT", "FARM")
    chain.ship("WHEAT", "FARM", "MILL")
    chain.add_batch("FLOUR", "MILL")
    chain.transform(["WHEAT"], "FLOUR", "MILL")
    chain.ship("FLOUR", "MILL", "BAKERY")
    bread = chain.add_batch("BREAD", "BAKERY")
    chain.transform(["FLOUR"], "BREAD", "BAKERY")
    trace = traverse(chain, bread, Direction.BACKWARD, 10)
    assert trace.depths == {Node("BREAD", "BAKERY"): 0, Node("FLOUR", "BAKERY"): 1,
                            Node("FLOUR", "MILL"): 2, Node("WHEAT", "MILL"): 3,
                            Node("WHEAT", "FARM"): 4}
    forward = traverse(chain, chain.batch_rows["WHEAT"], Direction.FORWARD, 10)
    assert set(forward.depths) == set(trace.depths)


def test_forward_through_code_lineage_without_a_recorded_transformation() -> None:
    chain = Chain()
    whole = chain.add_batch("WHOLE", "FARM")
    chain.ship("WHOLE", "FARM", "PACKER")
    chain.add_batch("PACKS", "PACKER")
    chain.lineage.append(LineageLink("WHOLE", "PACKS"))
    chain.ship("PACKS", "PACKER", "SHOP")
    trace = traverse(chain, whole, Direction.FORWARD, 10)
    assert trace.depths[Node("PACKS", "PACKER")] == 2
    assert trace.depths[Node("PACKS", "SHOP")] == 3
    lineage = [e for e in trace.edges.values() if e.kind is EdgeKind.CODE_LINEAGE]
    assert [(e.source, e.target) for e in lineage] == [
        (Node("WHOLE", "PACKER"), Node("PACKS", "PACKER"))]
    back = traverse(chain, chain.batch_rows["PACKS"], Direction.BACKWARD, 10)
    assert set(back.depths) == {Node("PACKS", "PACKER"), Node("WHOLE", "PACKER"),
                                Node("WHOLE", "FARM")}


def test_lineage_alongside_a_transformation_is_not_a_second_edge() -> None:
    chain = Chain()
    raw = chain.add_batch("RAW", "P")
    chain.add_batch("OUT", "P")
    chain.transform(["RAW"], "OUT", "P")
    chain.lineage.append(LineageLink("RAW", "OUT"))
    trace = traverse(chain, raw, Direction.FORWARD, 5)
    assert [e.kind for e in trace.edges.values()] == [EdgeKind.TRANSFORMATION]


def test_reads_once_per_level_and_edge_kind_however_wide() -> None:
    chain = Chain()
    root = chain.add_batch("B", "ROOT")
    for index in range(200):  # 200 buyers, each selling on to one more
        chain.ship("B", "ROOT", f"M{index}")
        chain.ship("B", f"M{index}", f"R{index}")
    trace = traverse(chain, root, Direction.FORWARD, 10)
    assert len(trace.depths) == 401
    # Every batch's links are read once: one batch here, so one read of each kind in all.
    assert [name for name, _ in chain.reads] == ["shipments", "from", "children"]


def test_a_cycle_does_not_loop() -> None:
    chain, batch = straight_chain(2)
    chain.ship("B", "S2", "S0")  # returned to the producer
    trace = traverse(chain, batch, Direction.FORWARD, 50)
    assert set(trace.depths) == {Node("B", "S0"), Node("B", "S1"), Node("B", "S2")}
    assert len(trace.edges) == 3


def test_the_node_cap_truncates() -> None:
    chain, batch = straight_chain(30)
    trace = traverse(chain, batch, Direction.FORWARD, 50, max_nodes=10)
    assert len(trace.depths) == 10
    assert trace.truncated
    assert all(edge.target in trace.depths for edge in trace.edges.values())


def test_neighbourhood_is_one_edge_each_way() -> None:
    chain, batch = straight_chain(4)
    trace = neighbourhood(chain, batch, [Node("B", "S2")])
    assert trace.depths == {Node("B", "S1"): -1, Node("B", "S2"): 0, Node("B", "S3"): 1}


def test_holders_and_operator_centres() -> None:
    chain = Chain()
    chain.add_batch("RAW", "FARM")
    chain.ship("RAW", "FARM", "MILL")
    flour = chain.add_batch("FLOUR", "MILL")
    chain.transform(["RAW"], "FLOUR", "MILL")
    assert holders(chain, chain.batch_rows["RAW"]) == [Node("RAW", "FARM"), Node("RAW", "MILL")]
    # The mill made FLOUR from RAW: its centres include the input, and the neighbourhood the
    # farm that shipped it.
    centres = operator_centres(chain, flour, "MILL")
    assert centres == [Node("FLOUR", "MILL"), Node("RAW", "MILL")]
    around = neighbourhood(chain, flour, centres)
    assert Node("RAW", "FARM") in around.depths
    assert operator_centres(chain, flour, "STRANGER") == []


def test_present_redacts_outside_the_jurisdiction() -> None:
    chain, batch = straight_chain(2)  # S0 (producer) -> S1 -> S2
    chain.add_subject("S0", "330106")
    chain.add_subject("S1", "330102")
    chain.add_subject("S2", "310101")
    trace = traverse(chain, batch, Direction.FORWARD, 5)
    view = present(trace, chain.subjects(["S0", "S1", "S2"]),
                   Scope(ScopeKind.JURISDICTION, jurisdiction="330106"))
    by_subject = {node.node.subject_id: node for node in view.nodes}
    assert not by_subject["S0"].redacted and by_subject["S0"].subject_name == "name S0"
    assert by_subject["S1"].redacted and by_subject["S1"].subject_name == ""
    assert by_subject["S1"].division_code == "330102"
    # The batch's producer is inside: its details show at every node.
    assert all(node.batch is not None for node in view.nodes)
    edges = {edge.edge.target.subject_id: edge.redacted for edge in view.edges}
    assert edges == {"S1": False, "S2": True}
    assert view.scope == "JURISDICTION:330106"
    full = present(trace, chain.subjects(["S0", "S1", "S2"]), FULL)
    assert not any(node.redacted for node in full.nodes)
    outside = present(trace, chain.subjects(["S0", "S1", "S2"]),
                      Scope(ScopeKind.JURISDICTION, jurisdiction="44"))
    assert all(node.redacted and node.batch is None for node in outside.nodes)
