"""Records in and out in standard forms: EPCIS 2.0 documents (export of a batch's history or
a subject's time range, import of trading partners' events) and the spreadsheet a regulator
hands over within 24 hours in a recall."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from agritrace_flow.domain.model import Batch, Transformation
from agritrace_flow.service_layer import access
from agritrace_flow.service_layer.access import Actor
from agritrace_flow.service_layer.ports import (
    EpcisCodec,
    ImportedRecord,
    RefusedRecord,
    UnitOfWork,
)
from agritrace_flow.service_layer.services import SERVICE, FlowService, require_batch
from agritrace_kernel.errors import InvalidArgument, NotFound, PermissionDenied
from agritrace_kernel.events.model import Event
from agritrace_kernel.registry_client import require_active_subject

MAX_DOCUMENT_BYTES = 16 * 2**20
MAX_IMPORTED_EVENTS = 5000  # validating costs ~1.4 ms per event: bounded per request
MAX_LINEAGE_BATCHES = 1000
SHEET_COLUMNS = ("time", "batch_id", "product_code", "product_name", "record", "subject_id",
                 "other_subject_id", "quantity", "unit", "codes", "record_id", "detail")


@dataclass(frozen=True)
class ImportOutcome:
    index: int
    event_id: str
    outcome: str  # STORED, REPLAYED, REFUSED
    reason: str = ""


@dataclass
class _Chain:
    """Everything recorded about a set of batches."""

    batches: dict[str, Batch]
    transformations: dict[str, Transformation]


class Interchange:
    def __init__(self, flow: FlowService, codec: EpcisCodec) -> None:
        self.flow = flow
        self.codec = codec

    # -- gathering --------------------------------------------------------------------------

    def _lineage(self, uow: UnitOfWork, batch: Batch) -> _Chain:
        """The batch and every batch transformed from or into it, transitively."""
        chain = _Chain({batch.batch_id: batch}, {})
        frontier = [batch.batch_id]
        while frontier and len(chain.batches) < MAX_LINEAGE_BATCHES:
            next_frontier = []
            for batch_id in frontier:
                for transformation in uow.flow.transformations_of(batch_id):
                    chain.transformations[transformation.transformation_id] = transformation
                    related = [transformation.output_batch_id,
                               *(i.batch_id for i in transformation.inputs)]
                    for other in related:
                        if other not in chain.batches:
                            found = uow.flow.get_batch(other)
                            if found is not None:
                                chain.batches[other] = found
                                next_frontier.append(other)
            frontier = next_frontier
        return chain

    def _chain_for(self, uow: UnitOfWork, batch_id: str, subject_id: str,
                   start: datetime | None, end: datetime | None, actor: Actor) -> _Chain:
        if batch_id.strip():
            batch = require_batch(uow, batch_id)
            access.check_read(actor, batch)
            return self._lineage(uow, batch)
        if not subject_id.strip():
            raise InvalidArgument.of("batch_id", "give a batch, or a subject and a time range")
        subject = require_active_subject(self.flow.subjects, subject_id, "subject_id")
        if not access.acts_for(actor, subject.subject_id, subject.division_code) and not (
                actor is not None and actor.is_regulator
                and actor.covers_division(subject.division_code)):
            assert actor is not None
            raise PermissionDenied(f"may not export the records of {subject.subject_id}",
                                   reason="NOT_PERMITTED")
        if start is not None and end is not None and end <= start:
            raise InvalidArgument.of("end_time", "must be after start_time")
        batches = uow.flow.batches_between(subject_id=subject.subject_id, start=start,
                                           end=end)
        chain = _Chain({b.batch_id: b for b in batches}, {})
        for batch in batches:
            for transformation in uow.flow.transformations_of(batch.batch_id):
                chain.transformations[transformation.transformation_id] = transformation
        return chain

    # -- EPCIS ------------------------------------------------------------------------------

    def export_epcis(self, batch_id: str, subject_id: str, start: datetime | None,
                     end: datetime | None, *, actor: Actor = None) -> tuple[bytes, int]:
        with self.flow.reader_factory() as uow:
            chain = self._chain_for(uow, batch_id, subject_id, start, end, actor)
            ids = sorted(chain.batches)
            shipments = [s for b in ids for s in uow.flow.shipments_of(b)]
            imported = uow.flow.imported(subject_id.strip(), start, end) \
                if subject_id.strip() and not batch_id.strip() else []
            codes = {b: uow.flow.batch_codes(b) for b in ids}
            entries = [e for b in ids for e in uow.flow.entries_of(b)]
            traces = [t for b in ids for t in uow.flow.traces_of(b)]
        parties = {s.seller_subject_id for s in shipments} | \
            {s.buyer_subject_id for s in shipments}
        divisions = {b.subject_id: b.subject_division for b in chain.batches.values()}
        for party in sorted(parties - set(divisions)):
            found = self.flow.subjects.get(party)
            if found is not None:
                divisions[party] = found.division_code
        return self.codec.export(
            batches=[chain.batches[b] for b in ids], batch_codes=codes, shipments=shipments,
            entries=entries, transformations=list(chain.transformations.values()),
            traces=traces, imported=imported, subject_divisions=divisions,
            created_at=self.flow.clock())

    def import_epcis(self, document: bytes, subject_id: str, *,
                     actor: Actor = None) -> list[ImportOutcome]:
        if not document:
            raise InvalidArgument.of("document", "is empty")
        if len(document) > MAX_DOCUMENT_BYTES:
            raise InvalidArgument.of("document", "is larger than 16 MiB")
        subject = require_active_subject(self.flow.subjects, subject_id, "subject_id")
        access.check_acts_for(actor, subject.subject_id, subject.division_code,
                              "import EPCIS events")
        try:
            events = self.codec.read(document)
        except ValueError as error:
            raise InvalidArgument.of("document", str(error)) from None
        if len(events) > MAX_IMPORTED_EVENTS:
            raise InvalidArgument.of("document", f"holds more than {MAX_IMPORTED_EVENTS:,} "
                                     "events; split it")
        outcomes: list[ImportOutcome] = []
        stored: list[ImportedRecord] = []
        with self.flow.uow_factory() as uow:
            for event in events:
                if isinstance(event, RefusedRecord):
                    outcomes.append(ImportOutcome(event.index, event.event_id, "REFUSED",
                                                  event.reason))
                    continue
                new = uow.flow.add_imported(event.event_id, subject.subject_id,
                                            event.event_time, event.kind, event.event_json)
                outcomes.append(ImportOutcome(event.index, event.event_id,
                                              "STORED" if new else "REPLAYED"))
                if new:
                    stored.append(event)
            if stored:
                uow.publish(Event(SERVICE, "epcis_imported", {
                    "subject_id": subject.subject_id,
                    "event_ids": [e.event_id for e in stored],
                    "kinds": sorted({e.kind for e in stored}),
                }))
            uow.commit()
        return outcomes

    # -- the recall spreadsheet -------------------------------------------------------------

    def record_rows(self, batch_id: str, product_code: str, start: datetime | None,
                    end: datetime | None, *, actor: Actor = None
                    ) -> Iterator[tuple[str, ...]]:
        """Every record of a batch (and the batches transformed from or into it), or of all
        batches of a product, in time order, as spreadsheet rows (SHEET_COLUMNS)."""
        with self.flow.reader_factory() as uow:
            if batch_id.strip():
                batch = require_batch(uow, batch_id)
                access.check_read(actor, batch)
                batches = list(self._lineage(uow, batch).batches.values())
            else:
                if self.flow.products.get(product_code.strip()) is None:
                    raise InvalidArgument.of("product_code", "give a batch, or a product code "
                                             "of the classification")
                batches = [b for b in uow.flow.batches_between(
                    product_code=product_code.strip(), start=start, end=end)
                    if access.may_read(actor, b)]
                if not batches and actor is not None and not actor.is_regulator:
                    raise NotFound("no batch of this product is visible to you",
                                   reason="NOTHING_TO_EXPORT")
            rows: list[tuple[str, ...]] = []
            for batch in batches:
                shipments = {s.shipment_id: s for s in uow.flow.shipments_of(batch.batch_id)}
                for entry in uow.flow.history(batch.batch_id, None, 1_000_000):
                    if start is not None and entry.occurred_at < start:
                        continue
                    if end is not None and entry.occurred_at >= end:
                        continue
                    shipment = shipments.get(entry.record_id)
                    quantity = shipment.quantity if shipment else (
                        batch.quantity if entry.kind == "CREATED" else None)
                    rows.append((
                        entry.occurred_at.isoformat(), batch.batch_id, batch.product_code,
                        batch.product_name, entry.kind, entry.subject_id,
                        entry.other_subject_id,
                        f"{quantity.amount.normalize():f}" if quantity else "",
                        quantity.unit.value if quantity else "",
                        str(len(shipment.codes)) if shipment else "", entry.record_id,
                        entry.summary))
        rows.sort()
        return iter(rows)
