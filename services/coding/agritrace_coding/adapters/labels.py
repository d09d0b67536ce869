"""Labels: the QR code of a trace code's resolver URL with the code printed under it for
people, as SVG, PNG, ZPL II (Zebra thermal printers) or PDF; an A4 sheet of many labels; a
streamed ZIP archive of one SVG per code.

Every QR code is QR Code Model 2 at error correction level M, never boosted to a higher
level (segno would otherwise raise it when it fits the same version) and never Micro QR
(phones do not read it), so a URL gives the same symbol in every format. The URL is carried
exactly as given and must be printable ASCII without spaces (a resolver URL is: hosts in
punycode, paths percent-encoded): that keeps the QR in byte mode without ECI, and keeps ZPL's
automatic input mode, which cannot carry bytes 0x80-0x9F and 0xE0-0xFF, usable.

Cost: segno evaluates the 8 data masks of ISO/IEC 18004 7.8.3 in pure Python, ~85% of the
~4 ms it takes to encode a resolver URL. `_MASK` fixes the mask instead (~0.7 ms; every mask
decodes, the evaluation only avoids patterns that make weak readers struggle).
"""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from types import MappingProxyType
from xml.sax.saxutils import escape

import segno
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

from agritrace_coding.domain import codes
from agritrace_coding.domain.model import LabelFormat

# ZPL has no registered media type; "application/zpl" is the one most tools send
# (others: "application/x-zpl", "x-application/zpl").
CONTENT_TYPES: Mapping[LabelFormat, str] = MappingProxyType(
    {fmt: fmt.content_type for fmt in LabelFormat}
)

QUIET_ZONE = 4  # modules of light margin around a QR code (ISO/IEC 18004)
# None: segno picks the best data mask (ISO/IEC 18004 7.8.3); 0-7 fixes it (see above).
_MASK: int | None = None
_URL = re.compile(r"[\x21-\x7e]+")

# PNG: 8 px per module (a typical resolver URL is version 4, 33 modules: 328 px wide).
PNG_SCALE = 8
# SVG: the drawing is in module units; width and height give 8 px per module.
SVG_SCALE = 8
# Monospace advance (Courier and most monospace fonts: 0.6 em).
_MONO_ADVANCE = 0.6

# ZPL: a 50 mm x 30 mm label on a 203 dpi (8 dots/mm) printer.
ZPL_WIDTH_DOTS = 400
ZPL_HEIGHT_DOTS = 240
_ZPL_TEXT_DOTS = 24  # height of the human-readable line (3 mm)
_ZPL_TEXT_BAND = 34  # dots below the QR's quiet zone kept for that line
_ZPL_MIN_MAGNIFICATION = 3  # dots per module: 0.375 mm, about the least phones read well

# PDF: one label page, and the A4 sheet of 4 x 10 labels of 52.5 mm x 29.7 mm (a common
# borderless label sheet).
PDF_LABEL_SIZE_MM = (50.0, 30.0)
A4_MM = (210.0, 297.0)
SHEET_COLUMNS = 4
SHEET_ROWS = 10
LABELS_PER_SHEET = SHEET_COLUMNS * SHEET_ROWS
_PDF_TEXT_BAND = 0.17  # share of a label's height under the QR kept for the code
_PT_MM = 25.4 / 72

_ZIP_CHUNK = 64 * 1024


# --------------------------------------------------------------------------------------------
# One label
# --------------------------------------------------------------------------------------------


def render_label(code: str, url: str, fmt: LabelFormat) -> bytes:
    """One label of `code` whose QR code carries `url`, in `fmt`. Raises
    codes.CodeFormatError (a ValueError) for a code that is not canonical with a valid check
    character, ValueError for a URL that is not printable ASCII or too long for the label."""
    fmt = LabelFormat(str(fmt).upper())  # also takes "svg", "png", ...; ValueError else
    text = _checked_display(code, url)
    if fmt is LabelFormat.ZPL:
        return _zpl(url, text)
    qr = _qr(url)
    if fmt is LabelFormat.SVG:
        return _svg(qr, text)
    if fmt is LabelFormat.PNG:
        return _png(qr, text)
    if fmt is LabelFormat.PDF:
        width, height = PDF_LABEL_SIZE_MM
        pdf = _new_pdf((width, height))
        pdf.add_page()
        _draw_pdf_label(pdf, qr, text, 0.0, 0.0, width, height)
        return bytes(pdf.output())
    raise ValueError(f"unknown label format {fmt!r}")


def _checked_display(code: str, url: str) -> str:
    parsed = codes.parse(code)
    if parsed.code != code:
        raise codes.CodeFormatError(f"is not in canonical form (that is {parsed.code})")
    if not parsed.check_valid:
        raise codes.CodeFormatError("check character does not match")
    if not _URL.fullmatch(url):
        raise ValueError("a label URL must be non-empty printable ASCII without spaces")
    return codes.display(code)


def _qr(url: str, mask: int | None = _MASK) -> segno.QRCode:
    return segno.make_qr(url, error="m", boost_error=False, mask=mask)


def _svg(qr: segno.QRCode, text: str) -> bytes:
    """segno draws the QR (one <path> of horizontal strokes, in module units, the quiet zone
    included); the document around it adds a white background and the code as <text>."""
    buffer = io.BytesIO()
    qr.save(
        buffer, kind="svg", scale=1, border=QUIET_ZONE, xmldecl=False, svgns=True, nl=False,
        svgclass=None, lineclass=None, omitsize=True,
    )
    raw = buffer.getvalue()
    path = raw[raw.index(b"<path"):raw.rindex(b"</svg>")]
    side = len(qr.matrix) + 2 * QUIET_ZONE
    font = min(4.0, (side - 2) / (_MONO_ADVANCE * len(text)))
    height = side + 1.5 * font
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{side * SVG_SCALE}" '
        f'height="{_num(height * SVG_SCALE)}" viewBox="0 0 {side} {_num(height)}">'
        f'<rect width="{side}" height="{_num(height)}" fill="#fff"/>'
    )
    tail = (
        f'<text x="{_num(side / 2)}" y="{_num(side + 1.05 * font)}" font-family="monospace" '
        f'font-size="{_num(font)}" text-anchor="middle" fill="#000">{escape(text)}</text></svg>'
    )
    return b"".join((head.encode(), path, tail.encode()))


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


# Matrix byte (0 light, 1 dark) -> grey level.
_GREY = bytes([255] + [0] * 255)


def _png(qr: segno.QRCode, text: str) -> bytes:
    size = len(qr.matrix)
    side = (size + 2 * QUIET_ZONE) * PNG_SCALE
    modules = Image.frombytes("L", (size, size), b"".join(qr.matrix).translate(_GREY))
    font = _png_font(text, side - 2 * PNG_SCALE)
    band = round(font.size * 1.6)
    image = Image.new("L", (side, side + band), 255)
    image.paste(
        modules.resize((size * PNG_SCALE, size * PNG_SCALE), Image.Resampling.NEAREST),
        (QUIET_ZONE * PNG_SCALE, QUIET_ZONE * PNG_SCALE),
    )
    ImageDraw.Draw(image).text((side / 2, side + band * 0.4), text, fill=0, font=font,
                               anchor="mm")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _png_font(text: str, max_width: int) -> ImageFont.FreeTypeFont:
    """The largest default font (Pillow's embedded Aileron) up to 3.5 modules tall that fits
    `text` in `max_width` pixels."""
    size = round(3.5 * PNG_SCALE)
    while True:
        font = _font(size)
        if size <= 8 or font.getlength(text) <= max_width:
            return font
        size -= 1


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):  # Pillow built without FreeType
        raise RuntimeError("Pillow has no FreeType support: cannot size the label text")
    return font


def _zpl(url: str, text: str) -> bytes:
    """A ZPL II label, 50 mm x 30 mm at 203 dpi: the QR centred at the top, its quiet zone
    on the label, the code in the scalable font 0 centred under it.

    ^BQN,2,m: QR Code, normal orientation, Model 2, m dots per module. Its field data starts
    with two switches, then a comma: the error correction level (H, Q, M, L), then the input
    mode (A automatic: the printer picks the encoding modes itself; M manual would need a
    character mode and a byte count). "MA," is level M, automatic, as in the other formats.
    ^FH: "_" then two hex digits in the following ^FD stand for that byte, so ^ (format
    prefix), ~ (control prefix) and _ itself never appear raw in field data."""
    # The symbol's size as segno encodes the URL (any mask: only the version matters). The
    # printer encodes it itself; for a URL its automatic mode picks byte mode, as segno does.
    size = _qr(url, mask=0).symbol_size(border=0)[0]
    magnification = min(
        10, (ZPL_HEIGHT_DOTS - _ZPL_TEXT_BAND) // (int(size) + 2 * QUIET_ZONE)
    )
    if magnification < _ZPL_MIN_MAGNIFICATION:
        raise ValueError("the URL is too long for a QR code on a 50 mm x 30 mm label")
    qr_dots = int(size) * magnification
    left = (ZPL_WIDTH_DOTS - qr_dots) // 2
    top = QUIET_ZONE * magnification
    text_top = top + qr_dots + QUIET_ZONE * magnification + 4
    commands = [
        "^XA",
        "^CI28",  # field data is UTF-8
        f"^PW{ZPL_WIDTH_DOTS}",
        f"^LL{ZPL_HEIGHT_DOTS}",
        "^LH0,0",
        f"^FO{left},{top}^BQN,2,{magnification}^FH_^FDMA,{_zpl_field(url)}^FS",
        f"^FO0,{text_top}^A0N,{_ZPL_TEXT_DOTS},{_ZPL_TEXT_DOTS}"
        f"^FB{ZPL_WIDTH_DOTS},1,0,C,0^FH_^FD{_zpl_field(text)}^FS",
        "^XZ",
    ]
    return ("\n".join(commands) + "\n").encode("utf-8")


_ZPL_SPECIAL = re.compile(r"[\^~_\x00-\x1f\x7f]")


def _zpl_field(value: str) -> str:
    """`value` as ^FH_ field data: ^, ~, _ and control characters as _XX (hex)."""
    return _ZPL_SPECIAL.sub(lambda match: f"_{ord(match[0]):02X}", value)


# --------------------------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------------------------


def render_sheet(labels: Sequence[tuple[str, str]]) -> tuple[bytes, int]:
    """An A4 PDF of `labels` ((code, url) pairs) in a grid of 4 x 10 labels of
    52.5 mm x 29.7 mm per page, in order, row by row; returns the PDF and its page count."""
    if not labels:
        raise ValueError("a label sheet needs at least one label")
    checked = [(_checked_display(code, url), url) for code, url in labels]
    pdf = _new_pdf(A4_MM)
    cell_width = A4_MM[0] / SHEET_COLUMNS
    cell_height = A4_MM[1] / SHEET_ROWS
    for index, (text, url) in enumerate(checked):
        slot = index % LABELS_PER_SHEET
        if slot == 0:
            pdf.add_page()
        row, column = divmod(slot, SHEET_COLUMNS)
        _draw_pdf_label(
            pdf, _qr(url), text, column * cell_width, row * cell_height, cell_width, cell_height
        )
    return bytes(pdf.output()), pdf.pages_count


def _new_pdf(page_mm: tuple[float, float]) -> FPDF:
    pdf = FPDF(unit="mm", format=page_mm)
    pdf.set_margins(0, 0, 0)
    pdf.set_auto_page_break(False)
    pdf.set_creator("AgriTrace")
    pdf.set_fill_color(0)
    return pdf


def _draw_pdf_label(
    pdf: FPDF, qr: segno.QRCode, text: str, x: float, y: float, width: float, height: float
) -> None:
    """The QR as filled vector rectangles (sharp at any printer resolution), its quiet zone
    inside the label's box, and the code centred under it in Courier Bold."""
    band = height * _PDF_TEXT_BAND
    size = len(qr.matrix)
    side = min(width, height - band)
    module = side / (size + 2 * QUIET_ZONE)
    left = x + (width - side) / 2 + QUIET_ZONE * module
    top = y + QUIET_ZONE * module
    for column, row, run, rows in _rectangles(qr.matrix):
        pdf.rect(left + column * module, top + row * module, run * module, rows * module, "F")
    points = min(band * 0.75, width * 0.9 / (_MONO_ADVANCE * len(text))) / _PT_MM
    pdf.set_font("Courier", style="B", size=points)
    text_width = _MONO_ADVANCE * len(text) * points * _PT_MM
    pdf.text(x + (width - text_width) / 2, y + side + band * 0.55, text)


def _rectangles(matrix: Sequence[bytes | bytearray]) -> Iterator[tuple[int, int, int, int]]:
    """The dark modules as (column, row, width, height) rectangles: the runs of each row,
    a run merged with the same run on the rows below it (fewer, taller rectangles)."""
    open_runs: dict[tuple[int, int], int] = {}  # (column, width) -> first row
    for row_index, row in enumerate((*matrix, b"")):
        runs = set()
        column, size = 0, len(row)
        while column < size:
            if row[column]:
                start = column
                while column < size and row[column]:
                    column += 1
                runs.add((start, column - start))
            column += 1
        for key in [key for key in open_runs if key not in runs]:
            first = open_runs.pop(key)
            yield key[0], first, key[1], row_index - first
        for key in runs:
            open_runs.setdefault(key, row_index)


# --------------------------------------------------------------------------------------------
# ZIP
# --------------------------------------------------------------------------------------------


class _Sink:
    """Where zipfile writes: a buffer of what was written and not yet taken. It has no tell()
    or seek(), so zipfile writes each entry once, sizes and CRC in a data descriptor after
    the data, and never goes back."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def write(self, data: bytes, /) -> int:
        self._buffer += data
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self, size: int) -> Iterator[bytes]:
        """All that is buffered, in pieces of at most `size` bytes."""
        buffer = self._buffer
        for start in range(0, len(buffer), size):
            yield bytes(buffer[start:start + size])
        buffer.clear()


def labels_zip(items: Iterable[tuple[int, str, str]]) -> Iterator[bytes]:
    """A ZIP archive of one SVG label per (serial, code, url), named f"{serial:07d}-{code}.svg",
    streamed in chunks of about 64 KiB as the labels are rendered.

    Memory: the unsent chunk, and zipfile's record of every entry (a ZipInfo, ~410 bytes)
    until the central directory (~80 bytes an entry) is written at the end and sent in
    chunks: ~0.5 GB at the end of 1,000,000 labels, measured. Past 65,535 entries zipfile
    adds the ZIP64 end records."""
    sink = _Sink()
    timestamp = time.localtime()[:6]
    archive = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED)
    for serial, code, url in items:
        if serial < 0:
            raise ValueError(f"serial {serial} is negative")
        label = _svg(_qr(url), _checked_display(code, url))
        entry = zipfile.ZipInfo(f"{serial:07d}-{code}.svg", date_time=timestamp)
        entry.compress_type = zipfile.ZIP_DEFLATED
        entry.external_attr = 0o644 << 16  # rw-r--r-- when extracted
        archive.writestr(entry, label)
        if sink.pending >= _ZIP_CHUNK:
            yield from sink.take(sink.pending)  # one chunk
    archive.close()  # the central directory, into the sink
    del archive  # and its ZipInfos with it
    yield from sink.take(_ZIP_CHUNK)
