"""The drop-folder adapter on a temporary folder: CSV and XLSX in, pages and cursors that
resume, files moved aside, bad files rejected with a note, national records out as atomically
written CSV files, pushed once."""

from __future__ import annotations

import csv
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from openpyxl import Workbook

from agritrace_bridge.adapters.drop_folder import (
    SUBJECT_COLUMNS,
    TRACE_COLUMNS,
    DropFolderProvincialPlatform,
)
from agritrace_bridge.contract import NationalRecord
from agritrace_bridge.service_layer.ports import (
    NotSupported,
    PlatformRejected,
    ProvincialPlatform,
)

PERSON_ID = "370102199001011237"


def subject_rows(first: int, count: int) -> list[dict[str, str]]:
    return [{"source_record_id": f"37-{i:05d}", "kind": "INDIVIDUAL_FARMER",
             "name": f"农户{i}", "resident_id": PERSON_ID, "division_code": "370102",
             "contact_phone": "13800001111"} for i in range(first, first + count)]


def drop(folder: DropFolderProvincialPlatform, name: str, rows: list[dict[str, object]],
         columns: tuple[str, ...], *, age: int = 0) -> Path:
    """Writes a file the way a province should: under a hidden name, then renamed into the
    inbox; `age` seconds in the past, to order arrivals."""
    temporary = folder.inbox / f".{name}.part"
    if name.endswith(".xlsx"):
        workbook = Workbook()
        sheet = workbook.active
        assert sheet is not None
        sheet.append(list(columns))
        for row in rows:
            sheet.append([row.get(column) for column in columns])
        workbook.save(temporary)
    else:
        with temporary.open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(columns))
            writer.writeheader()
            writer.writerows(rows)
    target = folder.inbox / name
    os.replace(temporary, target)
    moment = datetime.now().timestamp() - age
    os.utime(target, (moment, moment))
    return target


@pytest.fixture
def folder(tmp_path: Path) -> DropFolderProvincialPlatform:
    return DropFolderProvincialPlatform(tmp_path / "province-37", "37",
                                        clock=lambda: datetime(2024, 5, 1, tzinfo=UTC))


def names(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def test_the_adapter_is_a_provincial_platform(folder: DropFolderProvincialPlatform) -> None:
    assert isinstance(folder, ProvincialPlatform)
    assert folder.health().province == "37"
    with pytest.raises(NotSupported):
        folder.verify_token("token")


def test_subjects_are_paged_across_files_in_arrival_order_and_moved_aside(
        folder: DropFolderProvincialPlatform) -> None:
    drop(folder, "subjects-b.csv", subject_rows(0, 7), SUBJECT_COLUMNS, age=20)
    drop(folder, "subjects-a.xlsx", subject_rows(7, 5), SUBJECT_COLUMNS, age=10)
    first = folder.list_subjects(page_size=4)
    assert [s.source_record_id for s in first.subjects] == [f"37-{i:05d}" for i in range(4)]
    assert first.total_size == 12 and first.next_page_token
    assert names(folder.work) == ["000001-subjects-b.csv", "000002-subjects-a.xlsx"]
    second = folder.list_subjects(first.next_page_token, 4)
    assert [s.source_record_id for s in second.subjects] == \
        ["37-00004", "37-00005", "37-00006", "37-00007"]  # across the two files
    # Nothing is acknowledged until a call starts beyond a file.
    assert names(folder.processed) == []
    third = folder.list_subjects(second.next_page_token, 3)
    assert names(folder.processed) == ["000001-subjects-b.csv"]
    last = folder.list_subjects(third.next_page_token, 10)
    assert [s.source_record_id for s in last.subjects][-1] == "37-00011"
    assert last.next_page_token == ""
    assert names(folder.work) == [] and len(names(folder.processed)) == 2
    # Resuming from an old checkpoint reads the same rows again, although the files moved.
    assert folder.list_subjects(first.next_page_token, 4).subjects == second.subjects
    person = last.subjects[0]
    assert person.resident_id == PERSON_ID and PERSON_ID not in repr(person)


def test_a_position_past_every_file_ends_the_listing(
        folder: DropFolderProvincialPlatform) -> None:
    drop(folder, "subjects.csv", subject_rows(0, 2), SUBJECT_COLUMNS)
    assert len(folder.list_subjects().subjects) == 2
    beyond = folder.list_subjects("000009:0")  # a file an operator removed, say
    assert beyond.subjects == [] and beyond.next_page_token == ""


def test_an_empty_folder_lists_nothing(folder: DropFolderProvincialPlatform) -> None:
    assert folder.list_subjects().subjects == []
    empty = folder.list_trace_records()
    assert empty.records == [] and empty.next_cursor == "" and not empty.has_more


def trace_rows() -> list[dict[str, object]]:
    base = {"batch_id": "B37ABCDEFGHJKMNP"}
    return [
        base | {"record_id": "T1", "occur_time": "2024-03-01 08:00", "activity": "planting",
                "variety": "寿光番茄", "area_mu": "12.5"},
        base | {"record_id": "T2", "occur_time": "2024-03-10T08:00:00+08:00",
                "activity": "FERTILISER", "name": "复合肥", "amount": "50", "unit": "kg"},
        base | {"record_id": "T3", "occur_time": "2024-03-20 08:00", "activity": "PESTICIDE",
                "name": "吡虫啉", "registration_number": "PD20080001", "amount": "1.5",
                "unit": "KG", "pre_harvest_interval_days": "7"},
        base | {"record_id": "T4", "occur_time": "2024-03-21 08:00", "activity": "FEED",
                "name": "玉米", "amount": "300", "unit": "KG"},
        base | {"record_id": "T5", "occur_time": "2024-03-22 08:00",
                "activity": "VETERINARY_DRUG", "name": "阿莫西林",
                "approval_number": "兽药字123", "amount": "5", "unit": "G",
                "withdrawal_period_days": "14"},
        base | {"record_id": "T6", "occur_time": "2024-04-01 08:00", "activity": "INSPECTION",
                "item": "农药残留", "passed": "合格", "result": "未检出", "inspector": "质检站"},
        base | {"record_id": "T7", "occur_time": "2024-04-02 08:00", "activity": "HARVEST",
                "amount": "1200", "unit": "KG"},
        base | {"record_id": "T8", "occur_time": "2024-04-03 08:00", "activity": "SLAUGHTER",
                "heads": "20", "quarantine_certificate": "动检001"},
    ]


def test_every_activity_reads_from_the_flat_columns(
        folder: DropFolderProvincialPlatform) -> None:
    drop(folder, "trace-records-1.csv", trace_rows(), TRACE_COLUMNS)
    page = folder.list_trace_records()
    by_id = {r.record_id: r for r in page.records}
    assert [r.activity.type for r in page.records] == [
        "PLANTING", "FERTILISER", "PESTICIDE", "FEED", "VETERINARY_DRUG", "INSPECTION",
        "HARVEST", "SLAUGHTER"]
    planting, fertiliser, pesticide = by_id["T1"].activity, by_id["T2"].activity, \
        by_id["T3"].activity
    assert planting.type == "PLANTING" and planting.area_mu == "12.5"
    assert fertiliser.type == "FERTILISER" and fertiliser.amount.unit == "KG"
    assert pesticide.type == "PESTICIDE" and pesticide.pre_harvest_interval_days == 7
    drug, inspection = by_id["T5"].activity, by_id["T6"].activity
    assert drug.type == "VETERINARY_DRUG" and drug.dose.amount == "5"
    assert drug.withdrawal_period_days == 14
    assert inspection.type == "INSPECTION" and inspection.passed is True
    # A time without an offset is China time.
    assert by_id["T1"].occur_time == datetime(2024, 3, 1, 8,
                                              tzinfo=timezone(timedelta(hours=8)))


def test_trace_records_follow_a_cursor_that_acknowledges_files(
        folder: DropFolderProvincialPlatform) -> None:
    drop(folder, "trace-records-2.xlsx", trace_rows()[:5], TRACE_COLUMNS, age=30)
    first = folder.list_trace_records(limit=3)
    assert [r.record_id for r in first.records] == ["T1", "T2", "T3"] and first.has_more
    end = folder.list_trace_records(first.next_cursor)
    assert [r.record_id for r in end.records] == ["T4", "T5"] and not end.has_more
    # A file arriving later is read after, whatever its name.
    drop(folder, "trace-records-0.csv", trace_rows()[5:], TRACE_COLUMNS, age=5)
    later = folder.list_trace_records(end.next_cursor)
    assert [r.record_id for r in later.records] == ["T6", "T7", "T8"]
    assert names(folder.processed) == ["000001-trace-records-2.xlsx"]
    quiet = folder.list_trace_records(later.next_cursor)
    assert quiet.records == [] and quiet.next_cursor == later.next_cursor
    assert names(folder.work) == []


def test_bad_files_are_rejected_with_a_note_that_names_rows_not_values(
        folder: DropFolderProvincialPlatform) -> None:
    rows = subject_rows(0, 3)
    rows[1]["source_record_id"] = ""
    drop(folder, "subjects-bad.csv", rows, SUBJECT_COLUMNS, age=30)
    drop(folder, "trace-records-bad.csv", [trace_rows()[0] | {"activity": "DANCING"}],
         TRACE_COLUMNS, age=20)
    drop(folder, "readme.txt", [], ("x",), age=10)
    (folder.inbox / "subjects-half.csv.part").write_text("still being written")
    assert folder.list_subjects().subjects == []
    assert names(folder.rejected) == [  # numbered in arrival order
        "000001-subjects-bad.csv", "000001-subjects-bad.csv.errors.txt",
        "000002-trace-records-bad.csv", "000002-trace-records-bad.csv.errors.txt",
        "000003-readme.txt", "000003-readme.txt.errors.txt"]
    note = (folder.rejected / "000001-subjects-bad.csv.errors.txt").read_text()
    assert "row 3: source_record_id" in note and PERSON_ID not in note
    assert "activity: must be one of" in \
        (folder.rejected / "000002-trace-records-bad.csv.errors.txt").read_text()
    assert "unknown file" in (folder.rejected / "000003-readme.txt.errors.txt").read_text()
    assert names(folder.inbox) == ["subjects-half.csv.part"]


def test_bad_positions_and_sizes_are_refused(folder: DropFolderProvincialPlatform) -> None:
    drop(folder, "subjects.csv", subject_rows(0, 2), SUBJECT_COLUMNS)
    with pytest.raises(PlatformRejected) as bad_token:
        folder.list_subjects("nonsense")
    assert bad_token.value.reason == "INVALID_ARGUMENT"
    with pytest.raises(PlatformRejected):
        folder.list_trace_records(limit=-1)


def national(record_id: str, subject_id: str = "S37ABC") -> NationalRecord:
    return NationalRecord(record_id=record_id, type="SUBJECT_REGISTERED",
                          occur_time=datetime(2024, 5, 1, 8, tzinfo=UTC),
                          subject_id=subject_id, payload={"name": "济南绿源农业"})


def test_national_records_go_out_as_csv_files_once(
        folder: DropFolderProvincialPlatform, tmp_path: Path) -> None:
    result = folder.push_national_record(national("evt-1"))
    assert not result.replayed
    out = folder.outbox / "national-record-evt-1.csv"
    with out.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [{"record_id": "evt-1", "type": "SUBJECT_REGISTERED",
                     "occur_time": "2024-05-01T08:00:00Z", "subject_id": "S37ABC",
                     "payload": '{"name": "济南绿源农业"}'}]
    assert [p.name for p in folder.outbox.iterdir()] == ["national-record-evt-1.csv"]
    # The province takes the file; a repeated push is still recognised (a new process too).
    out.unlink()
    reopened = DropFolderProvincialPlatform(tmp_path / "province-37", "37")
    again = reopened.push_national_record(national("evt-1"))
    assert again.replayed and again.accepted_time == result.accepted_time
    assert not out.exists()
    with pytest.raises(PlatformRejected) as conflict:
        reopened.push_national_record(national("evt-1", subject_id="S37OTHER"))
    assert conflict.value.reason == "RECORD_CONFLICT" and not conflict.value.retryable


def test_a_record_id_that_is_no_file_name_is_hashed(
        folder: DropFolderProvincialPlatform) -> None:
    folder.push_national_record(national(".hidden"))
    (written,) = folder.outbox.iterdir()
    assert written.name.startswith("national-record-") and ".hidden" not in written.name


def test_a_torn_ledger_line_is_not_an_acknowledged_push(tmp_path: Path) -> None:
    root = tmp_path / "p"
    first = DropFolderProvincialPlatform(root, "37")
    first.push_national_record(national("evt-1"))
    with (root / "state" / "pushed.jsonl").open("a") as ledger:
        ledger.write('{"record_id": "evt-2", "dig')  # the process died mid-write
    reopened = DropFolderProvincialPlatform(root, "37")
    assert reopened.push_national_record(national("evt-1")).replayed
    assert not reopened.push_national_record(national("evt-2")).replayed
