"""`agritrace subjects import` end to end against the in-process fake registry."""

from __future__ import annotations

import codecs
import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

import openpyxl
import pytest

if TYPE_CHECKING:
    from agritrace_cli.tests.conftest import CliInvoker, RunningRegistry

RESIDENT_ID = "330102199001011234"
PHONE = "13800001111"
HEADER = (
    "source_record_id,kind,name,credit_code,resident_id,division_code,address,"
    "legal_representative,contact_phone"
)
ROWS = [
    "zj-1,企业,杭州甲公司,91330100MA27XXXX1A,,330102,上城区,王五,",
    f"zj-2,农户,张三,,{RESIDENT_ID},330106,,,{PHONE}",
    ",养蜂户,无类型,91330100MA27ZZZZ3C,,330102,,,",  # unknown kind; no source id: row-4
    "",  # blank line: skipped
    "zj-4,ENTERPRISE,杭州甲公司,91330100MA27XXXX1A,,330102,,,",  # same subject: merged
    f"zj-5,individual_farmer,李四,,{RESIDENT_ID},330106,,,",  # same person, other name
    "zj-6,SUBJECT_KIND_COOPERATIVE,丰收合作社,93330100MA27COOP1X,,330102,,,",
    "zj-7,家庭农场,山下农场,92330100MA27FARM2Y,,999999,,,",  # bad division: rejected
]
ALL_SOURCE_IDS = ["zj-1", "zj-2", "row-4", "zj-4", "zj-5", "zj-6", "zj-7"]
EXPECTED_OUTCOMES = {
    "zj-1": "CREATED",
    "zj-2": "CREATED",
    "row-4": "REJECTED",
    "zj-4": "MERGED",
    "zj-5": "CONFLICT",
    "zj-6": "CREATED",
    "zj-7": "REJECTED",
}


def write_subject_csv(directory: Path) -> Path:
    path = directory / "zhejiang.csv"
    path.write_bytes(codecs.BOM_UTF8 + ("\n".join([HEADER, *ROWS]) + "\n").encode("utf-8"))
    return path


def read_report(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as stream:
        return list(csv.DictReader(stream))


def read_checkpoint(report_path: Path) -> dict[str, object]:
    checkpoint_path = report_path.with_name(report_path.name + ".checkpoint.json")
    loaded: dict[str, object] = json.loads(checkpoint_path.read_text(encoding="utf-8"))
    return loaded


def test_import_writes_report_counts_and_checkpoint(
    tmp_path: Path, registry: RunningRegistry, run_cli: CliInvoker
) -> None:
    source = write_subject_csv(tmp_path)
    report = tmp_path / "out" / "report.csv"
    report.parent.mkdir()

    result = run_cli(
        "subjects",
        "import",
        str(source),
        "--province",
        "33",
        "--batch-size",
        "2",
        "--report",
        str(report),
    )

    assert result.exit_code == 0, result.output
    (call,) = registry.fake.import_calls
    assert call.source_record_ids == ALL_SOURCE_IDS
    assert call.batch_sizes == [2, 2, 2, 1]
    assert call.source_province == "33"
    assert call.import_id.startswith("province-33-sha256-")

    lines = read_report(report)
    assert {line["source_record_id"]: line["outcome"] for line in lines} == EXPECTED_OUTCOMES
    assert [line["source_record_id"] for line in lines] == ALL_SOURCE_IDS
    by_id = {line["source_record_id"]: line for line in lines}
    assert by_id["row-4"]["field"] == "kind"
    assert by_id["zj-4"]["subject_id"] == by_id["zj-1"]["subject_id"]
    assert by_id["zj-5"]["field"] == "name"
    assert by_id["zj-7"]["field"] == "division_code"

    # The fake quotes the resident ID in its conflict reason; neither report nor terminal may.
    report_text = report.read_text(encoding="utf-8-sig")
    for personal_value in (RESIDENT_ID, PHONE):
        assert personal_value not in report_text
        assert personal_value not in result.output
    assert "*** is registered under another name" in by_id["zj-5"]["reason"]

    for label, count in (("created", 3), ("merged", 1), ("conflict", 1), ("rejected", 2)):
        assert any(line.split() == [label, str(count)] for line in _table_lines(result.output)), (
            label,
            result.output,
        )

    checkpoint = read_checkpoint(report)
    assert checkpoint["records_confirmed"] == 7
    assert checkpoint["completed"] is True
    assert checkpoint["import_id"] == call.import_id
    assert checkpoint["counts"] == {"created": 3, "merged": 1, "conflict": 1, "rejected": 2}


def _table_lines(output: str) -> list[str]:
    """Table rows with the box-drawing borders removed."""
    return [line.replace("│", " ").replace("┃", " ") for line in output.splitlines()]


def test_interrupted_import_resumes_after_confirmed_records(
    tmp_path: Path, registry: RunningRegistry, run_cli: CliInvoker
) -> None:
    source = write_subject_csv(tmp_path)
    report = tmp_path / "report.csv"
    arguments = (
        "subjects",
        "import",
        str(source),
        "--province",
        "33",
        "--batch-size",
        "2",
        "--report",
        str(report),
    )
    registry.fake.fail_import_after_batches = 2

    interrupted = run_cli(*arguments)

    assert interrupted.exit_code == 1
    assert "UNAVAILABLE" in interrupted.output
    assert "run the same command again to resume" in interrupted.output
    assert [line["source_record_id"] for line in read_report(report)] == ALL_SOURCE_IDS[:4]
    checkpoint = read_checkpoint(report)
    assert checkpoint["records_confirmed"] == 4
    assert checkpoint["completed"] is False

    # A line written after the last checkpoint (a crash between the two) must not survive.
    with report.open("a", encoding="utf-8") as stream:
        stream.write("zj-4,MERGED,half-written,,\n")
    registry.fake.fail_import_after_batches = None

    resumed = run_cli(*arguments)

    assert resumed.exit_code == 0, resumed.output
    assert "4 records already confirmed" in resumed.output
    first_call, second_call = registry.fake.import_calls
    assert first_call.source_record_ids == ALL_SOURCE_IDS[:4]
    assert second_call.source_record_ids == ALL_SOURCE_IDS[4:]
    assert second_call.import_id == first_call.import_id
    lines = read_report(report)
    assert [line["source_record_id"] for line in lines] == ALL_SOURCE_IDS
    assert {line["source_record_id"]: line["outcome"] for line in lines} == EXPECTED_OUTCOMES
    checkpoint = read_checkpoint(report)
    assert checkpoint["records_confirmed"] == 7
    assert checkpoint["completed"] is True
    assert checkpoint["counts"] == {"created": 3, "merged": 1, "conflict": 1, "rejected": 2}


def test_finished_import_is_not_sent_again_unless_asked(
    tmp_path: Path, registry: RunningRegistry, run_cli: CliInvoker
) -> None:
    source = write_subject_csv(tmp_path)
    report = tmp_path / "report.csv"
    arguments = ("subjects", "import", str(source), "--province", "33", "--report", str(report))
    assert run_cli(*arguments).exit_code == 0

    again = run_cli(*arguments)

    assert again.exit_code == 0, again.output
    assert "already finished" in again.output
    assert len(registry.fake.import_calls) == 1

    from_scratch = run_cli(*arguments, "--no-resume")

    assert from_scratch.exit_code == 0, from_scratch.output
    assert len(registry.fake.import_calls) == 2
    assert registry.fake.import_calls[1].source_record_ids == ALL_SOURCE_IDS
    # The server answers replays with the first outcome; the report is rewritten, not appended.
    lines = read_report(report)
    assert {line["source_record_id"]: line["outcome"] for line in lines} == EXPECTED_OUTCOMES
    assert len(lines) == len(ALL_SOURCE_IDS)


def test_import_of_xlsx_with_default_report_path(
    tmp_path: Path,
    registry: RunningRegistry,
    run_cli: CliInvoker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(HEADER.split(","))
    for row in ROWS:
        if row:
            sheet.append(row.split(","))
    source = tmp_path / "upload.xlsx"
    workbook.save(source)
    working_directory = tmp_path / "cwd"
    working_directory.mkdir()

    monkeypatch.chdir(working_directory)
    result = run_cli("subjects", "import", str(source), "--province", "33")

    assert result.exit_code == 0, result.output
    report = working_directory / "upload.import-report.csv"
    lines = read_report(report)
    # Spreadsheet row numbers name the row without an id (the blank CSV line is not there).
    assert [line["source_record_id"] for line in lines] == [
        "zj-1",
        "zj-2",
        "row-4",
        "zj-4",
        "zj-5",
        "zj-6",
        "zj-7",
    ]
    assert registry.fake.import_calls[0].batch_sizes == [7]


def test_import_refuses_a_file_without_the_needed_columns(
    tmp_path: Path, registry: RunningRegistry, run_cli: CliInvoker
) -> None:
    source = tmp_path / "wrong.csv"
    source.write_text("id,title\n1,x\n", encoding="utf-8")

    result = run_cli(
        "subjects",
        "import",
        str(source),
        "--province",
        "33",
        "--report",
        str(tmp_path / "r.csv"),
    )

    assert result.exit_code == 2
    assert "lacks kind, name, division_code" in result.output
    assert registry.fake.import_calls == []


def test_import_rejects_a_bad_province(tmp_path: Path, run_cli: CliInvoker) -> None:
    source = write_subject_csv(tmp_path)
    result = run_cli("subjects", "import", str(source), "--province", "zj")
    assert result.exit_code == 2
    assert "two digits" in result.output


def test_answers_that_do_not_match_the_batch_stop_the_import_unconfirmed(
    tmp_path: Path, registry: RunningRegistry, run_cli: CliInvoker
) -> None:
    source = write_subject_csv(tmp_path)
    report = tmp_path / "report.csv"
    registry.fake.drop_last_result_of_each_batch = True

    result = run_cli("subjects", "import", str(source), "--province", "33", "--report", str(report))

    assert result.exit_code == 1
    assert "a batch of 7 records was answered with 6 results" in result.output
    assert read_report(report) == []
    assert read_checkpoint(report)["records_confirmed"] == 0
