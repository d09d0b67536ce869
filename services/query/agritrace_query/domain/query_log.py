"""The query log (查询记录): one entry per question asked, chained by hash so that changing,
removing or inserting an entry is detectable.

    entry_hash = sha256(prev_hash + canonical JSON of the entry's fields, seq and logged_at
                        included) as hex; the first entry's prev_hash is 64 zeros.

Canonical JSON: keys sorted, no spaces, UTF-8 (no escapes), logged_at as ISO 8601 in UTC
with microseconds. Entries are only ever appended.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum

GENESIS = "0" * 64


class Outcome(StrEnum):
    OK = "OK"
    NOT_FOUND = "NOT_FOUND"
    DENIED = "DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    FAILED = "FAILED"  # anything else that stopped the answer (e.g. a dependency down)


@dataclass(frozen=True)
class QueryRecord:
    """What a use case logs about one call; the log gives it its seq and hashes."""

    logged_at: datetime
    asker: str
    role: str
    asker_jurisdiction: str
    rpc: str
    target: str
    target_division: str
    scope: str
    outcome: str
    place: str


@dataclass(frozen=True)
class LogEntry:
    seq: int
    record: QueryRecord
    prev_hash: str
    entry_hash: str


def _iso(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="microseconds")


# The record's fields once, sorted: read with getattr rather than dataclasses.asdict, which
# deep-copies every value (most of a log entry's hashing cost; every scan writes an entry).
_RECORD_FIELDS = tuple(sorted(field.name for field in fields(QueryRecord)))
_TEXT_FIELDS = tuple(name for name in _RECORD_FIELDS if name != "logged_at")
# The canonical form as a template: the keys in sorted order, each text encoded by the C
# function json.dumps encodes a str with - json.dumps(sort_keys=True)'s output at less than
# half its cost. seq is the only number.
_KEYS = tuple(sorted((*_RECORD_FIELDS, "seq")))
_TEMPLATE = "{" + ",".join(f'"{name}":%s' for name in _KEYS) + "}"
_LOGGED_AT_AT, _SEQ_AT = _KEYS.index("logged_at"), _KEYS.index("seq")
_encode_text = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses


def canonical(seq: int, record: QueryRecord) -> str:
    texts = [getattr(record, name) for name in _TEXT_FIELDS]
    if not all(isinstance(text, str) for text in texts):  # not what the types say: be exact
        values: dict[str, object] = dict(zip(_TEXT_FIELDS, texts, strict=True))
        values.update(logged_at=_iso(record.logged_at), seq=seq)
        return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    encoded = list(map(_encode_text, texts))
    encoded.insert(_LOGGED_AT_AT, _encode_text(_iso(record.logged_at)))
    encoded.insert(_SEQ_AT, str(int(seq)))
    return _TEMPLATE % tuple(encoded)


def hash_entry(prev_hash: str, seq: int, record: QueryRecord) -> str:
    return hashlib.sha256((prev_hash + canonical(seq, record)).encode("utf-8")).hexdigest()


def chain(records: Iterable[QueryRecord], last_seq: int, last_hash: str) -> list[LogEntry]:
    """Entries for `records`, continuing a log whose newest entry is (`last_seq`,
    `last_hash`); (0, GENESIS) for an empty log."""
    entries = []
    seq, prev = last_seq, last_hash
    for record in records:
        seq += 1
        entry_hash = hash_entry(prev, seq, record)
        entries.append(LogEntry(seq, record, prev, entry_hash))
        prev = entry_hash
    return entries


@dataclass(frozen=True)
class Verification:
    ok: bool
    first_broken_seq: int
    entries_checked: int
    problem: str = ""


def verify(entries: Sequence[LogEntry], first_seq: int, last_seq: int,
           previous: LogEntry | None) -> Verification:
    """Checks entries `first_seq`..`last_seq` (given in seq order): each must be present,
    hash to its stored entry_hash and link to the entry before it (`previous`: entry
    first_seq - 1, None when first_seq is 1 or that entry is missing - then a missing
    predecessor of seq > 1 is itself a break)."""
    if first_seq > 1 and previous is None:
        return Verification(False, first_seq - 1, 0, f"entry {first_seq - 1} is missing")
    expected_prev = previous.entry_hash if previous is not None else GENESIS
    expected_seq = first_seq
    checked = 0
    for entry in entries:
        if entry.seq < first_seq or entry.seq > last_seq:
            continue
        if entry.seq != expected_seq:
            return Verification(False, expected_seq, checked, f"entry {expected_seq} is missing")
        checked += 1
        if entry.prev_hash != expected_prev:
            return Verification(False, entry.seq, checked,
                                "its link does not match the entry before it")
        if hash_entry(entry.prev_hash, entry.seq, entry.record) != entry.entry_hash:
            return Verification(False, entry.seq, checked, "its content does not match its hash")
        expected_prev = entry.entry_hash
        expected_seq += 1
    if expected_seq <= last_seq:
        return Verification(False, expected_seq, checked, f"entry {expected_seq} is missing")
    return Verification(True, 0, checked)
