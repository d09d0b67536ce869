"""Unit tests for agritrace_coding.adapters.labels.

Every QR code is read back by a real decoder (zxing-cpp) from a real rendering: PNG as it
is, PDF through PDFium (pypdfium2), SVG through fpdf2's SVG renderer and then PDFium. ZPL has
no renderer here: its commands are parsed and its ^FH escapes undone."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from typing import Any, cast

import pypdfium2 as pdfium
import pytest
import zxingcpp
from fpdf import FPDF
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageOps

from agritrace_coding.adapters import labels
from agritrace_coding.adapters.labels import (
    CONTENT_TYPES,
    LabelFormat,
    labels_zip,
    render_label,
    render_sheet,
)
from agritrace_coding.domain import codes

BASE_URL = "https://trace.agri.example.cn/national/"
SVG_NS = "{http://www.w3.org/2000/svg}"


def _labels(count: int, province: str = "33") -> list[tuple[str, str]]:
    return [(code, codes.resolver_url(BASE_URL, code)) for code in codes.new_codes(province, count)]


def _decode(image: Image.Image) -> list[zxingcpp.Barcode]:
    return list(zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode))


def _pdf_pages(pdf: bytes, dpi: int = 200) -> list[Image.Image]:
    document = pdfium.PdfDocument(pdf)
    return [document[index].render(scale=dpi / 72).to_pil() for index in range(len(document))]


def _pdf_texts(pdf: bytes) -> list[str]:
    document = pdfium.PdfDocument(pdf)
    return [document[index].get_textpage().get_text_range() for index in range(len(document))]


def _assert_quiet_zone(
    image: Image.Image, box: tuple[float, float, float, float], modules: int
) -> zxingcpp.Barcode:
    """Decodes the one QR in `image` and checks that the label drawn in `box` (pixels) keeps
    a light margin of 4 modules left of, above, right of and below it (the quiet zone)."""
    [barcode] = _decode(image)
    corners = [barcode.position.top_left, barcode.position.top_right,
               barcode.position.bottom_left, barcode.position.bottom_right]
    left = min(point.x for point in corners)
    top = min(point.y for point in corners)
    right = max(point.x for point in corners)
    bottom = max(point.y for point in corners)
    margin = 4 * (right - left) / modules - 2  # 2 px: the edges as the reader finds them
    assert left - box[0] >= margin
    assert top - box[1] >= margin
    assert box[2] - right >= margin
    dark = image.convert("L").point(lambda value: 255 if value < 128 else 0)
    assert dark.crop((int(box[0]), bottom + 2, int(box[2]), int(bottom + margin))).getbbox() is None
    return barcode


def _render_svg(svg: bytes) -> Image.Image:
    """The SVG drawn by fpdf2's own SVG renderer into a PDF, rasterised by PDFium: nothing of
    segno's or labels.py's in the way between the SVG's bytes and the decoder."""
    pdf = FPDF(unit="mm", format=(60, 80))
    pdf.add_page()
    pdf.image(io.BytesIO(svg), x=5, y=5, w=50)
    return _pdf_pages(bytes(pdf.output()), dpi=300)[0]


# --------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------


def test_every_format_has_a_content_type() -> None:
    assert set(CONTENT_TYPES) == set(LabelFormat)
    assert CONTENT_TYPES[LabelFormat.SVG] == "image/svg+xml"
    assert CONTENT_TYPES[LabelFormat.PNG] == "image/png"
    assert CONTENT_TYPES[LabelFormat.ZPL] == "application/zpl"
    assert CONTENT_TYPES[LabelFormat.PDF] == "application/pdf"
    assert LabelFormat("ZPL") is LabelFormat.ZPL


def test_format_may_be_given_by_name() -> None:
    code, url = _labels(1)[0]
    by_name: Any = "svg"
    assert render_label(code, url, by_name) == render_label(code, url, LabelFormat.SVG)
    with pytest.raises(ValueError):
        render_label(code, url, cast(Any, "gif"))


# --------------------------------------------------------------------------------------------
# PNG
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "url"), _labels(5))
def test_png_qr_decodes_to_the_exact_url(code: str, url: str) -> None:
    image = Image.open(io.BytesIO(render_label(code, url, LabelFormat.PNG)))
    assert image.format == "PNG"
    [barcode] = _decode(image)
    assert barcode.text == url
    assert barcode.format == zxingcpp.BarcodeFormat.QRCode
    assert barcode.ec_level == "M"


def test_png_has_quiet_zone_large_modules_and_the_text_beneath() -> None:
    code, url = _labels(1)[0]
    image = Image.open(io.BytesIO(render_label(code, url, LabelFormat.PNG))).convert("L")
    width, height = image.size
    ink = ImageOps.invert(image)  # getbbox() bounds what is not black: here, the dark
    # The QR: the dark modules' box within the top square, a whole number of px per module.
    left, top, right, bottom = ink.crop((0, 0, width, width)).getbbox() or (0, 0, 0, 0)
    modules = len(labels._qr(url).matrix)
    scale, remainder = divmod(right - left, modules)
    assert remainder == 0 and bottom - top == right - left
    assert scale >= 6  # px per module: large enough for phones
    quiet = 4 * scale
    assert (left, top, width - right) == (quiet, quiet, quiet)
    _assert_quiet_zone(image, (0, 0, width, height), modules)
    # The code's line: below the quiet zone, inside the picture.
    text_box = ink.crop((0, bottom, width, height)).getbbox()
    assert text_box is not None
    assert text_box[1] >= quiet and text_box[3] < height - bottom
    assert text_box[0] > 0 and text_box[2] < width


def test_png_url_with_query_and_special_characters() -> None:
    code = codes.new_codes("11", 1)[0]
    url = codes.resolver_url(BASE_URL, code) + "?src=label&x=<a>^~_%20"
    [barcode] = _decode(Image.open(io.BytesIO(render_label(code, url, LabelFormat.PNG))))
    assert barcode.text == url


# --------------------------------------------------------------------------------------------
# SVG
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "url"), _labels(3))
def test_svg_is_one_document_with_the_code_as_text_and_a_qr_of_the_url(
    code: str, url: str
) -> None:
    svg = render_label(code, url, LabelFormat.SVG)
    assert svg.startswith(b"<svg ")  # no XML declaration: embeddable as it is
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    texts = root.findall(f"{SVG_NS}text")
    assert [text.text for text in texts] == [codes.display(code)]
    assert texts[0].get("font-family") == "monospace"
    assert len(root.findall(f"{SVG_NS}path")) == 1
    assert not root.findall(f".//{SVG_NS}image")  # vector, nothing embedded

    _, _, width, height = (float(value) for value in root.get("viewBox", "").split())
    px = 300 / 25.4  # the rendering below: 300 dpi, the SVG 50 mm wide at (5 mm, 5 mm)
    box = (5 * px, 5 * px, 55 * px, (5 + 50 * height / width) * px)
    barcode = _assert_quiet_zone(_render_svg(svg), box, len(labels._qr(url).matrix))
    assert barcode.text == url


def test_svg_text_fits_under_the_qr() -> None:
    code, url = _labels(1)[0]
    root = ET.fromstring(render_label(code, url, LabelFormat.SVG))
    _, _, width, height = (float(value) for value in root.get("viewBox", "").split())
    [text] = root.findall(f"{SVG_NS}text")
    modules = len(labels._qr(url).matrix)
    font = float(text.get("font-size", "0"))
    assert float(text.get("y", "0")) - font >= modules + 2 * labels.QUIET_ZONE - 0.5
    assert float(text.get("y", "0")) <= height
    assert 0.6 * font * len(codes.display(code)) <= width


# --------------------------------------------------------------------------------------------
# ZPL
# --------------------------------------------------------------------------------------------

_ZPL_COMMANDS = ("XA", "XZ", "CI", "PW", "LL", "LH", "FO", "BQ", "FH", "FD", "FS", "A0", "FB")


def _zpl_commands(zpl: bytes) -> list[str]:
    text = zpl.decode("utf-8")
    assert "~" not in text  # the control prefix: nothing may start a control command
    commands = [part.strip() for part in text.split("^")[1:]]
    assert text.split("^")[0].strip() == ""
    for command in commands:
        assert command[:2] in _ZPL_COMMANDS, command
    return commands


def _unhex(field: str) -> str:
    """What the printer makes of ^FH_ field data."""
    return re.sub(r"_([0-9A-Fa-f]{2})", lambda match: chr(int(match[1], 16)), field)


def _qr_field(commands: list[str]) -> str:
    index = next(i for i, command in enumerate(commands) if command.startswith("BQ"))
    assert commands[index + 1 : index + 4] == ["FH_", commands[index + 2], "FS"]
    field = commands[index + 2]
    assert field.startswith("FD")
    return _unhex(field[2:])


def test_zpl_label_structure() -> None:
    code, url = _labels(1)[0]
    zpl = render_label(code, url, LabelFormat.ZPL)
    commands = _zpl_commands(zpl)
    assert commands[0] == "XA"
    assert commands[-1] == "XZ"
    assert "CI28" in commands
    assert "PW400" in commands  # 50 mm at 8 dots/mm
    assert "LL240" in commands  # 30 mm
    [qr] = [command for command in commands if command.startswith("BQ")]
    match = re.fullmatch(r"BQN,2,(\d+)", qr)
    assert match
    magnification = int(match[1])
    assert 3 <= magnification <= 10
    # Level M, automatic input: the URL follows the two switches and the comma exactly.
    assert _qr_field(commands) == f"MA,{url}"
    # The QR and its quiet zone fit the label.
    origin = commands[commands.index(qr) - 1]
    x, y = (int(value) for value in origin.removeprefix("FO").split(","))
    modules = len(labels._qr(url).matrix)
    assert x >= 4 * magnification
    assert x + (modules + 4) * magnification <= 400
    assert y >= 4 * magnification
    # The human-readable code: font 0, under the QR's quiet zone.
    [text_field] = [c for c in commands if c.startswith("FD") and not c.startswith("FDMA,")]
    assert _unhex(text_field[2:]) == codes.display(code)
    text_origin = commands[commands.index(text_field) - 4]
    font = commands[commands.index(text_field) - 3]
    assert font.startswith("A0N,")
    text_y = int(text_origin.split(",")[1])
    assert text_y >= y + (modules + 4) * magnification
    assert text_y + int(font.split(",")[1]) <= 240


def test_zpl_escapes_format_and_control_prefixes() -> None:
    code = codes.new_codes("44", 1)[0]
    url = codes.resolver_url(BASE_URL, code) + "?a=^XZ&b=~JR&c=_5E"
    zpl = render_label(code, url, LabelFormat.ZPL)
    commands = _zpl_commands(zpl)  # no raw ^ or ~ from the URL
    assert _qr_field(commands) == f"MA,{url}"
    assert "_5EXZ" in zpl.decode() and "_7EJR" in zpl.decode() and "_5F5E" in zpl.decode()
    assert commands.count("XZ") == 1


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60))
def test_zpl_field_data_round_trips_any_printable_ascii(tail: str) -> None:
    code = "33P9N1DH6P5DEY8V"
    url = codes.resolver_url(BASE_URL, code) + tail
    commands = _zpl_commands(render_label(code, url, LabelFormat.ZPL))
    assert _qr_field(commands) == f"MA,{url}"


def test_zpl_refuses_a_url_too_long_for_the_label() -> None:
    code, url = _labels(1)[0]
    with pytest.raises(ValueError, match="too long"):
        render_label(code, url + "/" + "x" * 200, LabelFormat.ZPL)


# --------------------------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------------------------


def test_pdf_label_is_one_small_page_with_a_readable_qr() -> None:
    code, url = _labels(1)[0]
    pdf = render_label(code, url, LabelFormat.PDF)
    assert pdf.startswith(b"%PDF-")
    document = pdfium.PdfDocument(pdf)
    assert len(document) == 1
    width, height = document[0].get_size()
    assert (round(width / 72 * 25.4), round(height / 72 * 25.4)) == (50, 30)
    [page] = _pdf_pages(pdf, dpi=300)
    box = (0, 0, page.size[0], page.size[1])
    barcode = _assert_quiet_zone(page, box, len(labels._qr(url).matrix))
    assert barcode.text == url
    # The code under the QR's quiet zone, digits at least 1.8 mm tall, inside the page.
    below = max(barcode.position.bottom_left.y, barcode.position.bottom_right.y) + 2
    dark = page.convert("L").point(lambda value: 255 if value < 128 else 0)
    text_box = dark.crop((0, below, page.size[0], page.size[1])).getbbox()
    assert text_box is not None
    px = 300 / 25.4
    assert text_box[3] - text_box[1] >= 1.8 * px
    assert text_box[0] > 0 and text_box[2] < page.size[0] and below + text_box[3] < page.size[1]
    assert codes.display(code) in _pdf_texts(pdf)[0]


@pytest.mark.parametrize(("count", "pages"), [(1, 1), (40, 1), (41, 2)])
def test_sheet_pages_and_every_qr_in_order(count: int, pages: int) -> None:
    items = _labels(count)
    pdf, page_count = render_sheet(items)
    assert pdf.startswith(b"%PDF-")
    assert page_count == pages
    document = pdfium.PdfDocument(pdf)
    assert len(document) == pages
    width, height = document[0].get_size()
    assert (round(width / 72 * 25.4), round(height / 72 * 25.4)) == (210, 297)

    texts = _pdf_texts(pdf)
    dpi = 200
    row_height = 297 / 10 / 25.4 * dpi
    for number, image in enumerate(_pdf_pages(pdf, dpi=dpi)):
        expected = items[number * 40 : (number + 1) * 40]
        found = _decode(image)
        # Row by row, left to right, as given.
        found.sort(key=lambda b: (int(b.position.top_left.y // row_height), b.position.top_left.x))
        assert [barcode.text for barcode in found] == [url for _, url in expected]
        for code, _ in expected:
            assert codes.display(code) in texts[number]


def test_sheet_refuses_no_labels() -> None:
    with pytest.raises(ValueError):
        render_sheet([])


# --------------------------------------------------------------------------------------------
# What a label may carry
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(LabelFormat))
def test_refuses_codes_that_are_not_canonical_and_valid(fmt: LabelFormat) -> None:
    code, url = _labels(1)[0]
    wrong_check = code[:-1] + next(c for c in codes.ALPHABET if c != code[-1])
    for bad in (codes.display(code), code.lower(), wrong_check, code[:-1], "99" + code[2:]):
        with pytest.raises(codes.CodeFormatError):
            render_label(bad, url, fmt)


@pytest.mark.parametrize("fmt", list(LabelFormat))
def test_refuses_urls_that_are_not_printable_ascii(fmt: LabelFormat) -> None:
    code, url = _labels(1)[0]
    for bad in ("", url + " x", url + "\n", url + "/产地", url + "\x7f"):
        with pytest.raises(ValueError, match="printable ASCII"):
            render_label(code, bad, fmt)


def test_sheet_checks_every_label() -> None:
    items = _labels(3)
    items[1] = (items[1][0].lower(), items[1][1])
    with pytest.raises(codes.CodeFormatError):
        render_sheet(items)


# --------------------------------------------------------------------------------------------
# ZIP
# --------------------------------------------------------------------------------------------


def test_zip_streams_a_valid_archive_of_svg_labels() -> None:
    items = [(serial, code, url) for serial, (code, url) in enumerate(_labels(200), start=1)]
    consumed = 0

    def source() -> Iterator[tuple[int, str, str]]:
        nonlocal consumed
        for item in items:
            consumed += 1
            yield item

    chunks = []
    consumed_at_first_chunk = None
    for chunk in labels_zip(source()):
        if consumed_at_first_chunk is None:
            consumed_at_first_chunk = consumed
        assert chunk
        chunks.append(chunk)
    # Streamed: the first bytes left before the last label was rendered.
    assert len(chunks) > 1
    assert consumed_at_first_chunk is not None and consumed_at_first_chunk < len(items)
    assert max(len(chunk) for chunk in chunks[:-1]) < 64 * 1024 + 16 * 1024

    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as archive:
        assert archive.testzip() is None  # every CRC checks
        entries = archive.infolist()
        assert [entry.filename for entry in entries] == [
            f"{serial:07d}-{code}.svg" for serial, code, _ in items
        ]
        assert {entry.compress_type for entry in entries} == {zipfile.ZIP_DEFLATED}
        for (_, code, url), entry in zip(items, entries, strict=True):
            svg = archive.read(entry)
            assert svg == render_label(code, url, LabelFormat.SVG)
            assert f">{codes.display(code)}</text>".encode() in svg
        [barcode] = _decode(_render_svg(archive.read(entries[123])))
        assert barcode.text == items[123][2]


def test_zip_of_nothing_is_an_empty_archive() -> None:
    data = b"".join(labels_zip([]))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == []


def test_zip_refuses_bad_items() -> None:
    code, url = _labels(1)[0]
    with pytest.raises(ValueError):
        b"".join(labels_zip([(-1, code, url)]))
    with pytest.raises(codes.CodeFormatError):
        b"".join(labels_zip([(1, code.lower(), url)]))


def test_zip_past_65535_entries_gets_zip64_end_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """The archive's framing at a size where classic ZIP runs out of entry count; the labels
    are stubbed out (70,000 real ones would take minutes)."""
    monkeypatch.setattr(labels, "_qr", lambda url: url)
    monkeypatch.setattr(labels, "_svg", lambda qr, text: f"<svg>{text}</svg>".encode())
    code, url = _labels(1)[0]
    count = 70_000
    data = b"".join(labels_zip((serial, code, url) for serial in range(count)))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        entries = archive.infolist()
        assert len(entries) == count
        assert entries[-1].filename == f"{count - 1:07d}-{code}.svg"
        assert archive.read(entries[-1]) == f"<svg>{codes.display(code)}</svg>".encode()
