"""Baseline: PostgreSQL COPY of the subject rows an import creates, straight from Python.

The rows are the registry's own `subjects` rows for the generated data (same columns, same
values and widths: keyed digest, AES-GCM sealed ID and phone numbers, masks, name key, a
national subject id), built before timing. They are written with psycopg3 `cursor.copy` and
`write_row`, as the registry's bulk insert does, into a table created `LIKE` the registry's
table: without indexes (the baseline), and once more with all of its indexes and constraints.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from agritrace.registry.v1 import registry_pb2 as pb
from agritrace_registry.adapters import orm
from agritrace_registry.adapters.pii import AesGcmProtector
from agritrace_registry.domain import identifiers
from agritrace_registry.domain.model import name_key
from benchmarks.data import Record

COLUMNS: tuple[str, ...] = tuple(orm.subjects.columns.keys())


@dataclass(frozen=True)
class CopyResult:
    label: str
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def subject_rows(originals: list[Record], pii_key_b64: str) -> list[tuple[Any, ...]]:
    """The `subjects` rows the registry stores for these (valid, first-seen) records."""
    protector = AesGcmProtector(base64.b64decode(pii_key_b64))
    now = datetime.now(UTC)
    rows: list[tuple[Any, ...]] = []
    for record in originals:
        kind = pb.SubjectKind.Name(record.kind).removeprefix("SUBJECT_KIND_")
        credit = record.credit_code or None
        check_ok = credit is None or identifiers.credit_code_check_char(credit[:17]) == credit[17]
        resident = record.resident_id or None
        phone = record.contact_phone or None
        values = {
            "subject_id": identifiers.new_subject_id(record.division_code[:2]),
            "kind": kind,
            "name": record.name,
            "name_key": name_key(record.name),
            "division_code": record.division_code,
            "credit_code": credit,
            "resident_id_digest": protector.digest(resident) if resident else None,
            "resident_id_sealed": protector.seal(resident) if resident else None,
            "resident_id_masked": identifiers.mask_resident_id(resident) if resident else "",
            "address": record.address,
            "legal_representative": record.legal_representative,
            "contact_phone_sealed": protector.seal(phone) if phone else None,
            "contact_phone_masked": identifiers.mask_phone(phone) if phone else "",
            "status": "PENDING_REVIEW",
            "status_reason": "",
            "review_flags": "" if check_ok else "CREDIT_CODE_CHECK_FAILED",
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        rows.append(tuple(values[column] for column in COLUMNS))
    return rows


def timed_copy(conninfo: str, rows: list[tuple[Any, ...]], *, with_indexes: bool,
               schema: str = "registry") -> CopyResult:
    """COPY `rows` into a fresh table shaped like `<schema>.subjects`; times COPY + commit."""
    table = "bench_copy_indexed" if with_indexes else "bench_copy_plain"
    like = "INCLUDING ALL" if with_indexes else "INCLUDING DEFAULTS"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS public.{table}")
        conn.execute(f"CREATE TABLE public.{table} (LIKE {schema}.subjects {like})")
        conn.execute("CHECKPOINT")  # start both variants from the same clean state
        statement = f"COPY public.{table} ({', '.join(COLUMNS)}) FROM STDIN"
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
        seconds = time.perf_counter() - started
        conn.execute(f"DROP TABLE public.{table}")
    label = "COPY -> table LIKE subjects, all indexes" if with_indexes \
        else "COPY -> plain table LIKE subjects (no indexes)"
    return CopyResult(label, len(rows), seconds)
