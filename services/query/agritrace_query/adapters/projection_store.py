"""The read model's writes in SQL: upserts (INSERT ... ON CONFLICT) on PostgreSQL and SQLite,
written so that events applied in any order end in the same rows, and a repeated event
changes nothing (counters aside, which the inbox guards)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from agritrace_kernel.db import as_utc, matching
from agritrace_kernel.events.store import inbox
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

Upsert = postgresql.Insert | sqlite.Insert


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


class SqlProjectionStore:
    """ProjectionStore on a SQLAlchemy session (the unit of work's transaction)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._postgres = session.get_bind().dialect.name == "postgresql"

    def _insert(self, table: sa.Table) -> Upsert:
        return postgresql.insert(table) if self._postgres else sqlite.insert(table)

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
            self._insert(table).on_conflict_do_nothing(index_elements=["subject_id"])
            .returning(table.c.subject_id),
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
        table = orm.subjects
        found: dict[str, str] = {}
        for condition in matching(self._session, table.c.subject_id,
                                  sorted(set(subject_ids) - {""})):
            found.update(self._session.execute(
                sa.select(table.c.subject_id, table.c.division_code).where(condition)
            ).all())
        return found

    # -- codes --------------------------------------------------------------------------------

    def put_codes(self, codes: Sequence[str], facts: CodeFacts) -> None:
        # Once each (a statement may touch a row only once), in one order for every event, so
        # concurrent handlers lock shared codes in the same order instead of deadlocking.
        unique = sorted(set(codes))
        if not unique:
            return
        table = orm.codes
        if self._postgres:
            given = sa.func.unnest(sa.literal(unique, postgresql.ARRAY(sa.String()))) \
                .table_valued("value").render_derived(name="given")
        else:
            given = sa.func.json_each(json.dumps(unique)).table_valued("value")
        code = given.c.value
        # WHERE: SQLite parses INSERT ... SELECT ... ON CONFLICT only with it (its docs).
        rows = sa.select(
            code, sa.literal(facts.issuance_id), sa.func.substr(code, 1, 2),
            sa.literal(facts.subject_id), sa.literal(facts.state), sa.literal(facts.batch_id),
            sa.literal(_utc(facts.at), orm.TZ),
        ).where(sa.true())
        statement = self._insert(table).from_select(
            ["code", "issuance_id", "province", "subject_id", "state", "batch_id",
             "updated_at"], rows)
        new = statement.excluded
        further = _state_rank(new.state) > _state_rank(table.c.state)
        # The time of a state is when it was first reported, whichever event came first.
        as_early = sa.and_(new.state == table.c.state, new.updated_at < table.c.updated_at)
        self._session.execute(statement.on_conflict_do_update(index_elements=["code"], set_={
            "issuance_id": _known_or(new.issuance_id, table.c.issuance_id),
            "subject_id": _known_or(new.subject_id, table.c.subject_id),
            "batch_id": _known_or(new.batch_id, table.c.batch_id),
            "state": sa.case((further, new.state), else_=table.c.state),
            "updated_at": sa.case((sa.or_(further, as_early), new.updated_at),
                                  else_=table.c.updated_at),
        }))

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
            self._insert(orm.code_lineage).on_conflict_do_nothing(),
            [{"parent_code": parent, "child_code": child} for parent, child in sorted(pairs)],
        )

    # -- batches ------------------------------------------------------------------------------

    def put_batch(self, batch: BatchFacts) -> None:
        table = orm.batches
        row = {
            "batch_id": batch.batch_id, "subject_id": batch.subject_id,
            "subject_division": batch.subject_division, "product_code": batch.product_code,
            "product_name": batch.product_name, "category": batch.category,
            "quantity": batch.quantity, "unit": batch.unit,
            "production_date": batch.production_date,
            "origin_division": batch.origin_division, "certificate": batch.certificate,
            "parent_batch_ids": ",".join(batch.parent_batch_ids),
            "created_at": _utc(batch.created_at),
        }
        statement = self._insert(table).values(**row)
        new = statement.excluded
        described: dict[str, sa.ColumnElement[Any]] = {
            name: new[name] for name in row if name != "batch_id"}
        # An event without the certificate (older flow payloads) keeps the one stored.
        described["certificate"] = _known_or(new.certificate, table.c.certificate)
        self._session.execute(statement.on_conflict_do_update(index_elements=["batch_id"],
                                                      set_=described))

    def put_traces(self, traces: Sequence[TraceFacts]) -> None:
        if not traces:
            return
        table = orm.batches
        statement = self._insert(table)
        new = statement.excluded
        flags_newer = _newer(new.flags_at, table.c.flags_at)
        inspection_newer = _newer(new.last_inspection_at, table.c.last_inspection_at)
        self._session.execute(statement.on_conflict_do_update(index_elements=["batch_id"], set_={
            "flags": sa.case((flags_newer, new.flags), else_=table.c.flags),
            "flags_at": sa.case((flags_newer, new.flags_at), else_=table.c.flags_at),
            "inspections_passed": table.c.inspections_passed + new.inspections_passed,
            "inspections_failed": table.c.inspections_failed + new.inspections_failed,
            "last_inspection_result": sa.case((inspection_newer, new.last_inspection_result),
                                              else_=table.c.last_inspection_result),
            "last_inspection_at": sa.case((inspection_newer, new.last_inspection_at),
                                          else_=table.c.last_inspection_at),
        }), [{
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
        table = orm.shipments
        row = {
            "shipment_id": shipment.shipment_id, "batch_id": shipment.batch_id,
            "seller_subject_id": shipment.seller_subject_id,
            "buyer_subject_id": shipment.buyer_subject_id,
            "seller_province": shipment.seller_province,
            "buyer_province": shipment.buyer_province, "quantity": shipment.quantity,
            "unit": shipment.unit, "code_count": shipment.code_count,
            "ship_time": _utc(shipment.ship_time),
        }
        statement = self._insert(table).values(**row)
        self._session.execute(statement.on_conflict_do_update(
            index_elements=["shipment_id"],
            set_={name: statement.excluded[name] for name in row if name != "shipment_id"}))

    def mark_received(self, shipment_id: str, batch_id: str, seller_subject_id: str,
                      buyer_subject_id: str, received_at: datetime) -> None:
        table = orm.shipments
        statement = self._insert(table).values(
            shipment_id=shipment_id, batch_id=batch_id, seller_subject_id=seller_subject_id,
            buyer_subject_id=buyer_subject_id, received_at=_utc(received_at))
        self._session.execute(statement.on_conflict_do_update(
            index_elements=["shipment_id"],
            set_={"received_at": statement.excluded.received_at}))

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
        self._session.execute(self._insert(orm.transformation_inputs).on_conflict_do_nothing(), [{
            "transformation_id": item.transformation_id,
            "input_batch_id": item.input_batch_id, "output_batch_id": item.output_batch_id,
            "subject_id": item.subject_id, "kind": item.kind, "quantity": item.quantity,
            "unit": item.unit, "occurred_at": _utc(item.occurred_at),
        } for item in inputs])

    def put_market_entry(self, entry: MarketEntryFacts) -> None:
        self._session.execute(self._insert(orm.market_entries).values(
            entry_id=entry.entry_id, market_subject_id=entry.market_subject_id,
            market_province=entry.market_province, batch_id=entry.batch_id, code=entry.code,
            admitted=entry.admitted, refusal=entry.refusal, check_time=_utc(entry.check_time),
        ).on_conflict_do_nothing())

    # -- statistics ---------------------------------------------------------------------------

    def add_counts(self, deltas: Mapping[tuple[date, str, str], int]) -> None:
        # One statement, rows in key order: concurrent handlers lock shared rows alike.
        changes = [(key, amount) for key, amount in sorted(deltas.items()) if amount]
        if not changes:
            return
        table = orm.daily_counts
        statement = self._insert(table).values([
            {"day": day, "division_code": division_code, "metric": metric, "count": amount}
            for (day, division_code, metric), amount in changes])
        self._session.execute(statement.on_conflict_do_update(
            index_elements=["day", "division_code", "metric"],
            set_={"count": table.c.count + statement.excluded["count"]}))
        lowered = [sa.and_(table.c.day == day, table.c.division_code == division_code,
                           table.c.metric == metric)
                   for (day, division_code, metric), amount in changes if amount < 0]
        if lowered:  # a count moved elsewhere leaves no zero behind
            self._session.execute(table.delete().where(table.c.count == 0, sa.or_(*lowered)))

    def hold_count(self, held: HeldCount) -> None:
        table = orm.held_counts
        statement = self._insert(table).values(
            subject_id=held.subject_id, day=held.day, metric=held.metric,
            division_code=held.division_code, count=held.count)
        self._session.execute(statement.on_conflict_do_update(
            index_elements=["subject_id", "day", "metric", "division_code"],
            set_={"count": table.c.count + statement.excluded["count"]}))

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
        self._session.execute(self._insert(orm.subject_activity).values(
            subject_id=subject_id, day=day, division_code=division_code,
        ).on_conflict_do_nothing())

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
        table = orm.replay_positions
        row = {"source": position.source, "position": position.position,
               "page_token": position.page_token, "done": position.done,
               "updated_at": _utc(at)}
        statement = self._insert(table).values(**row)
        self._session.execute(statement.on_conflict_do_update(
            index_elements=["source"],
            set_={name: statement.excluded[name] for name in row if name != "source"}))
