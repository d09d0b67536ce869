"""The read model's writers: one projection per source event, each turning the event into
upserts of the read model and bumps of the statistics counters.

Events of one source arrive in any order (one queue per event type), those of different
sources all the more, so a projection only sets what its event knows and never lets an older
fact overwrite a newer one (see the store). The inbox (consumer "query") makes each event
apply once, so counters may be bumped; the live handlers and the rebuild share the same
projections. Payloads come from other services: a projection reads them defensively, since
one that raised would stall that source's events (the relay retries a failed delivery).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from agritrace_kernel.events.bus import IdempotentHandler, Subscription
from agritrace_kernel.events.model import Event
from agritrace_query import metrics
from agritrace_query.service_layer.projection_ports import (
    BatchFacts,
    CodeFacts,
    HeldCount,
    MarketEntryFacts,
    OriginCache,
    ProjectionStore,
    ProjectionUnitOfWork,
    ShipmentFacts,
    SubjectFacts,
    Touched,
    TraceFacts,
    TransformationInputFacts,
)

log = logging.getLogger(__name__)

CONSUMER = "query"
RETRY_DELAYS = (0.05, 0.2, 1.0)  # seconds before each further attempt at a failed event
CHINA_TIME = timezone(timedelta(hours=8))
Clock = Callable[[], datetime]
Projection = Callable[[Event, ProjectionStore], Touched]

# The certificate's fields the origin view may show (the phone number only ever masked).
CERTIFICATE_FIELDS = ("certificate_id", "producer_name", "contact_phone_masked", "issue_date",
                      "commitment", "basis", "test_result")


def utc_now() -> datetime:
    return datetime.now(UTC)


def china_day(at: datetime) -> date:
    """The statistics' day of a moment: the calendar date in China (UTC+8)."""
    return at.astimezone(CHINA_TIME).date()


# -- reading payloads --------------------------------------------------------------------------

def _text(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    return "" if value is None else str(value)


def _texts(payload: Mapping[str, Any], key: str) -> list[str]:
    value = payload.get(key)
    return [str(item) for item in value if item] if isinstance(value, list) else []


def _single(payload: Mapping[str, Any], key: str) -> str:
    """The one value a list holds; "" when it holds none or several."""
    values = sorted(set(_texts(payload, key)))
    return values[0] if len(values) == 1 else ""


def _time(payload: Mapping[str, Any], key: str, default: datetime) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(payload[key]))
    except (KeyError, TypeError, ValueError):
        return default
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _date(payload: Mapping[str, Any], key: str) -> date | None:
    try:
        return date.fromisoformat(str(payload[key]))
    except (KeyError, TypeError, ValueError):
        return None


def _int(payload: Mapping[str, Any], key: str, default: int = 0) -> int:
    try:
        return int(payload[key])
    except (KeyError, TypeError, ValueError):
        return default


def _province_division(province: str) -> str:
    """Where a count goes when the subject's county is not known yet: its province."""
    return f"{province}0000" if len(province) == 2 else ""


@dataclass(frozen=True)
class _Place:
    """The subject an event concerns and where its counts go: its county, or while the read
    model has not learnt of the subject yet (its registry event may come later), its
    province ("" when not even that is known) - until the subject arrives (see _sight)."""

    subject_id: str
    division: str
    known: bool = True


def _divisions(store: ProjectionStore, subject_ids: Iterable[str]) -> dict[str, str]:
    """The divisions of the subjects the read model knows; for the others, what it learns
    until this transaction ends is seen by the handler storing them (see _sight)."""
    wanted = set(subject_ids) - {""}
    found = store.subject_divisions(wanted)
    unknown = wanted - set(found)
    if unknown:
        store.wait_for_subjects(unknown)
        found |= store.subject_divisions(unknown)
    return found


def _places(store: ProjectionStore, *parties: tuple[str, str]) -> list[_Place]:
    """The places of (subject_id, province) parties, their divisions read together."""
    divisions = _divisions(store, [subject_id for subject_id, _ in parties])
    places = []
    for subject_id, province in parties:
        division = divisions.get(subject_id)
        places.append(_Place(subject_id, division or _province_division(province),
                             division is not None))
    return places


def _place(store: ProjectionStore, subject_id: str, province: str = "") -> _Place:
    return _places(store, (subject_id, province))[0]


def _count(store: ProjectionStore, day: date, place: _Place, metric: str,
           amount: int = 1) -> None:
    store.add_counts({(day, place.division, metric): amount})
    _hold(store, day, place, metric, amount)


def _count_ones(store: ProjectionStore, day: date, counted: Sequence[tuple[_Place, str]]
                ) -> None:
    """One each to several (place, metric) counters, in one statement."""
    store.add_counts(Counter((day, place.division, metric) for place, metric in counted))
    for place, metric in counted:
        _hold(store, day, place, metric, 1)


def _hold(store: ProjectionStore, day: date, place: _Place, metric: str, amount: int) -> None:
    if not place.known and place.subject_id and amount:
        store.hold_count(HeldCount(place.subject_id, day, metric, place.division, amount))


def _active(store: ProjectionStore, place: _Place, day: date) -> None:
    if place.subject_id:
        store.mark_active(place.subject_id, day, place.division)


# -- registry ----------------------------------------------------------------------------------

def _subject(payload: Mapping[str, Any]) -> SubjectFacts | None:
    facts = SubjectFacts(_text(payload, "subject_id"), _text(payload, "kind"),
                         _text(payload, "name"), _text(payload, "division_code"),
                         _text(payload, "status"), _int(payload, "version", -1))
    if not facts.subject_id or len(facts.division_code) != 6 or facts.version < 0:
        log.warning("subject in an event without id, division or version; skipped",
                    extra={"subject_id": facts.subject_id})
        return None
    return facts


def _sight(store: ProjectionStore, subjects: Iterable[SubjectFacts | None],
           at: datetime) -> Touched:
    """Stores subjects; counts a registration on first sight, and moves that count when an
    earlier event about the subject arrives late."""
    latest: dict[str, SubjectFacts] = {}
    for facts in subjects:
        if facts is not None and (facts.subject_id not in latest
                                  or facts.version > latest[facts.subject_id].version):
            latest[facts.subject_id] = facts
    # Summed, then written at once: an import batch's thousand subjects are a handful of
    # counters, not a thousand upserts (taken in one order, so concurrent batches of two
    # provinces cannot deadlock on the counters they share).
    deltas: Counter[tuple[date, str, str]] = Counter()
    for sighting in store.sight_subjects(list(latest.values()), at):
        division = latest[sighting.subject_id].division_code
        if sighting.moved_from is not None:
            earlier_at, earlier_division = sighting.moved_from
            deltas[(china_day(earlier_at), earlier_division, "subjects_registered")] -= 1
        if sighting.first or sighting.moved_from is not None:
            deltas[(china_day(at), division, "subjects_registered")] += 1
    for held in store.take_held_counts(latest):
        division = latest[held.subject_id].division_code
        if held.division_code != division:
            deltas[(held.day, held.division_code, held.metric)] -= held.count
            deltas[(held.day, division, held.metric)] += held.count
    store.add_counts(deltas)
    # A producer's name changes the origin view of its batches: their cached views expire
    # on their own (TTL) rather than being looked up and dropped here.
    return Touched()


def on_subject(event: Event, store: ProjectionStore) -> Touched:
    """subject_registered, subject_updated, subject_reviewed."""
    return _sight(store, [_subject(event.payload)], event.occurred_at)


def on_import_batch_applied(event: Event, store: ProjectionStore) -> Touched:
    subjects = event.payload.get("subjects")
    items = subjects if isinstance(subjects, list) else []
    return _sight(store, [_subject(item) for item in items if isinstance(item, dict)],
                  event.occurred_at)


# -- coding ------------------------------------------------------------------------------------

def _codes(event: Event) -> list[str]:
    codes = _texts(event.payload, "codes")
    if not codes and event.payload.get("codes_omitted"):
        # Events from before coding listed every code in parts: nothing to apply per code.
        log.warning("coding event without its codes; its codes stay as they were",
                    extra={"event_id": event.event_id, "event": event.name})
    return codes


def _issued_count(event: Event, codes: Sequence[str]) -> int:
    return len(codes) or (_int(event.payload, "code_count")
                          if event.payload.get("codes_omitted") else 0)


def _issue(event: Event, store: ProjectionStore, codes: list[str]) -> None:
    payload, at = event.payload, event.occurred_at
    subject_id = _text(payload, "subject_id")
    store.put_codes(codes, CodeFacts("ISSUED", at, _text(payload, "issuance_id"), subject_id,
                                     _text(payload, "product_batch_id")))
    day = china_day(at)
    division = _text(payload, "subject_division")
    place = _Place(subject_id, division) if division else _place(
        store, subject_id, _text(payload, "province"))
    _count(store, day, place, "codes_issued", _issued_count(event, codes))
    _active(store, place, day)


def on_codes_issued(event: Event, store: ProjectionStore) -> Touched:
    codes = _codes(event)
    _issue(event, store, codes)
    return Touched(codes=set(codes))


def on_codes_derived(event: Event, store: ProjectionStore) -> Touched:
    """New codes for mixed or repacked goods: issued like any (so counted as issued), their
    parents consumed, the lineage between them kept."""
    children = _codes(event)
    parents = _texts(event.payload, "parent_codes")
    _issue(event, store, children)
    store.put_codes(parents, CodeFacts("CONSUMED", event.occurred_at))
    store.add_lineage(parents, children)
    return Touched(codes=set(children) | set(parents))


def _move(event: Event, store: ProjectionStore, state: str, batch_id: str = "") -> list[str]:
    codes = _codes(event)
    store.put_codes(codes, CodeFacts(state, event.occurred_at, _single(event.payload,
                                     "issuance_ids"), _single(event.payload, "subject_ids"),
                                     batch_id))
    return codes


def on_codes_printed(event: Event, store: ProjectionStore) -> Touched:
    return Touched(codes=set(_move(event, store, "PRINTED")))


def on_codes_voided(event: Event, store: ProjectionStore) -> Touched:
    return Touched(codes=set(_move(event, store, "VOID")))


def on_codes_activated(event: Event, store: ProjectionStore) -> Touched:
    """Activation binds codes to goods (when several batches were bound at once, by printing
    codes of several pre-bound issuances, each code's batch came with codes_issued)."""
    codes = _move(event, store, "ACTIVE", _single(event.payload, "product_batch_ids"))
    subject_ids = _texts(event.payload, "subject_ids")
    per_subject = ({subject_ids[0]: len(codes)} if len(set(subject_ids)) == 1
                   else store.code_subjects(codes))
    divisions = _divisions(store, per_subject)
    provinces = sorted(set(_texts(event.payload, "provinces")))
    fallback = _province_division(provinces[0]) if len(provinces) == 1 else ""
    day = china_day(event.occurred_at)
    for subject_id, amount in sorted(per_subject.items()):
        division = divisions.get(subject_id)
        place = _Place(subject_id, division or fallback, division is not None)
        _count(store, day, place, "codes_activated", amount)
        _active(store, place, day)
    return Touched(codes=set(codes))


# -- flow --------------------------------------------------------------------------------------

def _certificate(payload: Mapping[str, Any]) -> str:
    given = payload.get("certificate")
    if isinstance(given, dict):
        shown = {key: given[key] for key in CERTIFICATE_FIELDS if given.get(key) is not None}
    elif payload.get("certificate_id"):  # flow payloads before the certificate came along
        shown = {"certificate_id": str(payload["certificate_id"])}
    else:
        return ""
    return json.dumps(shown, ensure_ascii=False, sort_keys=True)


def _batch(payload: Mapping[str, Any], default_created: datetime) -> BatchFacts | None:
    production_date = _date(payload, "production_date")
    batch_id = _text(payload, "batch_id")
    if not batch_id or production_date is None:
        log.warning("batch in an event without id or production date; skipped",
                    extra={"batch_id": batch_id})
        return None
    return BatchFacts(
        batch_id=batch_id, subject_id=_text(payload, "subject_id"),
        subject_division=_text(payload, "subject_division"),
        product_code=_text(payload, "product_code"),
        product_name=_text(payload, "product_name"), category=_text(payload, "category"),
        quantity=_text(payload, "quantity"), unit=_text(payload, "unit"),
        production_date=production_date, origin_division=_text(payload, "origin_division"),
        certificate=_certificate(payload),
        parent_batch_ids=tuple(_texts(payload, "parent_batch_ids")),
        created_at=_time(payload, "created_at", default_created),
    )


def on_batch_created(event: Event, store: ProjectionStore) -> Touched:
    batch = _batch(event.payload, event.occurred_at)
    if batch is None:
        return Touched()
    store.put_batch(batch)
    # Flow binds only active codes (coding activated them for this batch).
    codes = _texts(event.payload, "codes")
    store.put_codes(codes, CodeFacts("ACTIVE", event.occurred_at, batch_id=batch.batch_id))
    _active(store, _Place(batch.subject_id, batch.subject_division),
            china_day(event.occurred_at))
    return Touched(codes=set(codes), batch_ids={batch.batch_id})


def on_batch_transformed(event: Event, store: ProjectionStore) -> Touched:
    payload, at = event.payload, event.occurred_at
    output = payload.get("output")
    batch = _batch(output, at) if isinstance(output, dict) else None
    if batch is None:
        return Touched()
    store.put_batch(batch)
    inputs = payload.get("inputs")
    store.put_transformation_inputs([
        TransformationInputFacts(
            transformation_id=_text(payload, "transformation_id") or batch.batch_id,
            input_batch_id=_text(item, "batch_id"), output_batch_id=batch.batch_id,
            subject_id=_text(payload, "subject_id"), kind=_text(payload, "kind"),
            quantity=_text(item, "quantity"), unit=_text(item, "unit"), occurred_at=at)
        for item in (inputs if isinstance(inputs, list) else [])
        if isinstance(item, dict) and item.get("batch_id")
    ])
    # Derived codes start ISSUED; coding's own events say when they move on.
    codes = _texts(payload, "output_codes")
    store.put_codes(codes, CodeFacts("ISSUED", at, batch_id=batch.batch_id))
    subject_id = _text(payload, "subject_id") or batch.subject_id
    _active(store, _Place(subject_id, batch.subject_division), china_day(at))
    return Touched(codes=set(codes), batch_ids={batch.batch_id})


def on_batch_shipped(event: Event, store: ProjectionStore) -> Touched:
    payload, at = event.payload, event.occurred_at
    shipment = ShipmentFacts(
        shipment_id=_text(payload, "shipment_id"), batch_id=_text(payload, "batch_id"),
        seller_subject_id=_text(payload, "seller_subject_id"),
        buyer_subject_id=_text(payload, "buyer_subject_id"),
        seller_province=_text(payload, "seller_province"),
        buyer_province=_text(payload, "buyer_province"),
        quantity=_text(payload, "quantity"), unit=_text(payload, "unit"),
        code_count=len(_texts(payload, "codes")), ship_time=_time(payload, "ship_time", at))
    if not shipment.shipment_id:
        return Touched()
    store.put_shipment(shipment)
    day = china_day(at)
    parties = [(shipment.seller_subject_id, shipment.seller_province)]
    cross = bool(payload.get("cross_province"))
    if cross:
        parties.append((shipment.buyer_subject_id, shipment.buyer_province))
    seller, *buyer = _places(store, *parties)
    counted = [(seller, "flows")]
    if cross:
        counted += [(seller, "cross_province_out"), (buyer[0], "cross_province_in")]
    _count_ones(store, day, counted)
    _active(store, seller, day)
    return Touched()  # the origin view shows nothing of later holders


def on_batch_received(event: Event, store: ProjectionStore) -> Touched:
    payload, at = event.payload, event.occurred_at
    shipment_id, buyer_id = _text(payload, "shipment_id"), _text(payload, "buyer_subject_id")
    if not shipment_id:
        return Touched()
    store.mark_received(shipment_id, _text(payload, "batch_id"),
                        _text(payload, "seller_subject_id"), buyer_id,
                        _time(payload, "receive_time", at))
    provinces = store.shipment_provinces(shipment_id)
    _active(store, _place(store, buyer_id, provinces[1] if provinces else ""), china_day(at))
    return Touched()


def on_market_entry_checked(event: Event, store: ProjectionStore) -> Touched:
    payload, at = event.payload, event.occurred_at
    entry = MarketEntryFacts(
        entry_id=_text(payload, "entry_id"),
        market_subject_id=_text(payload, "market_subject_id"),
        market_province=_text(payload, "market_province"),
        batch_id=_text(payload, "batch_id"), code=_text(payload, "code"),
        admitted=bool(payload.get("admitted")), refusal=_text(payload, "refusal"),
        check_time=_time(payload, "check_time", at))
    if not entry.entry_id:
        return Touched()
    store.put_market_entry(entry)
    day = china_day(at)
    market = _place(store, entry.market_subject_id, entry.market_province)
    _count_ones(store, day, [(market, "market_entries")] + (
        [] if entry.admitted else [(market, "market_refusals")]))
    _active(store, market, day)
    return Touched()


def on_internal_trace_recorded(event: Event, store: ProjectionStore) -> Touched:
    """Production-process records: each batch's flags as flow recomputed them, and its
    inspections (a record without `result` is counted neither passed nor failed)."""
    payload, at = event.payload, event.occurred_at
    records = payload.get("records")
    flags = payload.get("flags")
    flags = flags if isinstance(flags, dict) else {}
    tallies: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"passed": 0, "failed": 0, "last": None, "result": ""})
    for record in records if isinstance(records, list) else []:
        if not isinstance(record, dict) or not record.get("batch_id"):
            continue
        tally = tallies[str(record["batch_id"])]
        result = record.get("result")
        if record.get("activity") != "INSPECTION" or not isinstance(result, dict):
            continue
        passed = bool(result.get("passed"))
        tally["passed" if passed else "failed"] += 1
        when = _time(record, "occur_time", at)
        if tally["last"] is None or when >= tally["last"]:
            summary = _text(result, "summary")
            tally["last"] = when
            tally["result"] = ("PASSED" if passed else "FAILED") + (
                f": {summary}" if summary else "")
    batch_ids = sorted(set(tallies) | {str(batch_id) for batch_id in flags})
    store.put_traces([TraceFacts(
        batch_id=batch_id,
        flags=(tuple(str(flag) for flag in flags[batch_id])
               if isinstance(flags.get(batch_id), list) else None),
        at=at, passed=tallies[batch_id]["passed"], failed=tallies[batch_id]["failed"],
        last_inspection_at=tallies[batch_id]["last"],
        last_inspection_result=tallies[batch_id]["result"],
    ) for batch_id in batch_ids])
    return Touched(batch_ids=set(batch_ids))


PROJECTIONS: dict[tuple[str, str], Projection] = {
    ("registry", "subject_registered"): on_subject,
    ("registry", "subject_updated"): on_subject,
    ("registry", "subject_reviewed"): on_subject,
    ("registry", "import_batch_applied"): on_import_batch_applied,
    ("coding", "codes_issued"): on_codes_issued,
    ("coding", "codes_printed"): on_codes_printed,
    ("coding", "codes_activated"): on_codes_activated,
    ("coding", "codes_voided"): on_codes_voided,
    ("coding", "codes_derived"): on_codes_derived,
    ("flow", "batch_created"): on_batch_created,
    ("flow", "batch_shipped"): on_batch_shipped,
    ("flow", "batch_received"): on_batch_received,
    ("flow", "market_entry_checked"): on_market_entry_checked,
    ("flow", "batch_transformed"): on_batch_transformed,
    ("flow", "internal_trace_recorded"): on_internal_trace_recorded,
}
# In the order their facts build on each other (subjects, their codes, goods with the codes):
# a rebuild replaying them so leaves the fewest facts waiting for others.
SOURCES = ("registry", "coding", "flow")
assert set(SOURCES) == {source for source, _ in PROJECTIONS}


def project(event: Event, store: ProjectionStore) -> Touched:
    """Applies one event to the read model (nothing for an event no projection wants)."""
    projection = PROJECTIONS.get((event.source, event.name))
    return projection(event, store) if projection is not None else Touched()


def invalidate(cache: OriginCache, touched: Touched) -> None:
    """Drops the cached origin views of what an event changed (after its commit: a reader
    refilling the cache between would otherwise put the old view back)."""
    if touched:
        cache.invalidate(sorted(touched.codes), sorted(touched.batch_ids))


class ProjectionHandler:
    """A subscription's handler: the projection inside the inbox's transaction, then the lag
    observed and the touched origin views dropped.

    A failed attempt (a deadlock between handlers bumping the same counters, a dropped
    connection) left nothing behind, so it is tried again a few times: a nameko worker acks
    an event whose handler raised, and the read model would miss it until a rebuild."""

    def __init__(self, uow_factory: Callable[[], ProjectionUnitOfWork], cache: OriginCache,
                 clock: Clock = utc_now, retry_delays: Sequence[float] = RETRY_DELAYS,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._uow_factory = uow_factory
        self._cache = cache
        self._clock = clock
        self._retry_delays = tuple(retry_delays)
        self._sleep = sleep

    def __call__(self, event: Event) -> None:
        for delay in self._retry_delays:
            try:
                return self._handle(event)
            except Exception:
                log.warning("projecting an event failed; trying again", exc_info=True,
                            extra={"event_id": event.event_id, "event": event.routing_key})
                self._sleep(delay)
        return self._handle(event)

    def _handle(self, event: Event) -> None:
        applied: list[Touched] = []

        def handle(event: Event, uow: ProjectionUnitOfWork) -> None:
            applied.append(project(event, uow.projections))

        IdempotentHandler(CONSUMER, handle, self._uow_factory)(event)
        if not applied:  # a duplicate: nothing changed
            return
        lag = (self._clock() - event.occurred_at).total_seconds()
        metrics.read_model_lag_seconds.labels(event.source).observe(max(lag, 0.0))
        invalidate(self._cache, applied[0])


def subscriptions(uow_factory: Callable[[], ProjectionUnitOfWork], cache: OriginCache,
                  clock: Clock = utc_now) -> list[Subscription]:
    """The query service's subscriptions: every source event the read model is built from."""
    handler = ProjectionHandler(uow_factory, cache, clock)
    return [Subscription(CONSUMER, source, name, handler) for source, name in PROJECTIONS]
