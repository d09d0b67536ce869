"""Traces over the supply chain: nodes are (batch, holder subject), edges are shipments
(B,S)→(B,T), transformations (B,S)→(B',S) and code lineage (codes derived from B's codes
label B', made by S: (B,S)→(B',S)).

Traversal goes level by level: each level asks the reader once per edge kind for every batch
first reached at that level (IN lists), so a trace costs a handful of queries per level
however wide it is, and each stored record is read at most once. A trace stops at MAX_NODES
nodes and says so (`truncated`).

What a caller sees of the nodes and edges found is decided by its Scope (visibility.py):
`present` redacts what lies outside it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import NamedTuple, Protocol

from agritrace_query.domain.visibility import Scope

MAX_NODES = 10_000
DEFAULT_DEPTH = 10
MAX_DEPTH = 50


class Node(NamedTuple):
    batch_id: str
    subject_id: str

    @property
    def node_id(self) -> str:
        return f"{self.batch_id}/{self.subject_id}"


class EdgeKind(StrEnum):
    SHIPMENT = "SHIPMENT"
    TRANSFORMATION = "TRANSFORMATION"
    CODE_LINEAGE = "CODE_LINEAGE"


class Direction(StrEnum):
    FORWARD = "FORWARD"  # downstream: whom the goods went to
    BACKWARD = "BACKWARD"  # upstream: where they came from


# A trace's records are NamedTuples: immutable as frozen dataclasses are, but built in a
# third of the time (a frozen dataclass sets each field through object.__setattr__), and the
# largest trace builds thousands of them.
class BatchInfo(NamedTuple):
    batch_id: str
    subject_id: str  # the producer (creator) of the batch
    subject_division: str
    product_code: str
    product_name: str
    category: str
    quantity: str
    unit: str
    production_date: date
    origin_division: str
    flags: tuple[str, ...] = ()


class SubjectInfo(NamedTuple):
    subject_id: str
    name: str
    kind: str
    division_code: str


class ShipmentLink(NamedTuple):
    shipment_id: str
    batch_id: str
    seller_subject_id: str
    buyer_subject_id: str
    quantity: str
    unit: str
    ship_time: datetime
    received_at: datetime | None = None


class TransformationLink(NamedTuple):
    transformation_id: str
    input_batch_id: str
    output_batch_id: str
    subject_id: str
    quantity: str
    unit: str
    occurred_at: datetime


class LineageLink(NamedTuple):
    """Some codes of `parent_batch_id` have derived codes on `child_batch_id`."""

    parent_batch_id: str
    child_batch_id: str


class ChainReader(Protocol):
    """The read model as a trace needs it; every method takes many batch ids at once."""

    def batches(self, batch_ids: Sequence[str]) -> dict[str, BatchInfo]: ...
    def subjects(self, subject_ids: Sequence[str]) -> dict[str, SubjectInfo]: ...
    def shipments_of(self, batch_ids: Sequence[str]) -> list[ShipmentLink]: ...
    def transformations_from(self, batch_ids: Sequence[str]) -> list[TransformationLink]: ...
    def transformations_into(self, batch_ids: Sequence[str]) -> list[TransformationLink]: ...
    def lineage_children(self, batch_ids: Sequence[str]) -> list[LineageLink]: ...
    def lineage_parents(self, batch_ids: Sequence[str]) -> list[LineageLink]: ...


class Edge(NamedTuple):
    source: Node  # upstream
    target: Node  # downstream
    kind: EdgeKind
    record_id: str = ""
    quantity: str = ""
    unit: str = ""
    occurred_at: datetime | None = None
    received_at: datetime | None = None
    # Whose record it is, for redaction: both parties of a shipment, else the holder.
    parties: tuple[str, ...] = ()


@dataclass
class Trace:
    """Nodes found (with their signed distance from the start) and the edges between them."""

    start: Node
    depths: dict[Node, int] = field(default_factory=dict)
    edges: dict[tuple[Node, Node, EdgeKind, str], Edge] = field(default_factory=dict)
    batches: dict[str, BatchInfo] = field(default_factory=dict)
    truncated: bool = False

    def add_edge(self, edge: Edge) -> None:
        self.edges.setdefault((edge.source, edge.target, edge.kind, edge.record_id), edge)


class _Links:
    """The links of every batch reached so far, each batch's loaded once."""

    def __init__(self, reader: ChainReader, batches: dict[str, BatchInfo]) -> None:
        self.reader = reader
        self.batches = batches
        self.loaded: set[str] = set()
        self.shipments: dict[str, list[ShipmentLink]] = {}
        self.outputs: dict[str, list[TransformationLink]] = {}
        self.inputs: dict[str, list[TransformationLink]] = {}
        self.children: dict[str, list[str]] = {}
        self.parents: dict[str, list[str]] = {}

    def load(self, batch_ids: Iterable[str], direction: Direction | None) -> None:
        """`direction` None: both (a neighbourhood)."""
        new = sorted(set(batch_ids) - self.loaded)
        if not new:
            return
        self.loaded.update(new)
        for shipment in self.reader.shipments_of(new):
            self.shipments.setdefault(shipment.batch_id, []).append(shipment)
        if direction is not Direction.BACKWARD:
            for link in self.reader.transformations_from(new):
                self.outputs.setdefault(link.input_batch_id, []).append(link)
            children = self.reader.lineage_children(new)
            for lineage in children:
                self.children.setdefault(lineage.parent_batch_id, []).append(
                    lineage.child_batch_id)
            # Lineage needs the creators of the batches it reaches: one query for all.
            missing = sorted({link.child_batch_id for link in children} - self.batches.keys())
            if missing:
                self.batches.update(self.reader.batches(missing))
        if direction is not Direction.FORWARD:
            # Going upstream past a batch needs its creator (whose node its inputs feed).
            unknown = [batch_id for batch_id in new if batch_id not in self.batches]
            if unknown:
                self.batches.update(self.reader.batches(unknown))
            for link in self.reader.transformations_into(new):
                self.inputs.setdefault(link.output_batch_id, []).append(link)
            for lineage in self.reader.lineage_parents(new):
                self.parents.setdefault(lineage.child_batch_id, []).append(
                    lineage.parent_batch_id)

    def creator(self, batch_id: str) -> str:
        batch = self.batches.get(batch_id)
        return batch.subject_id if batch is not None else ""

    def downstream(self, node: Node) -> list[Edge]:
        batch_id, holder = node
        edges = [_shipment_edge(s) for s in self.shipments.get(batch_id, ())
                 if s.seller_subject_id == holder]
        transformed = set()
        for link in self.outputs.get(batch_id, ()):
            if link.subject_id == holder:
                transformed.add(link.output_batch_id)
                edges.append(_transformation_edge(link))
        for child in self.children.get(batch_id, ()):
            if child not in transformed and child != batch_id and self.creator(child) == holder:
                edges.append(Edge(node, Node(child, holder), EdgeKind.CODE_LINEAGE,
                                  parties=(holder,)))
        return edges

    def upstream(self, node: Node) -> list[Edge]:
        batch_id, holder = node
        edges = [_shipment_edge(s) for s in self.shipments.get(batch_id, ())
                 if s.buyer_subject_id == holder]
        if holder and holder == self.creator(batch_id):
            inputs = self.inputs.get(batch_id, [])
            edges.extend(_transformation_edge(link) for link in inputs)
            transformed = {link.input_batch_id for link in inputs}
            edges.extend(
                Edge(Node(parent, holder), node, EdgeKind.CODE_LINEAGE, parties=(holder,))
                for parent in self.parents.get(batch_id, ())
                if parent not in transformed and parent != batch_id)
        return edges


def _shipment_edge(shipment: ShipmentLink) -> Edge:
    return Edge(
        Node(shipment.batch_id, shipment.seller_subject_id),
        Node(shipment.batch_id, shipment.buyer_subject_id), EdgeKind.SHIPMENT,
        record_id=shipment.shipment_id, quantity=shipment.quantity, unit=shipment.unit,
        occurred_at=shipment.ship_time, received_at=shipment.received_at,
        parties=(shipment.seller_subject_id, shipment.buyer_subject_id))


def _transformation_edge(link: TransformationLink) -> Edge:
    return Edge(
        Node(link.input_batch_id, link.subject_id), Node(link.output_batch_id, link.subject_id),
        EdgeKind.TRANSFORMATION, record_id=link.transformation_id, quantity=link.quantity,
        unit=link.unit, occurred_at=link.occurred_at, parties=(link.subject_id,))


def start_node(batch: BatchInfo) -> Node:
    """Where a trace of a batch starts: the batch at its creator."""
    return Node(batch.batch_id, batch.subject_id)


def _admit(trace: Trace, node: Node, depth: int, max_nodes: int) -> bool:
    """Adds `node` at `depth` unless known; False when the cap keeps it out."""
    if node in trace.depths:
        return True
    if len(trace.depths) >= max_nodes:
        trace.truncated = True
        return False
    trace.depths[node] = depth
    return True


def traverse(reader: ChainReader, start: BatchInfo, direction: Direction, depth: int,
             max_nodes: int = MAX_NODES) -> Trace:
    """Every node within `depth` edges of the start in one direction."""
    root = start_node(start)
    trace = Trace(root, {root: 0}, batches={start.batch_id: start})
    links = _Links(reader, trace.batches)
    frontier = [root]
    for level in range(1, depth + 1):
        links.load((node.batch_id for node in frontier), direction)
        following: list[Node] = []
        for node in frontier:
            steps = links.downstream(node) if direction is Direction.FORWARD \
                else links.upstream(node)
            for edge in steps:
                reached = edge.target if direction is Direction.FORWARD else edge.source
                known = reached in trace.depths
                if not _admit(trace, reached, level, max_nodes):
                    continue
                trace.add_edge(edge)
                if not known:
                    following.append(reached)
        frontier = following
        if not frontier:
            break
    return trace


def neighbourhood(reader: ChainReader, start: BatchInfo, centres: Collection[Node],
                  max_nodes: int = MAX_NODES) -> Trace:
    """`centres` and every node one edge up (depth -1) or down (+1) from one of them, with
    the edges that touch a centre."""
    trace = Trace(start_node(start), batches={start.batch_id: start})
    for centre in centres:
        _admit(trace, centre, 0, max_nodes)
    links = _Links(reader, trace.batches)
    links.load((node.batch_id for node in centres), None)
    for centre in centres:
        for edge in links.upstream(centre):
            if _admit(trace, edge.source, -1, max_nodes):
                trace.add_edge(edge)
        for edge in links.downstream(centre):
            if _admit(trace, edge.target, 1, max_nodes):
                trace.add_edge(edge)
    return trace


def holders(reader: ChainReader, batch: BatchInfo) -> list[Node]:
    """Every node of one batch: its creator and each buyer or seller of its shipments."""
    subjects = {batch.subject_id}
    for shipment in reader.shipments_of([batch.batch_id]):
        subjects.update((shipment.seller_subject_id, shipment.buyer_subject_id))
    return [Node(batch.batch_id, subject) for subject in sorted(subjects)]


def operator_centres(reader: ChainReader, batch: BatchInfo, subject_id: str) -> list[Node]:
    """The nodes of `subject_id` on a batch, if it handled it (created, bought or sold it):
    the batch at the subject, plus the inputs it made the batch from. Empty when it never
    handled the goods."""
    if subject_id not in {node.subject_id for node in holders(reader, batch)}:
        return []
    centres = [Node(batch.batch_id, subject_id)]
    if batch.subject_id == subject_id:
        centres.extend(Node(link.input_batch_id, subject_id)
                       for link in reader.transformations_into([batch.batch_id])
                       if link.subject_id == subject_id)
    return centres


# -- what a caller sees ------------------------------------------------------------------------


class NodeView(NamedTuple):
    node: Node
    depth: int
    division_code: str
    redacted: bool
    subject_name: str = ""
    subject_kind: str = ""
    batch: BatchInfo | None = None


class EdgeView(NamedTuple):
    edge: Edge
    redacted: bool


@dataclass(frozen=True)
class TraceView:
    start: Node
    nodes: tuple[NodeView, ...]
    edges: tuple[EdgeView, ...]
    truncated: bool
    scope: str


def missing_batches(trace: Trace) -> list[str]:
    """Batches of the trace's nodes not read yet (to read before presenting)."""
    return sorted({node.batch_id for node in trace.depths} - trace.batches.keys())


def subject_ids(trace: Trace) -> list[str]:
    ids = {node.subject_id for node in trace.depths}
    ids.update(batch.subject_id for batch in trace.batches.values())
    return sorted(ids)


def present(trace: Trace, subjects: dict[str, SubjectInfo], scope: Scope) -> TraceView:
    """The trace as `scope` may see it: a holder outside the scope shows only its id and
    division; a batch whose producer is outside it shows no details; an edge none of whose
    parties is inside it shows only the link."""

    # Each subject's division and whether it is in scope, worked out once: a trace names the
    # same holders on many nodes and edges.
    divisions: dict[str, str] = {}
    seen: dict[str, bool] = {}

    def division(subject_id: str) -> str:
        found = divisions.get(subject_id)
        if found is None:
            subject = subjects.get(subject_id)
            found = divisions[subject_id] = subject.division_code if subject is not None else ""
        return found

    def inside(subject_id: str) -> bool:
        found = seen.get(subject_id)
        if found is None:
            found = seen[subject_id] = scope.sees_in_full(division(subject_id))
        return found

    nodes = []
    for node, depth in sorted(trace.depths.items(),
                              key=lambda item: (abs(item[1]), item[1], item[0])):
        subject = subjects.get(node.subject_id)
        batch = trace.batches.get(node.batch_id)
        shown = inside(node.subject_id)
        nodes.append(NodeView(
            node=node, depth=depth, division_code=division(node.subject_id),
            redacted=not shown,
            subject_name=subject.name if shown and subject is not None else "",
            subject_kind=subject.kind if shown and subject is not None else "",
            batch=batch if batch is not None and (
                inside(batch.subject_id) or scope.sees_in_full(batch.subject_division))
            else None))
    edges = tuple(EdgeView(edge, redacted=not any(inside(party) for party in edge.parties))
                  for edge in trace.edges.values())
    return TraceView(trace.start, tuple(nodes), edges, trace.truncated, scope.label)
