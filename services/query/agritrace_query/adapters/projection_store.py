"""The read model's writes in SQL: upserts (INSERT ... ON CONFLICT) on PostgreSQL and SQLite,
written so that events applied in any order end in the same rows, and a repeated event
changes nothing (counters aside, which the inbox guards)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from agritrace_kernel.db import KeyedSelect, as_utc, matching
from agritrace_kernel.events.store import Upsert, inbox, upsert_insert
from agritrace_query.adapters import orm
from agritrace_query.service_layer.projection_ports import (
    CODE_STATES,
    BatchFacts,
    CodeFacts,
    HeldCount,
    MarketEntryFacts,
    ReplayPosition,
    ShipmentFacts,
    Sighting,
    SubjectFacts,
    TraceFacts,
    TransformationInputFacts,
)

# Above this many (parent, child) pairs a derivation keeps a spanning set of its lineage
# instead of every pair: each parent to the first child and the first parent to each child.
# All children of a derivation go into one batch, so batch-level tracing loses nothing.
LINEAGE_PAIRS_LIMIT = 100_000


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _newer(excluded: sa.ColumnElement[Any], stored: sa.ColumnElement[Any]
           ) -> sa.ColumnElement[bool]:
    """The incoming timestamp is set and not older than the stored one (NULL: none yet)."""
    return sa.and_(excluded.is_not(None), sa.or_(stored.is_(None), excluded >= stored))


def _known_or(excluded: sa.ColumnElement[str], stored: sa.ColumnElement[str]
              ) -> sa.ColumnElement[str]:
    """What the event says, unless it says nothing ("")."""
    return sa.case((excluded != "", excluded), else_=stored)


def _state_rank(state: sa.ColumnElement[str]) -> sa.ColumnElement[int]:
    return sa.case({name: rank for rank, name in enumerate(CODE_STATES)}, value=state,
                   else_=-1)


_SHIPMENT_COLUMNS = ("batch_id", "seller_subject_id", "buyer_subject_id", "seller_province",
                     "buyer_province", "quantity", "unit", "code_count", "ship_time")
_BATCH_COLUMNS = ("subject_id", "subject_division", "product_code", "product_name", "category",
                  "quantity", "unit", "production_date", "origin_division", "certificate",
                  "parent_batch_ids", "created_at")
_REPLAY_COLUMNS = ("position", "page_token", "done", "updated_at")


class _Upserts:
    """The store's INSERT ... ON CONFLICT statements, built once per dialect and run with each
    event's values as parameters: building one per event cost a worker more CPU than running
    it (SQLAlchemy makes `excluded`'s columns and the statement's cache key anew each time)."""

    def __init__(self, dialect: str) -> None:
        postgres = dialect == "postgresql"
        insert = upsert_insert(dialect)

        def updating(table: sa.Table, key: list[str],
                     changes: Callable[[Any], Mapping[str, sa.ColumnElement[Any]]]) -> Upsert:
            statement = insert(table)
            return statement.on_conflict_do_update(index_elements=key,
                                                   set_=changes(statement.excluded))

        def adding_count(table: sa.Table, key: list[str]) -> Upsert:
            return updating(table, key, lambda new: {"count": table.c.count + new["count"]})

        subjects = orm.subjects
        self.new_subjects = insert(subjects).on_conflict_do_nothing(
            index_elements=["subject_id"]).returning(subjects.c.subject_id)
        self.codes = self._codes(insert(orm.codes), postgres)
        self.lineage = insert(orm.code_lineage).on_conflict_do_nothing()
        batches = orm.batches
        # An event without the certificate (older flow payloads) keeps the one stored.
        self.batch = updating(batches, ["batch_id"], lambda new: {
            name: new[name] for name in _BATCH_COLUMNS} | {
            "certificate": _known_or(new.certificate, batches.c.certificate)})
        self.traces = updating(batches, ["batch_id"], self._trace_changes)
        shipments = orm.shipments
        self.shipment = updating(shipments, ["shipment_id"], lambda new: {
            name: new[name] for name in _SHIPMENT_COLUMNS})
        self.receipt = updating(shipments, ["shipment_id"],
                                lambda new: {"received_at": new.received_at})
        self.transformation_inputs = insert(orm.transformation_inputs).on_conflict_do_nothing()
        self.market_entry = insert(orm.market_entries).on_conflict_do_nothing()
        self.daily_counts = adding_count(orm.daily_counts, ["day", "division_code", "metric"])
        self.held_count = adding_count(
            orm.held_counts, ["subject_id", "day", "metric", "division_code"])
        self.activity = insert(orm.subject_activity).on_conflict_do_nothing()
        self.replay_position = updating(orm.replay_positions, ["source"], lambda new: {
            name: new[name] for name in _REPLAY_COLUMNS})

    @staticmethod
    def _codes(insert: Upsert, postgres: bool) -> Upsert:
        """Many codes in one state, given as one array (on SQLite: JSON text)."""
        table = orm.codes
        if postgres:
            given = sa.func.unnest(sa.bindparam("given_codes", type_=postgresql.ARRAY(
                sa.String()))).table_valued("value").render_derived(name="given")
        else:
            given = sa.func.json_each(sa.bindparam("given_codes", type_=sa.String())
                                      ).table_valued("value")
        code = given.c.value

        def given_text(name: str) -> sa.BindParameter[str]:
            return sa.bindparam(f"given_{name}", type_=sa.String())

        # WHERE: SQLite parses INSERT ... SELECT ... ON CONFLICT only with it (its docs).
        rows = sa.select(
            code, given_text("issuance_id"), sa.func.substr(code, 1, 2),
            given_text("subject_id"), given_text("state"), given_text("batch_id"),
            sa.bindparam("given_at", type_=orm.TZ),
        ).where(sa.true())
        statement = insert.from_select(
            ["code", "issuance_id", "province", "subject_id", "state", "batch_id",
             "updated_at"], rows)
        new = statement.excluded
        further = _state_rank(new.state) > _state_rank(table.c.state)
        # The time of a state is when it was first reported, whichever event came first.
        as_early = sa.and_(new.state == table.c.state, new.updated_at < table.c.updated_at)
        return statement.on_conflict_do_update(index_elements=["code"], set_={
            "issuance_id": _known_or(new.issuance_id, table.c.issuance_id),
            "subject_id": _known_or(new.subject_id, table.c.subject_id),
            "batch_id": _known_or(new.batch_id, table.c.batch_id),
            "state": sa.case((further, new.state), else_=table.c.state),
            "updated_at": sa.case((sa.or_(further, as_early), new.updated_at),
                                  else_=table.c.updated_at),
        })

    @staticmethod
    def _trace_changes(new: Any) -> dict[str, sa.ColumnElement[Any]]:
        table = orm.batches
        flags_newer = _newer(new.flags_at, table.c.flags_at)
        inspection_newer = _newer(new.last_inspection_at, table.c.last_inspection_at)
        return {
            "flags": sa.case((flags_newer, new.flags), else_=table.c.flags),
            "flags_at": sa.case((flags_newer, new.flags_at), else_=table.c.flags_at),
            "inspections_passed": table.c.inspections_passed + new.inspections_passed,
            "inspections_failed": table.c.inspections_failed + new.inspections_failed,
            "last_inspection_result": sa.case((inspection_newer, new.last_inspection_result),
                                              else_=table.c.last_inspection_result),
            "last_inspection_at": sa.case((inspection_newer, new.last_inspection_at),
                                          else_=table.c.last_inspection_at),
        }


@functools.cache
def _upserts(dialect: str) -> _Upserts:
    return _Upserts(dialect)


_SUBJECT_DIVISIONS = KeyedSelect(
    sa.select(orm.subjects.c.subject_id, orm.subjects.c.division_code), orm.subjects.c.subject_id)


class SqlProjectionStore:
    """ProjectionStore on a SQLAlchemy session (the unit of work's transaction)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        dialect = session.get_bind().dialect.name
        self._postgres = dialect == "postgresql"
        self._upserts = _upserts(dialect)

    # -- subjects -----------------------------------------------------------------------------

    def sight_subjects(self, subjects: Sequence[SubjectFacts],
                       seen_at: datetime) -> list[Sighting]:
        latest: dict[str, SubjectFacts] = {}
        for facts in subjects:  # one row per subject, its highest version
            known = latest.get(facts.subject_id)
            if known is None or facts.version > known.version:
                latest[facts.subject_id] = facts
        if not latest:
            return []
        seen_at = _utc(seen_at)
        table = orm.subjects
        self._lock_subjects(latest, exclusive=True)
        inserted = set(self._session.execute(
            self._upserts.new_subjects,
            [self._subject_row(facts) | {"registered_at": seen_at,
                                          "registered_division": facts.division_code}
             for facts in latest.values()],
        ).scalars())
        sightings = [Sighting(subject_id, True) for subject_id in sorted(inserted)]
        others = sorted(set(latest) - inserted)
        stored: list[tuple[str, int, datetime, str]] = []
        for condition in matching(self._session, table.c.subject_id, others):
            query = sa.select(table.c.subject_id, table.c.version, table.c.registered_at,
                              table.c.registered_division).where(condition)
            if self._postgres:  # concurrent handlers of one subject take turns from here
                query = query.with_for_update()
            stored.extend(self._session.execute(query).all())
        for subject_id, version, registered_at, registered_division in stored:
            facts = latest[subject_id]
            changes: dict[str, Any] = {}
            if facts.version > version:
                changes |= self._subject_row(facts)
            if seen_at < as_utc(registered_at):
                changes |= {"registered_at": seen_at,
                            "registered_division": facts.division_code}
                sightings.append(Sighting(subject_id, False,
                                          (as_utc(registered_at), registered_division)))
            if changes:
                self._session.execute(table.update().where(table.c.subject_id == subject_id)
                              .values(**changes))
        # Activity recorded before the subject was known (or before it moved) follows it.
        activity = orm.subject_activity
        for subject_id, division_code in self.subject_divisions(latest).items():
            self._session.execute(activity.update().where(
                activity.c.subject_id == subject_id,
                activity.c.division_code != division_code,
            ).values(division_code=division_code))
        return sightings

    @staticmethod
    def _subject_row(facts: SubjectFacts) -> dict[str, Any]:
        return {"subject_id": facts.subject_id, "kind": facts.kind, "name": facts.name,
                "division_code": facts.division_code, "province": facts.division_code[:2],
                "status": facts.status, "version": facts.version}

    def wait_for_subjects(self, subject_ids: Iterable[str]) -> None:
        self._lock_subjects(subject_ids, exclusive=False)

    def _lock_subjects(self, subject_ids: Iterable[str], *, exclusive: bool) -> None:
        """Transaction-scoped advisory locks per subject on PostgreSQL: shared by handlers that
        count for a subject, exclusive for the one storing it; taken in one order. SQLite
        runs one writing transaction at a time anyway."""
        ids = sorted(set(subject_ids) - {""})
        if not self._postgres or not ids:
            return
        lock = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        self._session.execute(sa.text(
            f"SELECT {lock}(hashtext('agritrace_query.subject'), hashtext(id)) "
            "FROM unnest(CAST(:ids AS text[])) AS id ORDER BY id"), {"ids": ids})

    def subject_divisions(self, subject_ids: Iterable[str]) -> dict[str, str]:
        return dict(_SUBJECT_DIVISIONS.rows(self._session, set(subject_ids) - {""}))

    # -- codes --------------------------------------------------------------------------------

    def put_codes(self, codes: Sequence[str], facts: CodeFacts) -> None:
        # Once each (a statement may touch a row only once), in one order for every event, so
        # concurrent handlers lock shared codes in the same order instead of deadlocking.
        unique = sorted(set(codes))
        if not unique:
            return
        self._session.execute(self._upserts.codes, {
            "given_codes": unique if self._postgres else json.dumps(unique),
            "given_issuance_id": facts.issuance_id, "given_subject_id": facts.subject_id,
            "given_state": facts.state, "given_batch_id": facts.batch_id,
            "given_at": _utc(facts.at)})

    def code_subjects(self, codes: Sequence[str]) -> dict[str, int]:
        table = orm.codes
        unique = list(dict.fromkeys(codes))
        counts: dict[str, int] = {}
        for condition in matching(self._session, table.c.code, unique):
            for subject_id, count in self._session.execute(
                sa.select(table.c.subject_id, sa.func.count()).where(condition)
                .group_by(table.c.subject_id)
            ):
                counts[subject_id] = counts.get(subject_id, 0) + int(count)
        missing = len(unique) - sum(counts.values())
        if missing:
            counts[""] = counts.get("", 0) + missing
        return counts

    def add_lineage(self, parents: Sequence[str], children: Sequence[str]) -> None:
        parents, children = list(dict.fromkeys(parents)), list(dict.fromkeys(children))
        if not parents or not children:
            return
        if len(parents) * len(children) <= LINEAGE_PAIRS_LIMIT:
            pairs = {(parent, child) for parent in parents for child in children}
        else:
            pairs = {(parent, children[0]) for parent in parents} \
                | {(parents[0], child) for child in children}
        self._session.execute(
            self._upserts.lineage,
            [{"parent_code": parent, "child_code": child} for parent, child in sorted(pairs)],
        )

    # -- batches ------------------------------------------------------------------------------

    def put_batch(self, batch: BatchFacts) -> None:
        self._session.execute(self._upserts.batch, {
            "batch_id": batch.batch_id, "subject_id": batch.subject_id,
            "subject_division": batch.subject_division, "product_code": batch.product_code,
            "product_name": batch.product_name, "category": batch.category,
            "quantity": batch.quantity, "unit": batch.unit,
            "production_date": batch.production_date,
            "origin_division": batch.origin_division, "certificate": batch.certificate,
            "parent_batch_ids": ",".join(batch.parent_batch_ids),
            "created_at": _utc(batch.created_at),
        })

    def put_traces(self, traces: Sequence[TraceFacts]) -> None:
        if not traces:
            return
        self._session.execute(self._upserts.traces, [{
            "batch_id": trace.batch_id,
            "flags": ",".join(trace.flags or ()),
            "flags_at": _utc(trace.at) if trace.flags is not None else None,
            "inspections_passed": trace.passed,
            "inspections_failed": trace.failed,
            "last_inspection_at": (_utc(trace.last_inspection_at)
                                   if trace.last_inspection_at else None),
            "last_inspection_result": trace.last_inspection_result[:500],
        } for trace in traces])

    # -- shipments, transformations, market gate ----------------------------------------------

    def put_shipment(self, shipment: ShipmentFacts) -> None:
        self._session.execute(self._upserts.shipment, {
            "shipment_id": shipment.shipment_id, "batch_id": shipment.batch_id,
            "seller_subject_id": shipment.seller_subject_id,
            "buyer_subject_id": shipment.buyer_subject_id,
            "seller_province": shipment.seller_province,
            "buyer_province": shipment.buyer_province, "quantity": shipment.quantity,
            "unit": shipment.unit, "code_count": shipment.code_count,
            "ship_time": _utc(shipment.ship_time),
        })

    def mark_received(self, shipment_id: str, batch_id: str, seller_subject_id: str,
                      buyer_subject_id: str, received_at: datetime) -> None:
        self._session.execute(self._upserts.receipt, {
            "shipment_id": shipment_id, "batch_id": batch_id,
            "seller_subject_id": seller_subject_id, "buyer_subject_id": buyer_subject_id,
            "received_at": _utc(received_at)})

    def shipment_provinces(self, shipment_id: str) -> tuple[str, str] | None:
        table = orm.shipments
        row = self._session.execute(
            sa.select(table.c.seller_province, table.c.buyer_province).where(
                table.c.shipment_id == shipment_id, table.c.ship_time.is_not(None))
        ).first()
        return (str(row[0]), str(row[1])) if row is not None else None

    def put_transformation_inputs(self, inputs: Sequence[TransformationInputFacts]) -> None:
        if not inputs:
            return
        self._session.execute(self._upserts.transformation_inputs, [{
            "transformation_id": item.transformation_id,
            "input_batch_id": item.input_batch_id, "output_batch_id": item.output_batch_id,
            "subject_id": item.subject_id, "kind": item.kind, "quantity": item.quantity,
            "unit": item.unit, "occurred_at": _utc(item.occurred_at),
        } for item in inputs])

    def put_market_entry(self, entry: MarketEntryFacts) -> None:
        self._session.execute(self._upserts.market_entry, {
            "entry_id": entry.entry_id, "market_subject_id": entry.market_subject_id,
            "market_province": entry.market_province, "batch_id": entry.batch_id,
            "code": entry.code, "admitted": entry.admitted, "refusal": entry.refusal,
            "check_time": _utc(entry.check_time)})

    # -- statistics ---------------------------------------------------------------------------

    def add_counts(self, deltas: Mapping[tuple[date, str, str], int]) -> None:
        # Rows in key order, in one batch: concurrent handlers lock shared rows alike.
        changes = [(key, amount) for key, amount in sorted(deltas.items()) if amount]
        if not changes:
            return
        table = orm.daily_counts
        self._session.execute(self._upserts.daily_counts, [
            {"day": day, "division_code": division_code, "metric": metric, "count": amount}
            for (day, division_code, metric), amount in changes])
        lowered = [sa.and_(table.c.day == day, table.c.division_code == division_code,
                           table.c.metric == metric)
                   for (day, division_code, metric), amount in changes if amount < 0]
        if lowered:  # a count moved elsewhere leaves no zero behind
            self._session.execute(table.delete().where(table.c.count == 0, sa.or_(*lowered)))

    def hold_count(self, held: HeldCount) -> None:
        self._session.execute(self._upserts.held_count, {
            "subject_id": held.subject_id, "day": held.day, "metric": held.metric,
            "division_code": held.division_code, "count": held.count})

    def take_held_counts(self, subject_ids: Iterable[str]) -> list[HeldCount]:
        table = orm.held_counts
        taken: list[HeldCount] = []
        for condition in matching(self._session, table.c.subject_id, sorted(set(subject_ids))):
            found = self._session.execute(
                table.delete().where(condition).returning(
                    table.c.subject_id, table.c.day, table.c.metric, table.c.division_code,
                    table.c.count)).all()
            taken.extend(HeldCount(str(subject_id), day, str(metric), str(division), int(n))
                         for subject_id, day, metric, division, n in found)
        return taken

    def mark_active(self, subject_id: str, day: date, division_code: str) -> None:
        self._session.execute(self._upserts.activity, {
            "subject_id": subject_id, "day": day, "division_code": division_code})

    # -- rebuild ------------------------------------------------------------------------------

    def clear(self, consumer: str) -> None:
        if self._postgres:  # millions of rows: TRUNCATE (transactional there), not DELETE
            names = ", ".join(f'"{table.name}"' for table in orm.READ_MODEL_TABLES)
            self._session.execute(sa.text(f"TRUNCATE {names}"))
        else:
            for table in orm.READ_MODEL_TABLES:
                self._session.execute(table.delete())
        self._session.execute(inbox.delete().where(inbox.c.consumer == consumer))

    def replay_positions(self) -> dict[str, ReplayPosition]:
        table = orm.replay_positions
        return {
            str(source): ReplayPosition(str(source), int(position), str(token), bool(done))
            for source, position, token, done in self._session.execute(sa.select(
                table.c.source, table.c.position, table.c.page_token, table.c.done))
        }

    def save_replay_position(self, position: ReplayPosition, at: datetime) -> None:
        self._session.execute(self._upserts.replay_position, {
            "source": position.source, "position": position.position,
            "page_token": position.page_token, "done": position.done,
            "updated_at": _utc(at)})
