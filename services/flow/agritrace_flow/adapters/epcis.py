"""EPCIS 2.0 JSON-LD: the flow service's records as an EPCIS document (export), and EPCIS
documents read into neutral records the service can store (import). Both sides are checked
against the official GS1 EPCIS 2.0 JSON schema bundled in epcis_schema/ (draft-07, with the
`uri` and `date-time` formats checked, so an extension field whose name is not a URI or a
compact IRI such as `agritrace:batchID` is an error).

Export: our record -> EPCIS event
----------------------------------

=========================  ==================================================================
record                     event
=========================  ==================================================================
Batch (created)            ObjectEvent, action ADD, bizStep commissioning, disposition active;
                           epcList = the batch's codes as resolver URLs, or (no codes)
                           quantityList [{epcClass: batch class, quantity, uom}];
                           readPoint = bizLocation = the producer's location; certificationInfo
                           = the certificate's URI; ilmd: agritrace:batchID, productCode,
                           productName, category, productionDate, originDivision (code and
                           URI), producer, quantity, certificate {certificateID, producerName,
                           contactPhoneMasked, issueDate, commitment, basis, testResult}.
                           eventTime = created_at (or the production date, 00:00 +08:00).
                           A batch that is the output of an exported Transformation has no
                           event of its own: EPCIS commissions it in the TransformationEvent,
                           which carries its ILMD.
Shipment                   ObjectEvent OBSERVE, bizStep shipping, disposition in_transit;
                           epcList = the shipped codes, or quantityList [batch class, amount];
                           readPoint = the seller's location; sourceList = owning_party seller
                           (+ location: the seller's county division, when known);
                           destinationList = owning_party buyer (+ the buyer's division);
                           bizTransactionList [{type bol, waybill URI}] when there is a
                           transport document; agritrace:shipmentID, batchID, quantity.
Shipment.received_at       ObjectEvent OBSERVE, bizStep receiving, disposition in_progress, at
                           the buyer's location, same objects, parties and transaction.
MarketEntry admitted       ObjectEvent OBSERVE, bizStep accepting, disposition conformant;
                           readPoint = bizLocation = the market's location; epcList = the code
                           presented (else quantityList of the batch class, else of the
                           certificate's class); agritrace:entryID, market (its subject URI),
                           admitted, batchID, certificateID.
MarketEntry refused        the same with bizStep inspecting, disposition non_conformant and
                           agritrace:refusal (EntryRefusal) and agritrace:reason (its sentence).
Transformation             TransformationEvent, transformationID = its URI; inputs with codes
                           -> inputEPCList, inputs without -> inputQuantityList (batch class,
                           amount, uom); output codes -> outputEPCList, else outputQuantityList
                           (output batch class and, when the batch is exported, its quantity);
                           bizStep repackaging (REPACK) or commissioning (SPLIT, MERGE,
                           PROCESS); ilmd = the output batch's, when exported;
                           agritrace:transformationKind, subject, outputBatchID, inputs
                           [{batchID, quantity}] (every input's quantity, also those
                           identified by codes).
InternalTrace              ObjectEvent OBSERVE of quantityList [{epcClass: batch class}];
                           bizStep: INSPECTION inspecting (disposition conformant or
                           non_conformant), SLAUGHTER killing (both CBV); the other activities
                           have no CBV step and use ours: <namespace>bizstep/planting,
                           fertilising, pesticide_application, feeding,
                           veterinary_treatment, harvesting; bizLocation = the producer's
                           location when the batch is exported; agritrace:activity,
                           sourceProvince, sourceRecordID, batchID, details {agritrace:<key>:
                           value}, intervalDays and safeFrom (pesticide, veterinary drug),
                           passed (inspection).
ImportedEvent              the event as imported (imported_to_event): eventID set, and the
                           @context of the document it came from, so its extension prefixes
                           stay declared.
=========================  ==================================================================

Instance codes never also appear as a class quantity in the same list (EPCIS would read that as
more goods); the quantity then travels in the agritrace: extension. Every event has eventTime
(rendered at +08:00, China's only offset; a naive datetime is read as UTC),
eventTimeZoneOffset "+08:00" and a deterministic eventID: urn:uuid:<UUID-5 of the record's
kind and id> (EVENT_ID_NAMESPACE), so a re-export is byte-identical and a record keeps its
eventID. Events are sorted by (eventTime, record kind, eventID): the document does not depend
on the order of the records given.

URIs
----
- codes: `codes.resolver_url(base, code)`, i.e. <resolver base>/tc/<code> (GS1 Digital Link
  style); EPCIS accepts any URI as an EPC.
- urn:agritrace:subject:<id> (a party: source/destination owning_party),
  urn:agritrace:location:<subject id> (the registered premises of that subject: readPoint,
  bizLocation), urn:agritrace:division:<GB/T 2260 code> (source/destination of type location),
  urn:agritrace:batch:<id> (a batch as an EPC class: quantityList epcClass),
  urn:agritrace:certificate:<id> (certificationInfo; as an epcClass: the goods it covers),
  urn:agritrace:transformation:<id>, urn:agritrace:waybill:<document> (bizTransaction, type
  bol). Components are percent-encoded.
- extension terms: the prefix `agritrace` = NAMESPACE, declared in the document's @context
  next to the EPCIS 2.0 context, as GS1's own examples declare `example:`.

Import rules
------------
The whole document is refused (ValueError) when it exceeds MAX_DOCUMENT_BYTES, is not UTF-8
JSON, is not a JSON object of type EPCISDocument, or fails the schema (the first errors are
quoted). Then each event of epcisBody.eventList, in this order of checks, is refused with a
reason (RefusedEvent) when:
1. it repeats an eventID (or hash) of an earlier event of the document;
2. it is an AggregationEvent or AssociationEvent: packing and assembly hierarchy is not
   recorded by the flow service; or an extension event type (only ObjectEvent,
   TransactionEvent and TransformationEvent map onto the model);
3. it carries an errorDeclaration: corrections of earlier events are not accepted by import;
4. its action is DELETE: the flow service records goods and movements, not their removal;
5. its bizStep is void_shipping (the cancellation of a shipment: a correction too);
6. it names no objects (no EPCs and no quantities); a TransformationEvent needs inputs and
   outputs (a transformation split over several events sharing a transformationID is refused);
7. its eventTime cannot be read.
Otherwise it becomes an ImportedEvent whose kind is TRANSFORMATION (TransformationEvent),
COMMISSIONING (ObjectEvent ADD), SHIPPING (bizStep shipping), RECEIVING (bizStep receiving)
or OBSERVATION (anything else: inspections, sensor reports, market gates, TransactionEvents of
other steps). CBV vocabulary (bizStep, disposition, source/destination and transaction types)
is normalised to the short names (shipping, in_transit, owning_party, po) whether written bare
or as https://ref.gs1.org/cbv/BizStep-shipping, gs1:/cbv: compact IRIs or urn:epcglobal:cbv;
other URIs are kept as they are.

An event without an eventID gets event_hash(event): urn:agritrace:event-hash:sha-256:<hex>,
the SHA-256 of the event's JSON (without recordTime) serialised with sorted keys, no
whitespace, UTF-8. It is stable for the same JSON, but it is NOT the CBV 2.0 event hash
(ni:///sha-256;...?ver=CBV2.0), whose canonical form this adapter does not compute.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jsonschema import Draft7Validator, validators
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator

from agritrace_coding.domain.codes import resolver_url
from agritrace_flow.domain.model import (
    Activity,
    Batch,
    InternalTrace,
    MarketEntry,
    Quantity,
    Shipment,
    Transformation,
    TransformationKind,
    Unit,
)
from agritrace_flow.service_layer.ports import ImportedRecord, RefusedRecord

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
PREFIX = "agritrace"
NAMESPACE = "https://ns.agritrace.example.cn/epcis/"
SCHEMA_PATH = Path(__file__).resolve().parent / "epcis_schema" / "EPCIS-JSON-Schema.json"
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
# Export event ids: UUID-5 names "<record kind>:<record id>" in this namespace.
EVENT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, NAMESPACE)
EVENT_HASH_PREFIX = "urn:agritrace:event-hash:sha-256:"
CHINA_TIME = timezone(timedelta(hours=8))
CHINA_OFFSET = "+08:00"
_MAX_SCHEMA_ERRORS = 3

# Our units as UN/ECE Recommendation 20 codes (EPCIS uom); XBX is Rec. 21's box, X-prefixed.
UOM_OF_UNIT: dict[Unit, str] = {
    Unit.KG: "KGM",
    Unit.T: "TNE",
    Unit.G: "GRM",
    Unit.L: "LTR",
    Unit.PIECE: "H87",
    Unit.BOX: "XBX",
    Unit.HEAD: "HEA",
}
_UNIT_OF_UOM = {uom: unit for unit, uom in UOM_OF_UNIT.items()}

# Production activities without a CBV business step get one of ours.
_ACTIVITY_BIZ_STEP: dict[Activity, str] = {
    Activity.PLANTING: f"{NAMESPACE}bizstep/planting",
    Activity.FERTILISER: f"{NAMESPACE}bizstep/fertilising",
    Activity.PESTICIDE: f"{NAMESPACE}bizstep/pesticide_application",
    Activity.FEED: f"{NAMESPACE}bizstep/feeding",
    Activity.VETERINARY_DRUG: f"{NAMESPACE}bizstep/veterinary_treatment",
    Activity.HARVEST: f"{NAMESPACE}bizstep/harvesting",
    Activity.SLAUGHTER: "killing",
    Activity.INSPECTION: "inspecting",
}


class EventKind(StrEnum):
    """What an imported event means for the flow model."""

    COMMISSIONING = "COMMISSIONING"
    SHIPPING = "SHIPPING"
    RECEIVING = "RECEIVING"
    OBSERVATION = "OBSERVATION"
    TRANSFORMATION = "TRANSFORMATION"


@dataclass(frozen=True)
class ImportedEvent:
    """An EPCIS event that maps onto the model, in neutral terms. `epcs` and `quantities` are
    the event's objects (a TransformationEvent's outputs, its inputs being in input_epcs and
    input_quantities); a quantity is (epcClass, amount or None, uom or None). `raw` is the
    event's JSON, with the @context of its document attached when it had none of its own."""

    index: int
    event_id: str
    event_type: str
    action: str | None
    event_time: datetime
    event_time_zone_offset: str
    biz_step: str
    disposition: str
    epcs: tuple[str, ...]
    quantities: tuple[tuple[str, Decimal | None, str | None], ...]
    input_epcs: tuple[str, ...]
    input_quantities: tuple[tuple[str, Decimal | None, str | None], ...]
    transformation_id: str | None
    sources: tuple[tuple[str, str], ...]
    destinations: tuple[tuple[str, str], ...]
    read_point: str | None
    biz_location: str | None
    biz_transactions: tuple[tuple[str, str], ...]  # (type, or "" when untyped; id)
    kind: EventKind
    raw: dict[str, Any] = field(hash=False, repr=False)


@dataclass(frozen=True)
class RefusedEvent:
    """An EPCIS event that does not map onto the model, and why (one sentence)."""

    index: int
    event_id: str
    event_type: str
    reason: str


@dataclass(frozen=True)
class EpcisRecords:
    """What one export holds: the records of a batch's chain or of a subject's time range."""

    batches: Sequence[Batch] = ()
    # batch_id -> its codes (canonical), in the order to list them
    batch_codes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    shipments: Sequence[Shipment] = ()
    entries: Sequence[MarketEntry] = ()
    transformations: Sequence[Transformation] = ()
    traces: Sequence[InternalTrace] = ()
    imported: Sequence[ImportedEvent] = ()
    # subject_id -> county division code (GB/T 2260), for source/destination locations
    subject_divisions: Mapping[str, str] = field(default_factory=dict)


# ---- URIs ------------------------------------------------------------------------------------


def _part(value: str) -> str:
    return quote(value, safe="")


def subject_uri(subject_id: str) -> str:
    return f"urn:agritrace:subject:{_part(subject_id)}"


def location_uri(subject_id: str) -> str:
    return f"urn:agritrace:location:{_part(subject_id)}"


def division_uri(division_code: str) -> str:
    return f"urn:agritrace:division:{_part(division_code)}"


def batch_class_uri(batch_id: str) -> str:
    return f"urn:agritrace:batch:{_part(batch_id)}"


def certificate_uri(certificate_id: str) -> str:
    return f"urn:agritrace:certificate:{_part(certificate_id)}"


def transformation_uri(transformation_id: str) -> str:
    return f"urn:agritrace:transformation:{_part(transformation_id)}"


def waybill_uri(transport_document: str) -> str:
    return f"urn:agritrace:waybill:{_part(transport_document)}"


def code_uri(resolver_base_url: str, code: str) -> str:
    return resolver_url(resolver_base_url, _part(code))


def record_event_id(kind: str, *ids: str) -> str:
    """The eventID of one of our records: stable for the record, whatever else changes."""
    name = ":".join([kind, *ids])
    return f"urn:uuid:{uuid.uuid5(EVENT_ID_NAMESPACE, name)}"


def _term(name: str) -> str:
    return f"{PREFIX}:{name}"


# ---- Export ----------------------------------------------------------------------------------


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _time(moment: datetime) -> str:
    return _aware(moment).astimezone(CHINA_TIME).isoformat(timespec="milliseconds")


def _number(amount: Decimal) -> int | float:
    return int(amount) if amount == amount.to_integral_value() else float(amount)


def _amount(quantity: Quantity) -> dict[str, str]:
    return {_term("amount"): f"{quantity.amount.normalize():f}",
            _term("unit"): quantity.unit.value}


def _class_quantity(batch_id: str, quantity: Quantity | None) -> dict[str, Any]:
    element: dict[str, Any] = {"epcClass": batch_class_uri(batch_id)}
    if quantity is not None:
        element["quantity"] = _number(quantity.amount)
        element["uom"] = UOM_OF_UNIT[quantity.unit]
    return element


def _code_list(base: str, codes: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(code_uri(base, code) for code in codes))  # unique, in order


def _base(kind: str, event_id: str, moment: datetime) -> dict[str, Any]:
    return {
        "type": kind,
        "eventID": event_id,
        "eventTime": _time(moment),
        "eventTimeZoneOffset": CHINA_OFFSET,
    }


def _batch_ilmd(batch: Batch) -> dict[str, Any]:
    ilmd: dict[str, Any] = {
        _term("batchID"): batch.batch_id,
        _term("productCode"): batch.product_code,
        _term("productName"): batch.product_name,
        _term("category"): batch.category,
        _term("productionDate"): batch.production_date.isoformat(),
        _term("originDivision"): batch.origin_division,
        _term("originDivisionURI"): division_uri(batch.origin_division),
        _term("producer"): subject_uri(batch.subject_id),
        _term("quantity"): _amount(batch.quantity),
    }
    if batch.parent_batch_ids:
        ilmd[_term("parentBatchIDs")] = list(batch.parent_batch_ids)
    certificate = batch.certificate
    if certificate is not None:
        ilmd[_term("certificate")] = {
            _term("certificateID"): certificate.certificate_id,
            _term("producerName"): certificate.producer_name,
            _term("contactPhoneMasked"): certificate.contact_phone_masked,
            _term("issueDate"): certificate.issue_date.isoformat(),
            _term("commitment"): certificate.commitment,
            _term("basis"): certificate.basis.value,
            _term("testResult"): certificate.test_result,
        }
    return ilmd


def _batch_time(batch: Batch) -> datetime:
    if batch.created_at is not None:
        return batch.created_at
    return datetime.combine(batch.production_date, time(0), CHINA_TIME)


def _batch_event(batch: Batch, codes: Sequence[str], base: str) -> dict[str, Any]:
    event = _base("ObjectEvent", record_event_id("batch", batch.batch_id), _batch_time(batch))
    if codes:
        event["epcList"] = _code_list(base, codes)
    else:
        event["quantityList"] = [_class_quantity(batch.batch_id, batch.quantity)]
    event.update({
        "action": "ADD",
        "bizStep": "commissioning",
        "disposition": "active",
        "readPoint": {"id": location_uri(batch.subject_id)},
        "bizLocation": {"id": location_uri(batch.subject_id)},
    })
    if batch.certificate is not None:
        event["certificationInfo"] = certificate_uri(batch.certificate.certificate_id)
    event["ilmd"] = _batch_ilmd(batch)
    return event


def _parties(
    key: str, subject_id: str, divisions: Mapping[str, str]
) -> list[dict[str, str]]:
    parties = [{"type": "owning_party", key: subject_uri(subject_id)}]
    division = divisions.get(subject_id)
    if division:
        parties.append({"type": "location", key: division_uri(division)})
    return parties


def _hand_over_event(
    shipment: Shipment, received: bool, base: str, divisions: Mapping[str, str]
) -> dict[str, Any]:
    if received:
        assert shipment.received_at is not None
        event = _base("ObjectEvent", record_event_id("receipt", shipment.shipment_id),
                      shipment.received_at)
    else:
        event = _base("ObjectEvent", record_event_id("shipment", shipment.shipment_id),
                      shipment.ship_time)
    if shipment.codes:
        event["epcList"] = _code_list(base, shipment.codes)
    else:
        event["quantityList"] = [_class_quantity(shipment.batch_id, shipment.quantity)]
    at = shipment.buyer_subject_id if received else shipment.seller_subject_id
    event.update({
        "action": "OBSERVE",
        "bizStep": "receiving" if received else "shipping",
        "disposition": "in_progress" if received else "in_transit",
        "readPoint": {"id": location_uri(at)},
    })
    if received:
        event["bizLocation"] = {"id": location_uri(at)}
    if shipment.transport_document:
        event["bizTransactionList"] = [
            {"type": "bol", "bizTransaction": waybill_uri(shipment.transport_document)}]
    event["sourceList"] = _parties("source", shipment.seller_subject_id, divisions)
    event["destinationList"] = _parties("destination", shipment.buyer_subject_id, divisions)
    event[_term("shipmentID")] = shipment.shipment_id
    event[_term("batchID")] = shipment.batch_id
    event[_term("quantity")] = _amount(shipment.quantity)
    return event


def _entry_event(entry: MarketEntry, base: str) -> dict[str, Any]:
    event = _base("ObjectEvent", record_event_id("entry", entry.entry_id), entry.check_time)
    if entry.code:
        event["epcList"] = [code_uri(base, entry.code)]
    elif entry.batch_id:
        event["quantityList"] = [_class_quantity(entry.batch_id, None)]
    elif entry.certificate_id:
        event["quantityList"] = [{"epcClass": certificate_uri(entry.certificate_id)}]
    else:  # nothing identifiable was presented: the decision is still exported
        event["epcList"] = []
    market = location_uri(entry.market_subject_id)
    event.update({
        "action": "OBSERVE",
        "bizStep": "accepting" if entry.admitted else "inspecting",
        "disposition": "conformant" if entry.admitted else "non_conformant",
        "readPoint": {"id": market},
        "bizLocation": {"id": market},
    })
    event[_term("entryID")] = entry.entry_id
    event[_term("market")] = subject_uri(entry.market_subject_id)
    event[_term("admitted")] = entry.admitted
    if entry.batch_id:
        event[_term("batchID")] = entry.batch_id
    if entry.certificate_id:
        event[_term("certificateID")] = entry.certificate_id
    if not entry.admitted:
        if entry.refusal is not None:
            event[_term("refusal")] = entry.refusal.value
        event[_term("reason")] = entry.reason
    return event


def _transformation_event(
    transformation: Transformation, output: Batch | None, base: str
) -> dict[str, Any]:
    event = _base("TransformationEvent",
                  record_event_id("transformation", transformation.transformation_id),
                  transformation.occurred_at)
    input_codes = [code for item in transformation.inputs for code in item.codes]
    if input_codes:
        event["inputEPCList"] = _code_list(base, input_codes)
    uncoded = [_class_quantity(item.batch_id, item.quantity)
               for item in transformation.inputs if not item.codes]
    if uncoded:
        event["inputQuantityList"] = uncoded
    if transformation.output_codes:
        event["outputEPCList"] = _code_list(base, transformation.output_codes)
    else:
        event["outputQuantityList"] = [_class_quantity(
            transformation.output_batch_id, output.quantity if output else None)]
    where = location_uri(transformation.subject_id)
    event.update({
        "transformationID": transformation_uri(transformation.transformation_id),
        "bizStep": ("repackaging" if transformation.kind is TransformationKind.REPACK
                    else "commissioning"),
        "readPoint": {"id": where},
        "bizLocation": {"id": where},
    })
    if output is not None:
        if output.certificate is not None:
            event["certificationInfo"] = certificate_uri(output.certificate.certificate_id)
        event["ilmd"] = _batch_ilmd(output)
    event[_term("transformationKind")] = transformation.kind.value
    event[_term("subject")] = subject_uri(transformation.subject_id)
    event[_term("outputBatchID")] = transformation.output_batch_id
    event[_term("inputs")] = [
        {_term("batchID"): item.batch_id, _term("quantity"): _amount(item.quantity)}
        for item in transformation.inputs]
    return event


def _trace_event(trace: InternalTrace, batch: Batch | None) -> dict[str, Any]:
    event = _base("ObjectEvent",
                  record_event_id("trace", trace.source_province, trace.source_record_id),
                  trace.occurred_at)
    event.update({
        "quantityList": [_class_quantity(trace.batch_id, None)],
        "action": "OBSERVE",
        "bizStep": _ACTIVITY_BIZ_STEP[trace.activity],
    })
    if trace.activity is Activity.INSPECTION:
        event["disposition"] = "conformant" if trace.passed else "non_conformant"
    if batch is not None:
        event["bizLocation"] = {"id": location_uri(batch.subject_id)}
    event[_term("activity")] = trace.activity.value
    event[_term("sourceProvince")] = trace.source_province
    event[_term("sourceRecordID")] = trace.source_record_id
    event[_term("batchID")] = trace.batch_id
    if trace.details:
        event[_term("details")] = {
            _term(_part(key)): value for key, value in sorted(trace.details.items())}
    if trace.activity.has_interval:
        event[_term("intervalDays")] = trace.interval_days
        event[_term("safeFrom")] = _time(trace.safe_from)
    if trace.activity is Activity.INSPECTION:
        event[_term("passed")] = trace.passed
    return event


def build_document(
    records: EpcisRecords, *, resolver_base_url: str, created_at: datetime
) -> dict[str, Any]:
    """The records as one EPCIS 2.0 document (a JSON-ready dict; see the module docstring
    for the mapping). Deterministic: the same records give the same document, in any order."""
    base = resolver_base_url
    batches = {batch.batch_id: batch for batch in records.batches}
    outputs = {t.output_batch_id for t in records.transformations}
    keyed: list[tuple[datetime, int, str, dict[str, Any]]] = []

    def add(rank: int, moment: datetime, event: dict[str, Any]) -> None:
        keyed.append((_aware(moment), rank, str(event.get("eventID", "")), event))

    for batch in records.batches:
        if batch.batch_id not in outputs:
            codes = records.batch_codes.get(batch.batch_id, ())
            add(0, _batch_time(batch), _batch_event(batch, codes, base))
    for trace in records.traces:
        add(1, trace.occurred_at, _trace_event(trace, batches.get(trace.batch_id)))
    for shipment in records.shipments:
        add(2, shipment.ship_time,
            _hand_over_event(shipment, False, base, records.subject_divisions))
        if shipment.received_at is not None:
            add(3, shipment.received_at,
                _hand_over_event(shipment, True, base, records.subject_divisions))
    for entry in records.entries:
        add(4, entry.check_time, _entry_event(entry, base))
    for transformation in records.transformations:
        add(5, transformation.occurred_at, _transformation_event(
            transformation, batches.get(transformation.output_batch_id), base))
    for imported in records.imported:
        add(6, imported.event_time, imported_to_event(imported))
    keyed.sort(key=lambda item: item[:3])
    return {
        "@context": [EPCIS_CONTEXT, {PREFIX: NAMESPACE}],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": _time(created_at),
        "epcisBody": {"eventList": [event for *_, event in keyed]},
    }


# ---- Validation ------------------------------------------------------------------------------


@functools.cache
def _validator() -> Validator:
    """The official schema, compiled once per process, with formats checked."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = validators.validator_for(schema, default=Draft7Validator)
    cls.check_schema(schema)
    missing = {"uri", "date-time"} - set(cls.FORMAT_CHECKER.checkers)
    if missing:  # jsonschema skips a format it cannot check: fail instead of checking less
        raise RuntimeError(f"jsonschema cannot check the {', '.join(sorted(missing))} "
                           "format(s): install rfc3986-validator and rfc3339-validator")
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _json_path(error: ValidationError) -> str:
    path = "$"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _describe(error: ValidationError) -> str:
    text = f"{_json_path(error)}: {error.message}"
    if error.context:  # anyOf / oneOf: name the closest alternative's complaint too
        closest = best_match(error.context)
        if closest is not None:
            text += f" (closest: {_json_path(closest)}: {closest.message})"
    return text


def validate(document: Any) -> list[str]:
    """The JSON-schema errors of a document against the official EPCIS 2.0 schema, each as
    "<JSON path>: <message>"; empty when it is valid."""
    errors = sorted(_validator().iter_errors(document),
                    key=lambda error: [str(part) for part in error.absolute_path])
    return [_describe(error) for error in errors]


# ---- Import ----------------------------------------------------------------------------------


def event_hash(event: Mapping[str, Any]) -> str:
    """The id of an event without eventID: SHA-256 of its canonical JSON (sorted keys, no
    whitespace, UTF-8), recordTime and eventID left out. Not the CBV 2.0 event hash."""
    content = {key: value for key, value in event.items()
               if key not in ("recordTime", "eventID")}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False, allow_nan=False)
    return EVENT_HASH_PREFIX + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


_CBV_FORMS = {
    # term in the GS1 web vocabulary / CBV 2.0 URI, and in the EPCIS 1.x URN
    "bizStep": ("BizStep", "bizstep"),
    "disposition": ("Disp", "disp"),
    "sdt": ("SDT", "sdt"),
    "btt": ("BTT", "btt"),
}


def cbv_short_name(value: str, vocabulary: str) -> str:
    """The CBV short name of a bizStep, disposition, source/destination type ("sdt") or
    business transaction type ("btt") in any of its forms; other URIs unchanged."""
    web, urn = _CBV_FORMS[vocabulary]
    match = re.fullmatch(
        rf"(?:https?://(?:ref\.gs1\.org/cbv/|(?:www\.)?gs1\.org/voc/|ns\.gs1\.org/cbv/)"
        rf"|cbv:|gs1:){web}-(\w+)|urn:epcglobal:cbv:{urn}:(\w+)", value)
    if match:
        return match.group(1) or match.group(2)
    return value


def unit_of_uom(uom: str | None) -> Unit | None:
    """Our unit for a UN/ECE Rec. 20 code, when we have one."""
    return _UNIT_OF_UOM.get(uom or "")


def _parse_time(text: Any, offset: Any) -> datetime:
    if not isinstance(text, str):
        raise ValueError("not a string")
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:  # the schema requires an offset; fall back on the event's
        sign, hours, minutes = offset[0], int(offset[1:3]), int(offset[4:6])
        delta = timedelta(hours=hours, minutes=minutes)
        moment = moment.replace(tzinfo=timezone(delta if sign == "+" else -delta))
    return moment


def _quantities(items: Any) -> tuple[tuple[str, Decimal | None, str | None], ...]:
    result = []
    for item in items or ():
        amount = item.get("quantity")
        try:
            value = None if amount is None else Decimal(str(amount))
        except InvalidOperation:
            value = None
        result.append((str(item["epcClass"]), value, item.get("uom")))
    return tuple(result)


def _ends(items: Any, key: str) -> tuple[tuple[str, str], ...]:
    return tuple((cbv_short_name(str(item["type"]), "sdt"), str(item[key]))
                 for item in items or ())


def _refusal(event: Mapping[str, Any]) -> str | None:
    kind = event.get("type")
    if kind == "AggregationEvent":
        return ("AggregationEvent: the packing hierarchy (what is packed in what) is not "
                "recorded by the flow service")
    if kind == "AssociationEvent":
        return ("AssociationEvent: associations between objects (the packing and assembly "
                "hierarchy) are not recorded by the flow service")
    if kind not in ("ObjectEvent", "TransactionEvent", "TransformationEvent"):
        return (f"{kind}: extension event types are not mapped; the flow service imports "
                "ObjectEvent, TransactionEvent and TransformationEvent")
    if "errorDeclaration" in event:
        return ("carries an errorDeclaration: corrections of earlier events are not accepted "
                "by import")
    if event.get("action") == "DELETE":
        return ("action DELETE is not accepted: the flow service records goods and their "
                "movements, not their removal")
    if cbv_short_name(str(event.get("bizStep", "")), "bizStep") == "void_shipping":
        return ("bizStep void_shipping cancels an earlier shipment: corrections are not "
                "accepted by import")
    if kind == "TransformationEvent":
        has_inputs = bool(event.get("inputEPCList") or event.get("inputQuantityList"))
        has_outputs = bool(event.get("outputEPCList") or event.get("outputQuantityList"))
        if not (has_inputs and has_outputs):
            return ("a TransformationEvent needs both inputs and outputs: the flow service "
                    "does not record a transformation split over several events")
    elif not (event.get("epcList") or event.get("quantityList")):
        return "names no objects: the event has no EPCs and no quantities"
    return None


def _kind(event: Mapping[str, Any], biz_step: str) -> EventKind:
    if event["type"] == "TransformationEvent":
        return EventKind.TRANSFORMATION
    if event["type"] == "ObjectEvent" and event.get("action") == "ADD":
        return EventKind.COMMISSIONING
    if biz_step == "shipping":
        return EventKind.SHIPPING
    if biz_step == "receiving":
        return EventKind.RECEIVING
    return EventKind.OBSERVATION


def _read_event(
    index: int, event: dict[str, Any], event_id: str, context: Any
) -> ImportedEvent | RefusedEvent:
    event_type = str(event.get("type", ""))
    reason = _refusal(event)
    if reason is not None:
        return RefusedEvent(index, event_id, event_type, reason)
    offset = str(event.get("eventTimeZoneOffset", ""))
    try:
        moment = _parse_time(event.get("eventTime"), offset)
    except (ValueError, IndexError):
        return RefusedEvent(index, event_id, event_type,
                            f"eventTime {event.get('eventTime')!r} cannot be read")
    biz_step = cbv_short_name(str(event.get("bizStep", "")), "bizStep")
    raw = dict(event)
    if "@context" not in raw and context is not None:
        raw["@context"] = context
    transformation = event_type == "TransformationEvent"
    return ImportedEvent(
        index=index,
        event_id=event_id,
        event_type=event_type,
        action=event.get("action"),
        event_time=moment,
        event_time_zone_offset=offset,
        biz_step=biz_step,
        disposition=cbv_short_name(str(event.get("disposition", "")), "disposition"),
        epcs=tuple(event.get("outputEPCList" if transformation else "epcList") or ()),
        quantities=_quantities(
            event.get("outputQuantityList" if transformation else "quantityList")),
        input_epcs=tuple(event.get("inputEPCList") or ()),
        input_quantities=_quantities(event.get("inputQuantityList")),
        transformation_id=event.get("transformationID"),
        sources=_ends(event.get("sourceList"), "source"),
        destinations=_ends(event.get("destinationList"), "destination"),
        read_point=(event.get("readPoint") or {}).get("id"),
        biz_location=(event.get("bizLocation") or {}).get("id"),
        biz_transactions=tuple(
            (cbv_short_name(str(item.get("type", "")), "btt"), str(item["bizTransaction"]))
            for item in event.get("bizTransactionList") or ()),
        kind=_kind(event, biz_step),
        raw=raw,
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _load(raw: bytes | str) -> Any:
    size = len(raw.encode("utf-8")) if isinstance(raw, str) else len(raw)
    if size > MAX_DOCUMENT_BYTES:
        raise ValueError(f"the document has {size} bytes; at most {MAX_DOCUMENT_BYTES} are "
                         "accepted")
    try:
        text = raw if isinstance(raw, str) else raw.decode("utf-8-sig")
        return json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError as error:
        raise ValueError(f"the document is not UTF-8 text: {error}") from None
    except RecursionError:
        raise ValueError("the document is not JSON: it is nested too deeply") from None
    except ValueError as error:
        raise ValueError(f"the document is not JSON: {error}") from None


def parse_document(raw: bytes | str) -> list[ImportedEvent | RefusedEvent]:
    """Reads an EPCIS 2.0 JSON-LD document: one ImportedEvent or RefusedEvent per event of its
    eventList, in order. Raises ValueError, saying why, for a document that is not JSON, not
    an EPCISDocument or not valid against the schema (see the module docstring)."""
    document = _load(raw)
    if not isinstance(document, dict):
        raise ValueError(f"the document is a JSON {type(document).__name__}, not an "
                         "EPCISDocument object")
    if document.get("type") != "EPCISDocument":
        raise ValueError(f"the document's type is {document.get('type')!r}; only an "
                         "EPCISDocument is imported")
    errors = validate(document)
    if errors:
        more = f" (and {len(errors) - _MAX_SCHEMA_ERRORS} more)" \
            if len(errors) > _MAX_SCHEMA_ERRORS else ""
        raise ValueError("the document is not valid against the EPCIS 2.0 JSON schema: "
                         + "; ".join(errors[:_MAX_SCHEMA_ERRORS]) + more)
    context = document.get("@context")
    results: list[ImportedEvent | RefusedEvent] = []
    seen: dict[str, int] = {}
    for index, event in enumerate(document["epcisBody"]["eventList"]):
        given = event.get("eventID")
        event_id = str(given) if given else event_hash(event)
        if event_id in seen:
            results.append(RefusedEvent(
                index, event_id, str(event.get("type", "")),
                f"repeats the eventID of event {seen[event_id]} of this document"))
            continue
        seen[event_id] = index
        try:
            results.append(_read_event(index, event, event_id, context))
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            results.append(RefusedEvent(index, event_id, str(event.get("type", "")),
                                        f"cannot be read: {error!r}"))
    return results


def imported_to_event(imported: ImportedEvent) -> dict[str, Any]:
    """An imported event as it is exported again: as it came, with its eventID (the hash,
    when it had none) and the @context of its document, so that its extension prefixes stay
    declared."""
    event: dict[str, Any] = json.loads(json.dumps(imported.raw))  # a deep copy, plain JSON
    event["eventID"] = imported.event_id
    return event



def stored_event(event_json: str) -> ImportedEvent:
    """An imported event read back from what the service stored (the JSON of
    `imported_to_event`), for a later export."""
    event = json.loads(event_json)
    read = _read_event(0, event, str(event["eventID"]), None)
    if isinstance(read, RefusedEvent):  # it was accepted once: the rules have changed
        raise ValueError(f"stored event {read.event_id} is no longer importable: {read.reason}")
    return read


class EpcisCodecAdapter:
    """The flow service's EpcisCodec port over this module. Every export is validated
    against the official schema before it leaves (a bug in the mapping must not reach a
    trading partner); imports are validated by parse_document."""

    def __init__(self, resolver_base_url: str) -> None:
        self.resolver_base_url = resolver_base_url

    def export(self, *, batches: Sequence[Batch], batch_codes: dict[str, list[str]],
               shipments: Sequence[Shipment], entries: Sequence[MarketEntry],
               transformations: Sequence[Transformation], traces: Sequence[InternalTrace],
               imported: Sequence[str], subject_divisions: dict[str, str],
               created_at: datetime) -> tuple[bytes, int]:
        records = EpcisRecords(
            batches=batches, batch_codes=batch_codes, shipments=shipments, entries=entries,
            transformations=transformations, traces=traces,
            imported=[stored_event(text) for text in imported],
            subject_divisions=subject_divisions)
        document = build_document(records, resolver_base_url=self.resolver_base_url,
                                  created_at=created_at)
        errors = validate(document)
        if errors:
            raise RuntimeError("an export failed the EPCIS schema: " + "; ".join(errors[:3]))
        events = len(document["epcisBody"]["eventList"])
        return json.dumps(document, ensure_ascii=False, sort_keys=True).encode(), events

    def read(self, document: bytes) -> list[ImportedRecord | RefusedRecord]:
        results: list[ImportedRecord | RefusedRecord] = []
        for event in parse_document(document):
            if isinstance(event, RefusedEvent):
                results.append(RefusedRecord(event.index, event.event_id, event.reason))
            else:
                results.append(ImportedRecord(
                    event.index, event.event_id, event.kind.value, event.event_time,
                    json.dumps(imported_to_event(event), ensure_ascii=False, sort_keys=True)))
        return results
