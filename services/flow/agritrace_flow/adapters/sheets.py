"""Spreadsheets of records, streamed in chunks: CSV (UTF-8 with a BOM, so that Excel opens
Chinese text right) and XLSX (openpyxl's write-only mode, through a temporary file)."""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterable, Iterator, Sequence

from openpyxl import Workbook

CHUNK_BYTES = 256 * 1024


def csv_chunks(header: Sequence[str], rows: Iterable[Sequence[str]]
               ) -> Iterator[tuple[bytes, int]]:
    """(bytes, rows written so far) chunks of a CSV file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    buffer.write("\ufeff")
    writer.writerow(header)
    written = 0
    for row in rows:
        writer.writerow(row)
        written += 1
        if buffer.tell() >= CHUNK_BYTES:
            yield buffer.getvalue().encode(), written
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode(), written


def xlsx_chunks(header: Sequence[str], rows: Iterable[Sequence[str]],
                title: str = "records") -> Iterator[tuple[bytes, int]]:
    """(bytes, rows written) chunks of an XLSX workbook with one sheet, header frozen and
    filterable, so the recipient sorts and filters at once."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title)
    sheet.freeze_panes = "A2"
    sheet.append(list(header))
    written = 0
    for row in rows:
        sheet.append(list(row))
        written += 1
    sheet.auto_filter.ref = f"A1:{chr(ord('A') + len(header) - 1)}{written + 1}"
    with tempfile.TemporaryFile() as handle:
        workbook.save(handle)
        handle.seek(0)
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk, written
