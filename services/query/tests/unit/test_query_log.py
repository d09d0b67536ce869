"""The query log: the hash chain, what verification reports for tampered, removed and
inserted entries, and the background writer (batches, order, flush, drain on stop, retry
after a failed write)."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from agritrace_query.adapters import orm
from agritrace_query.adapters.query_log_writer import QueryLogWriter
from agritrace_query.adapters.query_unit_of_work import QueryUnitOfWork, log_units_of_work
from agritrace_query.domain.query_log import (
    GENESIS,
    Outcome,
    QueryRecord,
    canonical,
    chain,
    hash_entry,
    verify,
)
from agritrace_testing.fakes import load_beside

side = load_beside(__file__, "read_side.py", "agritrace_query_unit_read_side")
T = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def record(n: int, **changes: Any) -> QueryRecord:
    base = QueryRecord(logged_at=T + timedelta(seconds=n), asker=f"anon:{n:016x}",
                       role="CONSUMER", asker_jurisdiction="", rpc="GetOriginInfo",
                       target="33K7MXH2TA9WPRC6", target_division="330106",
                       scope="ORIGIN_ONLY", outcome="OK", place="330106")
    return dataclasses.replace(base, **changes)


# -- the chain (pure) --------------------------------------------------------------------------


def test_entries_chain_from_64_zeros() -> None:
    entries = chain([record(1), record(2), record(3)], 0, GENESIS)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == GENESIS
    assert entries[1].prev_hash == entries[0].entry_hash
    assert entries[0].entry_hash == hash_entry(GENESIS, 1, record(1))
    assert verify(entries, 1, 3, None).ok


def test_canonical_form_is_sorted_compact_utc_json() -> None:
    text = canonical(7, record(1, target="杭州"))
    assert text.startswith('{"asker":"anon:0000000000000001","asker_jurisdiction":""')
    assert '"logged_at":"2024-05-01T08:00:01.000000+00:00"' in text
    assert '"seq":7' in text and "杭州" in text and " " not in text.replace("杭州", "")
    local = dataclasses.replace(record(1), logged_at=(T + timedelta(seconds=1)).astimezone())
    assert canonical(7, local) == canonical(7, record(1))


def test_the_hash_of_an_entry_is_stable_across_releases() -> None:
    """Chains written by earlier releases must still verify: the canonical form and hash of
    a known entry are pinned."""
    assert canonical(1, record(1)) == (
        '{"asker":"anon:0000000000000001","asker_jurisdiction":"",'
        '"logged_at":"2024-05-01T08:00:01.000000+00:00","outcome":"OK","place":"330106",'
        '"role":"CONSUMER","rpc":"GetOriginInfo","scope":"ORIGIN_ONLY","seq":1,'
        '"target":"33K7MXH2TA9WPRC6","target_division":"330106"}')
    assert hash_entry(GENESIS, 1, record(1, outcome=Outcome.OK)) == (
        "de141bbef554b71438a9b9ae96128ed21a9cb00120e00e468dbdd2b5b355071d")


@pytest.mark.parametrize("text", ['say "hi"', "back\\slash", "tab\tnew\nline\x01", "\u2028",
                                  "杭州 🍵", ""])
def test_the_canonical_form_is_json_dumps_of_the_sorted_fields(text: str) -> None:
    """The template that builds it encodes every text as json.dumps would."""
    changed = record(3, asker=text, target=text, place=text)
    values = {field.name: getattr(changed, field.name)
              for field in dataclasses.fields(QueryRecord)}
    values.update(logged_at="2024-05-01T08:00:03.000000+00:00", seq=12)
    assert canonical(12, changed) == json.dumps(values, sort_keys=True, separators=(",", ":"),
                                                ensure_ascii=False)


def test_a_changed_field_breaks_its_own_entry() -> None:
    entries = chain([record(n) for n in range(1, 6)], 0, GENESIS)
    entries[2] = dataclasses.replace(entries[2], record=record(3, outcome="DENIED"))
    result = verify(entries, 1, 5, None)
    assert (result.ok, result.first_broken_seq, result.entries_checked) == (False, 3, 3)
    assert "hash" in result.problem


def test_a_recomputed_entry_breaks_the_next_link() -> None:
    entries = chain([record(n) for n in range(1, 6)], 0, GENESIS)
    forged = record(3, asker="someone-else")
    entries[2] = dataclasses.replace(entries[2], record=forged,
                                     entry_hash=hash_entry(entries[2].prev_hash, 3, forged))
    result = verify(entries, 1, 5, None)
    assert (result.ok, result.first_broken_seq) == (False, 4)


def test_a_missing_entry_is_a_break() -> None:
    entries = chain([record(n) for n in range(1, 6)], 0, GENESIS)
    del entries[1]
    result = verify(entries, 1, 5, None)
    assert (result.ok, result.first_broken_seq, result.entries_checked) == (False, 2, 1)
    tail_cut = chain([record(n) for n in range(1, 6)], 0, GENESIS)[:3]
    assert verify(tail_cut, 1, 5, None).first_broken_seq == 4


def test_a_range_links_to_the_entry_before_it() -> None:
    entries = chain([record(n) for n in range(1, 6)], 0, GENESIS)
    assert verify(entries[2:], 3, 5, entries[1]).ok
    assert not verify(entries[2:], 3, 5, entries[0]).ok
    assert verify(entries[2:], 3, 5, None).first_broken_seq == 2


# -- the store and the writer on SQLite ---------------------------------------------------------


model = side.model  # each test on SQLite and on PostgreSQL


def stored(model: Any) -> list[Any]:
    with QueryUnitOfWork(model.readers) as uow:
        return uow.log.entries(1, 10**9)


def units(model: Any) -> Any:
    """The writer's units of work as the service wires them (libpq on PostgreSQL)."""
    return log_units_of_work(model.sessions, model.scan_engine)


def test_writer_batches_in_order_and_flush_writes_everything(model: Any) -> None:
    writer = QueryLogWriter(units(model), batch_size=3)
    for n in range(1, 8):
        writer.append(record(n))
    assert writer.pending == 7 and stored(model) == []  # nothing written on append
    assert writer.flush() == 7
    entries = stored(model)
    assert [e.record for e in entries] == [record(n) for n in range(1, 8)]
    assert verify(entries, 1, 7, None).ok


def test_writer_thread_flushes_within_its_interval_and_drains_on_stop(model: Any) -> None:
    writer = QueryLogWriter(units(model), interval=0.02)
    writer.start()
    writer.append(record(1))
    deadline = time.monotonic() + 5
    while not stored(model) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(stored(model)) == 1
    for n in range(2, 1201):
        writer.append(record(n))
    writer.stop()
    entries = stored(model)
    assert len(entries) == 1200 and writer.pending == 0
    assert verify(entries, 1, 1200, None).ok


class ArrivingDuringWrites:
    """A unit of work factory under which `arrivals` more calls are logged while each of the
    first `busy_batches` batches is written, as on a busy server."""

    def __init__(self, model: Any, arrivals: int, busy_batches: int = 10**9) -> None:
        self.model, self.arrivals, self.busy_batches = model, arrivals, busy_batches
        self.writer: QueryLogWriter | None = None
        self.batches = 0
        self.next = 1000

    def __call__(self) -> QueryUnitOfWork:
        assert self.writer is not None
        self.batches += 1
        for _ in range(self.arrivals if self.batches <= self.busy_batches else 0):
            self.writer.append(record(self.next))
            self.next += 1
        return QueryUnitOfWork(self.model.sessions)


def test_a_tick_writes_what_was_due_and_leaves_arrivals_for_the_next(model: Any) -> None:
    arriving = ArrivingDuringWrites(model, arrivals=2)
    writer = arriving.writer = QueryLogWriter(arriving, batch_size=10)
    for n in range(1, 6):
        writer.append(record(n))
    # 5 due: one batch, during which 2 more calls arrive; they wait for the next tick (the
    # writer used to go on until the queue was empty, a transaction per handful of calls).
    assert writer.write_due() == 5
    assert arriving.batches == 1 and writer.pending == 2
    assert [e.record for e in stored(model)] == [record(n) for n in range(1, 6)]


def test_a_tick_keeps_writing_while_full_batches_pile_up(model: Any) -> None:
    arriving = ArrivingDuringWrites(model, arrivals=4, busy_batches=2)
    writer = arriving.writer = QueryLogWriter(arriving, batch_size=3)
    writer.append(record(1))
    # 1 due; its batch brings 4 (a full batch: written, bringing 4 more: 3 + 3 written), then
    # the calls stop: 2 left, fewer than a batch, wait for the next tick.
    assert writer.write_due() == 7
    assert arriving.batches == 3 and writer.pending == 2
    assert verify(stored(model), 1, 7, None).ok


def test_written_text_comes_back_as_given_and_a_killed_connection_is_replaced(
        model: Any) -> None:
    writer = QueryLogWriter(units(model))
    odd = record(1, target="a\tb\nc\\d\re 中", place="ip:2001:db8::/48")  # COPY's escapes
    writer.append(odd)
    assert writer.flush() == 1
    if model.scan_engine.dialect.name == "postgresql":
        connection = model.scan_engine.raw_connection()  # the writer's, back in the pool
        backend = connection.driver_connection.info.backend_pid
        connection.close()
        with psycopg.connect(side.POSTGRES, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        writer.append(record(2))
        with pytest.raises(psycopg.Error):
            writer.flush()  # found dead: the record waits, the connection is discarded
    else:
        writer.append(record(2))
    assert writer.flush() == 1
    entries = stored(model)
    assert [e.record for e in entries] == [odd, record(2)]
    assert verify(entries, 1, 2, None).ok


def test_concurrent_writers_chain_one_log(model: Any) -> None:
    writers = [QueryLogWriter(units(model), batch_size=7)
               for _ in range(3)]

    def work(writer: QueryLogWriter, offset: int) -> None:
        for n in range(50):
            writer.append(record(offset + n))
            if n % 10 == 0:
                writer.flush()
        writer.flush()

    threads = [threading.Thread(target=work, args=(w, i * 100)) for i, w in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = stored(model)
    assert len(entries) == 150
    assert verify(entries, 1, 150, None).ok


class FailingOnce:
    """A unit of work factory whose first unit of work fails to commit."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.failed = False

    def __call__(self) -> QueryUnitOfWork:
        uow = QueryUnitOfWork(self.model.sessions)
        if not self.failed:
            self.failed = True

            def broken() -> None:
                raise sa.exc.OperationalError("COMMIT", {}, Exception("database is down"))

            uow.commit = broken  # type: ignore[method-assign]
        return uow


def test_a_failed_write_keeps_the_records_in_order(model: Any) -> None:
    writer = QueryLogWriter(FailingOnce(model))
    writer.append(record(1))
    writer.append(record(2))
    with pytest.raises(sa.exc.OperationalError):
        writer.flush()
    assert writer.pending == 2 and stored(model) == []
    writer.append(record(3))
    writer.flush()
    assert [e.record for e in stored(model)] == [record(1), record(2), record(3)]


def test_stop_never_raises_even_when_the_database_is_down(model: Any) -> None:
    writer = QueryLogWriter(FailingOnce(model), interval=60)
    writer.start()
    writer.append(record(1))
    writer.stop()  # its final write fails: logged, not raised
    assert writer.pending == 1 and stored(model) == []
    writer.flush()
    assert [e.record for e in stored(model)] == [record(1)]


def test_tampering_with_a_stored_entry_is_detected(model: Any) -> None:
    wiring = side.wire(model, real_log=True)
    admin = side.caller(side.ADMIN)
    for _ in range(5):
        wiring.service.get_origin_info(side.caller(None, "330106"), "33K7MXH2TA9WPRC6")
    wiring.sink.flush()
    assert wiring.service.verify_query_log(admin, 0, 0).ok
    wiring.sink.flush()  # the verification's own entry
    with model.engine.begin() as connection:
        connection.execute(orm.query_log.update().where(orm.query_log.c.seq == 3)
                           .values(asker="anon:0000000000000000"))
    result = wiring.service.verify_query_log(admin, 0, 0)
    assert (result.ok, result.first_broken_seq, result.entries_checked) == (False, 3, 3)
    assert wiring.service.verify_query_log(admin, 4, 0).ok
    with model.engine.begin() as connection:
        connection.execute(orm.query_log.delete().where(orm.query_log.c.seq == 5))
    result = wiring.service.verify_query_log(admin, 4, 6)
    assert (result.ok, result.first_broken_seq) == (False, 5)
