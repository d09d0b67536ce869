from __future__ import annotations

import codecs
from pathlib import Path

import openpyxl
import pytest

from agritrace_cli.files import (
    SubjectFileError,
    cell_text,
    count_subject_records,
    iter_subject_records,
    read_header,
)

HEADER = (
    "source_record_id,kind,name,credit_code,resident_id,division_code,address,"
    "legal_representative,contact_phone"
)


def write_csv(path: Path, lines: list[str], with_bom: bool) -> Path:
    data = ("\n".join(lines) + "\n").encode("utf-8")
    path.write_bytes((codecs.BOM_UTF8 if with_bom else b"") + data)
    return path


@pytest.mark.parametrize("with_bom", [True, False])
def test_csv_with_or_without_bom(tmp_path: Path, with_bom: bool) -> None:
    path = write_csv(
        tmp_path / "subjects.csv",
        [
            HEADER,
            "zj-1,企业,杭州甲公司,91330100MA27XXXX1A,,330102,杭州市上城区,王五,",
            ",农户,张三,,330102199001011234,330106,,,13800001111",
            ",,,,,,,,",
            '"zj-3",加工企业,"乙食品, 有限公司",91330100MA27YYYY2B,,330102,"多行\n地址",,',
        ],
        with_bom,
    )
    records = list(iter_subject_records(path))
    assert [record.source_record_id for record in records] == ["zj-1", "row-3", "zj-3"]
    first, second, third = records
    assert first.kind_name == "SUBJECT_KIND_ENTERPRISE"
    assert first.name == "杭州甲公司"
    assert first.credit_code == "91330100MA27XXXX1A"
    assert first.division_code == "330102"
    assert first.legal_representative == "王五"
    assert second.resident_id == "330102199001011234"
    assert second.contact_phone == "13800001111"
    assert second.kind_name == "SUBJECT_KIND_INDIVIDUAL_FARMER"
    assert third.name == "乙食品, 有限公司"
    assert third.address == "多行\n地址"
    assert third.line_number == 5
    assert count_subject_records(path) == 3


def test_personal_data_stays_out_of_repr(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "subjects.csv",
        [HEADER, "x,农户,张三,,330102199001011234,330106,,,13800001111"],
        with_bom=False,
    )
    (record,) = iter_subject_records(path)
    assert "330102199001011234" not in repr(record)
    assert "13800001111" not in repr(record)


def test_header_is_normalised_and_extra_columns_ignored(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "subjects.csv",
        ["Kind, Name ,Division Code,remarks", "enterprise,甲,330102,ignored"],
        with_bom=True,
    )
    assert read_header(path).ignored_columns == ("remarks",)
    (record,) = iter_subject_records(path)
    assert (record.kind_text, record.name, record.division_code) == ("enterprise", "甲", "330102")
    assert record.source_record_id == "row-2"


def test_header_without_required_columns_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "subjects.csv", ["a,b,c", "1,2,3"], with_bom=False)
    with pytest.raises(SubjectFileError, match="lacks kind, name, division_code"):
        read_header(path)


def test_non_utf8_csv_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes((HEADER + "\nx,企业,杭州甲公司,,,330102,,,\n").encode("gbk"))
    with pytest.raises(SubjectFileError, match="not UTF-8"):
        count_subject_records(path)
    with pytest.raises(SubjectFileError, match="not UTF-8"):
        list(iter_subject_records(path))


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(codecs.BOM_UTF8)
    with pytest.raises(SubjectFileError, match="empty"):
        list(iter_subject_records(path))


def test_xlsx_first_sheet_streamed(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "主体"
    sheet.append(HEADER.split(","))
    sheet.append(["zj-1", "ENTERPRISE", "杭州甲公司", "91330100MA27XXXX1A", None, 330102])
    sheet.append([None] * 9)
    sheet.append(
        [
            None,
            "家庭农场",
            "李家农场",
            None,
            "330102198002023456",
            330106.0,
            "某村",
            "李四",
            13900002222,
        ]
    )
    second_sheet = workbook.create_sheet("other")
    second_sheet.append(["not", "read"])
    path = tmp_path / "subjects.xlsx"
    workbook.save(path)

    records = list(iter_subject_records(path))
    assert count_subject_records(path) == 2
    assert [record.source_record_id for record in records] == ["zj-1", "row-4"]
    first, second = records
    assert first.division_code == "330102"
    assert first.resident_id == ""
    assert first.contact_phone == ""
    assert second.kind_name == "SUBJECT_KIND_FAMILY_FARM"
    assert second.division_code == "330106"
    assert second.contact_phone == "13900002222"
    assert second.resident_id == "330102198002023456"


def test_legacy_xls_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0" + b"\0" * 100)
    with pytest.raises(SubjectFileError, match=r"legacy \.xls"):
        count_subject_records(path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, ""), (330102, "330102"), (330102.0, "330102"), (1.5, "1.5"), ("  a ", "a")],
)
def test_cell_text(value: object, expected: str) -> None:
    assert cell_text(value) == expected


@pytest.mark.parametrize("write_only", [False, True])
def test_xlsx_count_matches_the_records_read(tmp_path: Path, write_only: bool) -> None:
    # write_only workbooks use inline strings and no <dimension>; normal ones shared strings.
    workbook = openpyxl.Workbook(write_only=write_only)
    sheet = workbook.create_sheet("data", 0)
    workbook.create_sheet("notes").append(["not", "counted"])
    sheet.append(HEADER.split(","))
    for number in range(25):
        if number % 5 == 0:
            sheet.append([None, None, None])
        sheet.append([f"id-{number}", "企业", f"公司{number}", None, None, 330102 + number])
    path = tmp_path / "count.xlsx"
    workbook.save(path)

    records = list(iter_subject_records(path))

    assert len(records) == 25
    assert count_subject_records(path) == 25
    assert records[-1].division_code == "330126"
