"""The per-record import report: source_record_id,outcome,subject_id,field,reason.

Written incrementally in UTF-8 with a byte-order mark (so that spreadsheet programs read the
Chinese reasons correctly), one batch at a time, flushed to disk before the checkpoint moves on.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final

REPORT_COLUMNS: Final[tuple[str, ...]] = (
    "source_record_id",
    "outcome",
    "subject_id",
    "field",
    "reason",
)


@dataclass(frozen=True, slots=True)
class ReportLine:
    """One record's outcome; holds no personal data."""

    source_record_id: str
    outcome: str
    subject_id: str
    field: str
    reason: str

    def cells(self) -> tuple[str, str, str, str, str]:
        return (self.source_record_id, self.outcome, self.subject_id, self.field, self.reason)


class ReportWriter:
    """Appends report lines and tells how many bytes of the file are complete."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    @classmethod
    def start_new(cls, path: Path) -> ReportWriter:
        """Creates (or empties) the report and writes the header."""
        writer = cls(path.open("wb"))
        writer._stream.write(codecs.BOM_UTF8)
        writer._write_rows([REPORT_COLUMNS])
        return writer

    @classmethod
    def resume(cls, path: Path, complete_bytes: int) -> ReportWriter:
        """Reopens the report for appending after cutting it back to `complete_bytes`, dropping
        lines written after the last checkpoint (their records are sent again)."""
        stream = path.open("r+b")
        stream.truncate(complete_bytes)
        stream.seek(complete_bytes)
        return cls(stream)

    def _write_rows(self, rows: Iterable[Iterable[str]]) -> None:
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        self._stream.write(text.getvalue().encode("utf-8"))

    def append(self, lines: Iterable[ReportLine]) -> int:
        """Writes the lines, forces them to disk, and returns the report's size in bytes."""
        self._write_rows(line.cells() for line in lines)
        self._stream.flush()
        os.fsync(self._stream.fileno())
        return self._stream.tell()

    @property
    def size_bytes(self) -> int:
        self._stream.flush()
        return self._stream.tell()

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
