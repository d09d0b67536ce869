"""A provincial platform without an API: a shared folder of CSV and XLSX files.

    <root>/inbox/      the province drops subjects*.csv|xlsx and trace-records*.csv|xlsx
                       (write elsewhere or under a name starting with "." and rename when done)
    <root>/work/       files the bridge took, renamed NNNNNN-<name> in the order it took them
    <root>/processed/  files the bridge has read to the end
    <root>/rejected/   files it cannot read, each with <name>.errors.txt saying why
    <root>/outbox/     national records for the province, one CSV file each, written atomically
    <root>/state/      the bridge's own ledger of pushed records

Files are taken in arrival order (modification time, then name) and numbered, so a file that
arrives late is read after everything before it whatever its name. A page token or cursor is
a position (file number, row) over work/ and processed/ alike: a bridge resuming from an old
checkpoint reads the same rows again, and moving files aside never loses one. A file is moved
to processed/ once a call starts beyond its end (or a subjects listing ends with it).

Column names are in docs/provincial-contract.md. Times without an offset are China time.
Error notes name rows and columns, never values: the files hold personal data.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from agritrace_bridge.contract import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_RECORD_LIMIT,
    MAX_PAGE_SIZE,
    MAX_RECORD_LIMIT,
    Health,
    NationalRecord,
    PushResult,
    Subject,
    SubjectPage,
    TokenVerification,
    TraceRecord,
    TraceRecordPage,
)
from agritrace_bridge.service_layer.ports import (
    AdapterConfig,
    NotSupported,
    PlatformRejected,
    PlatformUnavailable,
)

Kind = Literal["subjects", "trace-records"]
CHINA_TIME = timezone(timedelta(hours=8))
SUBJECT_COLUMNS = ("source_record_id", "kind", "name", "credit_code", "resident_id",
                   "division_code", "address", "legal_representative", "contact_phone",
                   "update_time")
TRACE_COLUMNS = ("record_id", "batch_id", "occur_time", "activity", "variety", "area_mu",
                 "name", "registration_number", "approval_number", "amount", "unit",
                 "pre_harvest_interval_days", "withdrawal_period_days", "heads",
                 "quarantine_certificate", "item", "passed", "result", "inspector",
                 "update_time")
OUTBOX_COLUMNS = ("record_id", "type", "occur_time", "subject_id", "payload")
_SUFFIXES = (".csv", ".xlsx")
_NUMBERED = re.compile(r"^(\d{6})-(.+)$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_TRUE = frozenset({"true", "1", "yes", "y", "pass", "passed", "是", "合格", "通过"})
_FALSE = frozenset({"false", "0", "no", "n", "fail", "failed", "否", "不合格", "未通过"})
# The fields each activity takes from the flat columns; amount + unit make its quantity.
_ACTIVITY_FIELDS: dict[str, tuple[str, ...]] = {
    "PLANTING": ("variety", "area_mu"),
    "FERTILISER": ("name", "amount"),
    "PESTICIDE": ("name", "registration_number", "amount", "pre_harvest_interval_days"),
    "FEED": ("name", "amount"),
    "VETERINARY_DRUG": ("name", "approval_number", "dose", "withdrawal_period_days"),
    "HARVEST": ("quantity",),
    "SLAUGHTER": ("heads", "quarantine_certificate"),
    "INSPECTION": ("item", "passed", "result", "inspector"),
}
_QUANTITY_FIELDS = frozenset({"amount", "dose", "quantity"})


class FileRejected(Exception):
    """A dropped file cannot be read as the contract says; `problems` name rows and columns."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems[:3]))
        self.problems = problems


@dataclass(frozen=True)
class _Taken:
    """A file the bridge took: its number, original name and where it is now."""

    number: int
    name: str
    path: Path

    @property
    def kind(self) -> Kind | None:
        lowered = self.name.lower()
        if lowered.startswith("subjects"):
            return "subjects"
        if lowered.startswith("trace-records"):
            return "trace-records"
        return None


class DropFolderProvincialPlatform:
    """`ProvincialPlatform` over a folder. One bridge process per folder (files are claimed
    without a lock between processes)."""

    def __init__(self, root: Path, province: str, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.root = root
        self._province = province
        self._clock = clock
        self._lock = threading.Lock()
        self.inbox, self.work, self.processed, self.rejected, self.outbox, self.state = (
            root / name for name in ("inbox", "work", "processed", "rejected", "outbox",
                                     "state"))
        for folder in (self.inbox, self.work, self.processed, self.rejected, self.outbox,
                       self.state):
            folder.mkdir(parents=True, exist_ok=True)
        self._ledger_path = self.state / "pushed.jsonl"
        self._pushed = self._read_ledger()
        self._cache: tuple[int, list[Any]] | None = None  # the rows of the last file read
        self._counts: dict[int, int] = {}  # rows per file number

    @classmethod
    def from_config(cls, config: AdapterConfig) -> DropFolderProvincialPlatform:
        """Option: root (required), the folder holding inbox/, outbox/ and the others."""
        return cls(Path(config.require("root")), config.province)

    @property
    def province(self) -> str:
        return self._province

    def health(self) -> Health:
        for folder in (self.inbox, self.work, self.outbox, self.state):
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PlatformUnavailable(f"{folder.name}/ is not writable",
                                          reason="FOLDER_NOT_WRITABLE")
        return Health(status="ok", province=self._province, time=self._clock())

    # -- reading --------------------------------------------------------------------------

    def list_subjects(self, page_token: str = "", page_size: int = 0) -> SubjectPage:
        size = _limit(page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, "page_size")
        with self._lock:
            rows, end, files = self._read("subjects", page_token, size, "page_token")
            total = sum(self._count(taken) for taken in files)
            done = end is None or not self._remaining(files, end)
            if done:
                self._finish(files, None)
        return SubjectPage(subjects=rows, total_size=total,
                           next_page_token="" if done or end is None else _position(end))

    def list_trace_records(self, cursor: str = "", limit: int = 0) -> TraceRecordPage:
        size = _limit(limit, DEFAULT_RECORD_LIMIT, MAX_RECORD_LIMIT, "limit")
        with self._lock:
            records, end, files = self._read("trace-records", cursor, size, "cursor")
            if end is None:
                return TraceRecordPage(records=[], next_cursor=cursor)
            more = self._remaining(files, end)
        return TraceRecordPage(records=records, next_cursor=_position(end), has_more=more)

    def _read(self, kind: Kind, token: str, size: int, field: str
              ) -> tuple[list[Any], tuple[int, int] | None, list[_Taken]]:
        """Up to `size` rows of `kind` from the position `token` on; the position after them
        (None when no file of the kind exists) and the files of the kind."""
        self._take_new_files()
        files = [taken for taken in self._taken() if taken.kind == kind]
        if not files:
            return [], None, files
        number, row = _parse_position(token, field) if token else (files[0].number, 0)
        files = self._finish(files, (number, row))
        rows: list[Any] = []
        position = (number, row)
        for taken in files:
            if taken.number < number:
                continue
            content = self._rows(taken)
            start = row if taken.number == number else 0
            chunk = content[start:start + size - len(rows)]
            rows.extend(chunk)
            position = (taken.number, start + len(chunk))
            if len(rows) >= size:
                break
        return rows, position, files

    def _remaining(self, files: list[_Taken], position: tuple[int, int]) -> bool:
        """Whether any row of these files lies at or after `position`."""
        return any(taken.number > position[0]
                   or (taken.number == position[0] and position[1] < self._count(taken))
                   for taken in files)

    def _rows(self, taken: _Taken) -> list[Any]:
        if self._cache is not None and self._cache[0] == taken.number:
            return self._cache[1]
        return self._remember(taken.number, _parse(taken.kind or "subjects",
                                                   _read_table(taken.path)))

    def _remember(self, number: int, rows: list[Any]) -> list[Any]:
        self._cache = (number, rows)
        self._counts[number] = len(rows)
        return rows

    def _count(self, taken: _Taken) -> int:
        count = self._counts.get(taken.number)
        return len(self._rows(taken)) if count is None else count

    def _finish(self, files: list[_Taken], position: tuple[int, int] | None) -> list[_Taken]:
        """Moves to processed/ the files in work/ that lie wholly before `position` (all of
        them when None); the files with their paths after the move."""
        after: list[_Taken] = []
        for taken in files:
            if taken.path.parent == self.work and (
                    position is None or taken.number < position[0]
                    or (taken.number == position[0] and position[1] >= self._count(taken))):
                moved = self.processed / taken.path.name
                os.replace(taken.path, moved)
                taken = _Taken(taken.number, taken.name, moved)
            after.append(taken)
        return after

    # -- taking files ---------------------------------------------------------------------

    def _taken(self) -> list[_Taken]:
        found: list[_Taken] = []
        for folder in (self.work, self.processed):
            for path in folder.iterdir():
                match = _NUMBERED.match(path.name)
                if match and path.is_file():
                    found.append(_Taken(int(match.group(1)), match.group(2), path))
        return sorted(found, key=lambda taken: taken.number)

    def _take_new_files(self) -> None:
        arrived = [path for path in self.inbox.iterdir()
                   if path.is_file() and not path.name.startswith(".")
                   and not path.name.endswith((".tmp", ".part"))]
        if not arrived:
            return
        numbers = [int(m.group(1)) for folder in (self.work, self.processed, self.rejected)
                   for path in folder.iterdir() if (m := _NUMBERED.match(path.name))]
        number = max(numbers, default=0)
        for path in sorted(arrived, key=lambda p: (p.stat().st_mtime_ns, p.name)):
            number += 1
            taken = _Taken(number, path.name, self.work / f"{number:06d}-{path.name}")
            problems = self._check(path, taken)
            if problems is not None:
                target = self.rejected / taken.path.name
                os.replace(path, target)
                _write_atomically(target.with_name(target.name + ".errors.txt"),
                                  "\n".join(problems) + "\n")
                continue
            os.replace(path, taken.path)

    def _check(self, path: Path, taken: _Taken) -> list[str] | None:
        """Why the file cannot be taken, or None (its rows are then remembered)."""
        if taken.kind is None or not path.name.lower().endswith(_SUFFIXES):
            return ["unknown file: name files subjects*.csv|xlsx or trace-records*.csv|xlsx"]
        try:
            self._remember(taken.number, _parse(taken.kind, _read_table(path)))
        except FileRejected as error:
            return error.problems
        return None

    # -- pushing --------------------------------------------------------------------------

    def push_national_record(self, record: NationalRecord) -> PushResult:
        content = record.model_dump(mode="json")
        digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
        with self._lock:
            held = self._pushed.get(record.record_id)
            if held is not None:
                if held[0] != digest:
                    raise PlatformRejected(
                        f"record {record.record_id} was pushed before with other content",
                        reason="RECORD_CONFLICT", status=409)
                return PushResult(record_id=record.record_id, accepted_time=held[1],
                                  replayed=True)
            row = [record.record_id, record.type, content["occur_time"], record.subject_id,
                   json.dumps(record.payload, ensure_ascii=False, sort_keys=True)]
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(OUTBOX_COLUMNS)
            writer.writerow(row)
            # A BOM so Excel reads the UTF-8; the name follows from the id, so a push retried
            # after a crash rewrites the same file instead of adding one.
            _write_atomically(self.outbox / f"national-record-{_file_id(record.record_id)}.csv",
                              "\ufeff" + buffer.getvalue())
            accepted = self._clock()
            with self._ledger_path.open("a", encoding="utf-8") as ledger:
                ledger.write(json.dumps({"record_id": record.record_id, "digest": digest,
                                         "accepted_time": accepted.isoformat()}) + "\n")
                ledger.flush()
                os.fsync(ledger.fileno())
            self._pushed[record.record_id] = (digest, accepted)
        return PushResult(record_id=record.record_id, accepted_time=accepted)

    def _read_ledger(self) -> dict[str, tuple[str, datetime]]:
        pushed: dict[str, tuple[str, datetime]] = {}
        if not self._ledger_path.exists():
            return pushed
        for line in self._ledger_path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                pushed[entry["record_id"]] = (entry["digest"],
                                              datetime.fromisoformat(entry["accepted_time"]))
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a crash mid-write: that push was not acknowledged
        return pushed

    def verify_token(self, token: str) -> TokenVerification:
        raise NotSupported("a drop folder cannot verify tokens; the province's UI must",
                           reason="NOT_SUPPORTED")

    def close(self) -> None:
        self._cache = None
        self._counts.clear()


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _read_table(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a CSV (UTF-8, with or without BOM) or of the first sheet of an XLSX file,
    as {header: value}; header names are trimmed and lower-cased."""
    if path.name.lower().endswith(".xlsx"):
        yield from _read_xlsx(path)
        return
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = [name.strip().lower() for name in next(reader, [])]
            for values in reader:
                if any(value.strip() for value in values):
                    yield dict(zip(header, values, strict=False))
    except UnicodeDecodeError:
        raise FileRejected(["the file is not UTF-8 text"]) from None


def _read_xlsx(path: Path) -> Iterator[dict[str, Any]]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises many kinds for a damaged file
        raise FileRejected([f"not a readable XLSX workbook ({type(error).__name__})"]) \
            from None
    try:
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        header = [str(name or "").strip().lower() for name in next(rows, ())]
        for values in rows:
            if any(value not in (None, "") for value in values):
                yield dict(zip(header, values, strict=False))
    finally:
        workbook.close()


def _parse(kind: Kind, rows: Iterator[dict[str, Any]]) -> list[Any]:
    """Every row as its contract model, or FileRejected naming the bad rows (the header is
    row 1)."""
    model: type[BaseModel] = Subject if kind == "subjects" else TraceRecord
    to_document = _subject_document if kind == "subjects" else _trace_document
    parsed: list[Any] = []
    problems: list[str] = []
    for line, row in enumerate(rows, start=2):
        try:
            parsed.append(model.model_validate(to_document(row)))
        except ValidationError as error:
            problems.extend(
                f"row {line}: {'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}"
                for e in error.errors(include_input=False)[:5])
        except ValueError as error:
            problems.append(f"row {line}: {error}")
        if len(problems) >= 100:
            problems.append("(stopped after 100 problems)")
            break
    if problems:
        raise FileRejected(problems)
    return parsed


def _text(value: Any) -> str:
    """A cell as text: numbers without a float's noise (12.0 -> "12"), times in RFC 3339."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(Decimal(repr(value)).normalize(), "f")
    if isinstance(value, datetime):
        return _aware(value).isoformat()
    return str(value).strip()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=CHINA_TIME)


def _time(value: Any, column: str) -> str | None:
    text = _text(value)
    if not text:
        return None
    try:
        return _aware(datetime.fromisoformat(text)).isoformat()
    except ValueError:
        raise ValueError(f"{column}: is not a date and time (YYYY-MM-DD HH:MM[:SS][+08:00])") \
            from None


def _subject_document(row: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = {name: _text(row.get(name)) for name in SUBJECT_COLUMNS[:-1]}
    document["update_time"] = _time(row.get("update_time"), "update_time")
    return document


def _trace_document(row: dict[str, Any]) -> dict[str, Any]:
    activity_type = _text(row.get("activity")).upper()
    fields = _ACTIVITY_FIELDS.get(activity_type)
    if fields is None:
        raise ValueError(f"activity: must be one of {', '.join(_ACTIVITY_FIELDS)}")
    activity: dict[str, Any] = {"type": activity_type}
    for name in fields:
        if name in _QUANTITY_FIELDS:
            activity[name] = {"amount": _text(row.get("amount")),
                              "unit": _text(row.get("unit")).upper()}
        elif name == "passed":
            activity[name] = _flag(row.get("passed"))
        else:
            activity[name] = _text(row.get(name))
    return {"record_id": _text(row.get("record_id")), "batch_id": _text(row.get("batch_id")),
            "occur_time": _time(row.get("occur_time"), "occur_time"), "activity": activity,
            "update_time": _time(row.get("update_time"), "update_time")}


def _flag(value: Any) -> bool:
    text = _text(value).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("passed: must be true or false (or 合格 / 不合格)")


def _limit(requested: int, default: int, maximum: int, name: str) -> int:
    if requested < 0:
        raise PlatformRejected(f"{name} must not be negative", reason="INVALID_ARGUMENT",
                               status=400)
    return min(requested or default, maximum)


def _position(position: tuple[int, int]) -> str:
    return f"{position[0]:06d}:{position[1]}"


def _parse_position(token: str, field: str) -> tuple[int, int]:
    number, _, row = token.partition(":")
    if not (number.isdigit() and row.isdigit()):
        raise PlatformRejected(f"{field} is not a position this folder issued",
                               reason="INVALID_ARGUMENT", status=400)
    return int(number), int(row)


def _file_id(record_id: str) -> str:
    if _SAFE_NAME.match(record_id) and not record_id.startswith("."):
        return record_id
    return hashlib.sha256(record_id.encode()).hexdigest()[:32]


def _write_atomically(target: Path, text: str) -> None:
    """Readers see the whole file or none: written under a hidden name, synced, renamed."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with temporary.open("w", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)
