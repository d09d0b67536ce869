"""Rich output: consoles, subject tables, the import summary, JSON.

Every server-supplied string is wrapped in rich.text.Text, so that a name such as "[bold]"
is shown as typed instead of being read as console markup. Subjects are shown exactly as the
server returns them: personal fields arrive masked.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable

from google.protobuf import json_format, timestamp_pb2
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from agritrace.registry.v1 import registry_pb2
from agritrace_cli.checkpoint import OutcomeCounts
from agritrace_cli.choices import KIND_PREFIX, STATUS_PREFIX, short_enum_name


def stdout_console() -> Console:
    """A console on the current stdout (made per command so that test runners' captured
    streams and the COLUMNS of the moment are honoured)."""
    return Console(highlight=False)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def kind_label(kind: registry_pb2.SubjectKind) -> str:
    return short_enum_name(registry_pb2.SubjectKind.Name(kind), KIND_PREFIX)


def status_label(status: registry_pb2.SubjectStatus) -> str:
    return short_enum_name(registry_pb2.SubjectStatus.Name(status), STATUS_PREFIX)


def timestamp_label(timestamp: timestamp_pb2.Timestamp) -> str:
    if timestamp.seconds == 0 and timestamp.nanos == 0:
        return ""
    return timestamp.ToDatetime(tzinfo=datetime.UTC).isoformat(timespec="seconds")


def subject_table(subject: registry_pb2.Subject) -> Table:
    """One subject as a two-column field/value table."""
    table = Table(show_header=False, title=Text(f"Subject {subject.subject_id}"))
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows: list[tuple[str, str]] = [
        ("subject_id", subject.subject_id),
        ("kind", kind_label(subject.kind)),
        ("name", subject.name),
        ("status", status_label(subject.status)),
        ("status_reason", subject.status_reason),
        ("credit_code", subject.credit_code),
        ("resident_id (masked)", subject.resident_id_masked),
        ("division_code", subject.division_code),
        ("address", subject.address),
        ("legal_representative", subject.legal_representative),
        ("contact_phone (masked)", subject.contact_phone_masked),
        ("review_flags", ", ".join(subject.review_flags)),
        ("suspected_duplicate_ids", ", ".join(subject.suspected_duplicate_ids)),
        ("version", str(subject.version)),
        ("create_time", timestamp_label(subject.create_time)),
        ("update_time", timestamp_label(subject.update_time)),
    ]
    for provenance in subject.provenance:
        record = f" record {provenance.source_record_id}" if provenance.source_record_id else ""
        first_seen = timestamp_label(provenance.first_seen_time)
        seen = f" (first seen {first_seen})" if first_seen else ""
        rows.append(("provenance", f"{provenance.source}{record}{seen}"))
    for label, value in rows:
        if value:
            table.add_row(Text(label), Text(value))
    return table


def subject_list_table(subjects: Iterable[registry_pb2.Subject], title: str | None = None) -> Table:
    # Light borders leave room for names on an 80-column terminal.
    table = Table(
        title=Text(title) if title else None,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in ("subject_id", "kind", "division", "status"):
        table.add_column(column, no_wrap=True)
    table.add_column("name", overflow="fold", min_width=8)
    table.add_column("flags", overflow="fold", min_width=8)
    for subject in subjects:
        table.add_row(
            Text(subject.subject_id),
            Text(kind_label(subject.kind)),
            Text(subject.division_code),
            Text(status_label(subject.status)),
            Text(subject.name),
            Text(", ".join(subject.review_flags)),
        )
    return table


def subject_json(subject: registry_pb2.Subject) -> str:
    """The subject as JSON with the proto's field names and every field present."""
    as_dict = json_format.MessageToDict(
        subject,
        always_print_fields_with_no_presence=True,
        preserving_proto_field_name=True,
    )
    return json.dumps(as_dict, ensure_ascii=False, indent=2)


def subject_json_line(subject: registry_pb2.Subject) -> str:
    as_dict = json_format.MessageToDict(subject, preserving_proto_field_name=True)
    return json.dumps(as_dict, ensure_ascii=False)


def import_summary_table(
    this_run: OutcomeCounts, all_runs: OutcomeCounts, resumed_records: int
) -> Table:
    table = Table(title=Text("Import summary"))
    table.add_column("outcome")
    table.add_column("this run", justify="right")
    if resumed_records:
        table.add_column("incl. earlier runs", justify="right")
    rows = (
        ("created", this_run.created, all_runs.created),
        ("merged", this_run.merged, all_runs.merged),
        ("conflict", this_run.conflict, all_runs.conflict),
        ("rejected", this_run.rejected, all_runs.rejected),
        ("total", this_run.total, all_runs.total),
    )
    for label, this_run_count, all_runs_count in rows:
        cells = [Text(label), Text(str(this_run_count))]
        if resumed_records:
            cells.append(Text(str(all_runs_count)))
        table.add_row(*cells)
    return table


def outcome_counts_label(counts: OutcomeCounts) -> str:
    return (
        f"created {counts.created} · merged {counts.merged} · "
        f"conflict {counts.conflict} · rejected {counts.rejected}"
    )
