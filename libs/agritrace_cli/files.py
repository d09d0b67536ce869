"""Reading provincial export files (CSV or XLSX) into subject records. Pure: no gRPC.

Both formats are streamed row by row, so a file of millions of rows never sits in memory:
CSV through the `csv` module, XLSX through openpyxl's read-only mode.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import posixpath
import re
import zipfile
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Final
from xml.etree import ElementTree

import openpyxl

from agritrace_cli.choices import parse_subject_kind

COLUMNS: Final[tuple[str, ...]] = (
    "source_record_id",
    "kind",
    "name",
    "credit_code",
    "resident_id",
    "division_code",
    "address",
    "legal_representative",
    "contact_phone",
)
# Without these every record would be rejected, so a header lacking one fails the whole file.
REQUIRED_COLUMNS: Final[tuple[str, ...]] = ("kind", "name", "division_code")

_ZIP_MAGIC: Final = b"PK\x03\x04"
_OLE2_MAGIC: Final = b"\xd0\xcf\x11\xe0"  # legacy .xls
_HASH_CHUNK_BYTES: Final = 1 << 20
_SPREADSHEET: Final = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_RELATIONSHIPS: Final = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_PACKAGE_RELATIONSHIPS: Final = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_XML_CHUNK_BYTES: Final = 1 << 20
# Any namespace prefix; a self-closing <row/> has no end tag and no values, so it never counts.
_XML_ROW_END: Final = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?row\s*>")
_XML_NON_BLANK_VALUE: Final = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?[vt](?:\s[^>]*)?>\s*[^<\s]")


class SubjectFileError(Exception):
    """The file cannot be read as a subject export (wrong format, encoding or header)."""


@dataclass(frozen=True, slots=True)
class SubjectRecord:
    """One data row. Personal data (resident_id, contact_phone) is kept out of repr()."""

    line_number: int
    source_record_id: str
    kind_text: str
    name: str
    credit_code: str
    resident_id: str = field(repr=False)
    division_code: str
    address: str
    legal_representative: str
    contact_phone: str = field(repr=False)

    @property
    def kind_name(self) -> str:
        """The SubjectKind enum name; SUBJECT_KIND_UNSPECIFIED when kind_text is unknown."""
        return parse_subject_kind(self.kind_text)

    @property
    def personal_values(self) -> tuple[str, ...]:
        """The values that must never be printed or written to a report."""
        return tuple(value for value in (self.resident_id, self.contact_phone) if value)


@dataclass(frozen=True, slots=True)
class _RawRow:
    line_number: int
    cells: tuple[str, ...]


def file_sha256(path: Path) -> str:
    """Hex sha256 of the file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def is_xlsx(path: Path) -> bool:
    """True for an XLSX workbook, judged by content (a zip), not by the file's suffix."""
    with path.open("rb") as stream:
        magic = stream.read(4)
    if magic == _OLE2_MAGIC:
        raise SubjectFileError(
            f"{path.name} is a legacy .xls workbook; save it as .xlsx or as UTF-8 CSV"
        )
    return magic == _ZIP_MAGIC


def cell_text(value: object) -> str:
    """A spreadsheet cell as the text a person sees: 330102 rather than 330102.0."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return str(int(value))
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    return str(value).strip()


def _iter_csv_rows(path: Path) -> Generator[_RawRow]:
    try:
        # utf-8-sig drops a byte-order mark when present and reads plain UTF-8 otherwise.
        with path.open("r", encoding="utf-8-sig", newline="") as stream:
            reader = csv.reader(stream)
            lines_consumed = 0
            for cells in reader:
                yield _RawRow(lines_consumed + 1, tuple(cell.strip() for cell in cells))
                lines_consumed = reader.line_num
    except UnicodeDecodeError as error:
        raise SubjectFileError(
            f"{path.name} is not UTF-8 text (byte {error.start}); re-save it as UTF-8 CSV"
        ) from error
    except csv.Error as error:
        raise SubjectFileError(f"{path.name}: malformed CSV: {error}") from error


def _iter_xlsx_rows(path: Path) -> Generator[_RawRow]:
    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        sheet = workbook.worksheets[0]
        # Writers often store wrong sheet dimensions; without them openpyxl reads what is there.
        sheet.reset_dimensions()
        for row_number, values in enumerate(sheet.iter_rows(min_row=1, values_only=True), 1):
            yield _RawRow(row_number, tuple(cell_text(value) for value in values))
    finally:
        workbook.close()


def _iter_raw_rows(path: Path) -> Generator[_RawRow]:
    """Non-blank rows, the header first."""
    rows = _iter_xlsx_rows(path) if is_xlsx(path) else _iter_csv_rows(path)
    try:
        for row in rows:
            if any(row.cells):
                yield row
    finally:
        rows.close()


def normalise_header(cell: str) -> str:
    """ "Source Record ID" -> "source_record_id"."""
    return "_".join(cell.strip().lower().replace("-", " ").split())


@dataclass(frozen=True, slots=True)
class HeaderLayout:
    """Where each known column sits in the header row."""

    column_positions: dict[str, int]
    ignored_columns: tuple[str, ...]

    @classmethod
    def from_header(cls, cells: Iterable[str], file_name: str) -> HeaderLayout:
        positions: dict[str, int] = {}
        ignored: list[str] = []
        for position, cell in enumerate(cells):
            column = normalise_header(cell)
            if column in positions:
                raise SubjectFileError(f"{file_name}: column {column!r} appears twice")
            if column in COLUMNS:
                positions[column] = position
            elif column:
                ignored.append(cell)
        missing = [column for column in REQUIRED_COLUMNS if column not in positions]
        if missing:
            raise SubjectFileError(
                f"{file_name}: the header row lacks {', '.join(missing)}; "
                f"expected columns: {', '.join(COLUMNS)}"
            )
        return cls(positions, tuple(ignored))

    def value(self, cells: tuple[str, ...], column: str) -> str:
        position = self.column_positions.get(column)
        if position is None or position >= len(cells):
            return ""
        return cells[position]


def _record_from_row(layout: HeaderLayout, row: _RawRow) -> SubjectRecord:
    def value(column: str) -> str:
        return layout.value(row.cells, column)

    return SubjectRecord(
        line_number=row.line_number,
        source_record_id=value("source_record_id") or f"row-{row.line_number}",
        kind_text=value("kind"),
        name=value("name"),
        credit_code=value("credit_code"),
        resident_id=value("resident_id"),
        division_code=value("division_code"),
        address=value("address"),
        legal_representative=value("legal_representative"),
        contact_phone=value("contact_phone"),
    )


def read_header(path: Path) -> HeaderLayout:
    """The file's header layout; raises SubjectFileError for an empty file or a bad header."""
    rows = _iter_raw_rows(path)
    try:
        header = next(rows, None)
    finally:
        rows.close()
    if header is None:
        raise SubjectFileError(f"{path.name} is empty")
    return HeaderLayout.from_header(header.cells, path.name)


def iter_subject_records(path: Path) -> Iterator[SubjectRecord]:
    """The file's records in file order, streamed. Blank rows are skipped; a row without a
    source_record_id gets "row-<line number>" (the CSV line or spreadsheet row it starts on)."""
    rows = _iter_raw_rows(path)
    try:
        header = next(rows, None)
        if header is None:
            raise SubjectFileError(f"{path.name} is empty")
        layout = HeaderLayout.from_header(header.cells, path.name)
        for row in rows:
            yield _record_from_row(layout, row)
    finally:
        rows.close()


def _first_worksheet_member(archive: zipfile.ZipFile) -> str:
    """The zip member holding the workbook's first worksheet (as openpyxl's worksheets[0])."""
    workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))
    relationships = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    targets = {
        relationship.get("Id"): (relationship.get("Type", ""), relationship.get("Target", ""))
        for relationship in relationships.iter(f"{_PACKAGE_RELATIONSHIPS}Relationship")
    }
    for sheet in workbook.iter(f"{_SPREADSHEET}sheet"):
        relationship_type, target = targets.get(sheet.get(f"{_RELATIONSHIPS}id"), ("", ""))
        if relationship_type.endswith("/worksheet"):
            if target.startswith("/"):
                return target.lstrip("/")
            return posixpath.normpath(posixpath.join("xl", target))
    raise KeyError("no worksheet")


def _count_xlsx_rows_with_values(path: Path) -> int:
    """Counts the first sheet's rows holding a value by scanning the sheet XML's bytes: many
    times faster than openpyxl, which builds every cell. A row counts when a <v> (value) or
    <t> (inline text) in it holds something other than white space; a row whose only values
    are blank shared strings is counted here yet skipped by the reader (this count only feeds
    a progress total)."""
    rows = 0
    pending = b""
    with zipfile.ZipFile(path) as archive, archive.open(_first_worksheet_member(archive)) as xml:
        while chunk := xml.read(_XML_CHUNK_BYTES):
            *complete_rows, pending = _XML_ROW_END.split(pending + chunk)
            rows += sum(1 for row in complete_rows if _XML_NON_BLANK_VALUE.search(row))
    return rows


def count_subject_records(path: Path) -> int:
    """How many records iter_subject_records yields (for a progress total) without building
    them; call read_header first to check the header. For CSV the count also proves that the
    whole file decodes before anything is sent."""
    if is_xlsx(path):
        try:
            return max(_count_xlsx_rows_with_values(path) - 1, 0)
        except (KeyError, ElementTree.ParseError, zipfile.BadZipFile):
            pass  # an unusual package layout: count the slow way
    return max(sum(1 for _ in _iter_raw_rows(path)) - 1, 0)
