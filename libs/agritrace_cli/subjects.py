"""`agritrace subjects ...`: register, review, look up, list and bulk-import subjects."""

from __future__ import annotations

import dataclasses
import enum
import re
import uuid
from pathlib import Path
from typing import Annotated, Final

import grpc
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from agritrace.registry.v1 import registry_pb2
from agritrace_cli.checkpoint import (
    ImportCheckpoint,
    OutcomeCounts,
    checkpoint_path_for,
    load_checkpoint,
    save_checkpoint,
)
from agritrace_cli.choices import (
    UNSPECIFIED_KIND,
    UNSPECIFIED_STATUS,
    kind_choices_help,
    parse_subject_kind,
    parse_subject_status,
)
from agritrace_cli.client import (
    RPC_ERROR_EXIT_CODE,
    ClientSettings,
    exit_on_rpc_error,
    print_rpc_error,
    registry_stub,
    settings_from_context,
)
from agritrace_cli.files import (
    SubjectFileError,
    count_subject_records,
    file_sha256,
    read_header,
)
from agritrace_cli.importer import (
    MAX_BATCH_SIZE,
    MAX_IMPORT_ID_LENGTH,
    ImportPlan,
    ImportProtocolError,
    ImportSession,
    derive_import_id,
)
from agritrace_cli.options import JsonOption, RequestIdOption
from agritrace_cli.rendering import (
    import_summary_table,
    outcome_counts_label,
    stderr_console,
    stdout_console,
    subject_json,
    subject_json_line,
    subject_list_table,
    subject_table,
)
from agritrace_cli.report import ReportWriter

FILE_ERROR_EXIT_CODE: Final = 2
INTERRUPTED_EXIT_CODE: Final = 130
MAX_PAGE_SIZE: Final = 1000
PROMPT_FOR_VALUE: Final = "-"
_PROVINCE_CODE = re.compile(r"\d{2}")

subjects_app = typer.Typer(
    name="subjects",
    help="Register, review, look up, list and bulk-import producers and traders (主体).",
    no_args_is_help=True,
)


class Decision(enum.StrEnum):
    """The review decisions, as typed on the command line."""

    APPROVE = "approve"
    REJECT = "reject"
    SUSPEND = "suspend"
    REINSTATE = "reinstate"

    @property
    def proto_name(self) -> str:
        return f"REVIEW_DECISION_{self.name}"

    @property
    def needs_reason(self) -> bool:
        return self in (Decision.REJECT, Decision.SUSPEND)


# ---------------------------------------------------------------- option parsing helpers


def _kind_option(value: str | None) -> str | None:
    if value is None:
        return None
    kind_name = parse_subject_kind(value)
    if kind_name == UNSPECIFIED_KIND:
        raise typer.BadParameter(f"unknown kind {value!r}; one of: {kind_choices_help()}")
    return kind_name


def _status_option(value: str | None) -> str | None:
    if value is None:
        return None
    status_name = parse_subject_status(value)
    if status_name is None:
        raise typer.BadParameter(
            f"unknown status {value!r}; one of: pending_review, approved, rejected, suspended"
        )
    return status_name


def _province_option(value: str) -> str:
    if not _PROVINCE_CODE.fullmatch(value):
        raise typer.BadParameter(f"a province is two digits (e.g. 33), not {value!r}")
    return value


def _secret_or_prompt(value: str | None, prompt: str) -> str:
    """A personal value given as "-" is asked for without echo, keeping it out of the shell
    history and the process list."""
    if value == PROMPT_FOR_VALUE:
        return str(typer.prompt(prompt, hide_input=True)).strip()
    return value or ""


def _show_subject(console: Console, subject: registry_pb2.Subject, as_json: bool) -> None:
    if as_json:
        typer.echo(subject_json(subject))
    else:
        console.print(subject_table(subject))




# ---------------------------------------------------------------- get / lookup


@subjects_app.command("get")
def get_subject(
    ctx: typer.Context,
    subject_id: Annotated[str, typer.Argument(help="National identity, e.g. S338KA27N9HFS0SA.")],
    as_json: JsonOption = False,
) -> None:
    """Show one subject (personal fields come back masked)."""
    settings = settings_from_context(ctx)
    with exit_on_rpc_error(settings, stderr_console()), registry_stub(settings) as stub:
        response = stub.GetSubject(
            registry_pb2.GetSubjectRequest(subject_id=subject_id),
            timeout=settings.timeout_seconds,
            metadata=settings.call_metadata,
        )
    _show_subject(stdout_console(), response.subject, as_json)


@subjects_app.command("lookup")
def lookup_subject(
    ctx: typer.Context,
    credit_code: Annotated[
        str | None, typer.Option("--credit-code", help="Unified social credit code.")
    ] = None,
    resident_id: Annotated[
        str | None,
        typer.Option("--resident-id", help='Resident ID number; "-" asks for it without echo.'),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Find the subject holding a credit code or a resident ID number."""
    if (credit_code is None) == (resident_id is None):
        raise typer.BadParameter("give exactly one of --credit-code and --resident-id")
    if credit_code is not None:
        request = registry_pb2.LookupSubjectRequest(credit_code=credit_code.strip())
    else:
        request = registry_pb2.LookupSubjectRequest(
            resident_id=_secret_or_prompt(resident_id, "Resident ID number")
        )
    settings = settings_from_context(ctx)
    with exit_on_rpc_error(settings, stderr_console()), registry_stub(settings) as stub:
        response = stub.LookupSubject(
            request, timeout=settings.timeout_seconds, metadata=settings.call_metadata
        )
    _show_subject(stdout_console(), response.subject, as_json)


# ---------------------------------------------------------------- list


@subjects_app.command("list")
def list_subjects(
    ctx: typer.Context,
    division: Annotated[
        str | None,
        typer.Option("--division", help="Division code prefix: 2, 4 or 6 digits."),
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option("--kind", callback=_kind_option, help=f"One of: {kind_choices_help()}."),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            callback=_status_option,
            help="pending_review, approved, rejected or suspended.",
        ),
    ] = None,
    page_size: Annotated[
        int, typer.Option("--page-size", min=1, max=MAX_PAGE_SIZE, help="Subjects per page.")
    ] = 50,
    page_token: Annotated[
        str, typer.Option("--page-token", help="Continue from this next-page token.")
    ] = "",
    fetch_all: Annotated[
        bool, typer.Option("--all", help="Follow next-page tokens to the last page.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per subject per line.")
    ] = False,
) -> None:
    """List subjects by subject_id, filtered, one page (or with --all every page)."""
    settings = settings_from_context(ctx)
    console, error_console = stdout_console(), stderr_console()
    request = registry_pb2.ListSubjectsRequest(
        page_size=page_size,
        page_token=page_token,
        division_prefix=(division or "").strip(),
        kind=kind or UNSPECIFIED_KIND,
        status=status or UNSPECIFIED_STATUS,
    )
    subjects_shown = 0
    page_number = 0
    next_token = ""
    tokens_followed: set[str] = set()
    with exit_on_rpc_error(settings, error_console), registry_stub(settings) as stub:
        while True:
            response = stub.ListSubjects(
                request, timeout=settings.timeout_seconds, metadata=settings.call_metadata
            )
            page_number += 1
            subjects_shown += len(response.subjects)
            if as_json:
                for subject in response.subjects:
                    typer.echo(subject_json_line(subject))
            elif response.subjects:
                title = f"page {page_number}" if fetch_all else None
                console.print(subject_list_table(response.subjects, title))
            next_token = response.next_page_token
            if not fetch_all or not next_token:
                break
            if next_token in tokens_followed:
                error_console.print(
                    Text(
                        f"error: the registry returned page token {next_token!r} twice; stopping",
                        style="bold red",
                    )
                )
                raise typer.Exit(RPC_ERROR_EXIT_CODE)
            tokens_followed.add(next_token)
            request.page_token = next_token
    if as_json:
        if next_token and not fetch_all:
            error_console.print(Text(f"next page token: {next_token}"))
        return
    console.print(Text(f"{subjects_shown} subjects"))
    if next_token and not fetch_all:
        console.print(Text(f"next page token: {next_token}"))


# ---------------------------------------------------------------- register / review


@subjects_app.command("register")
def register_subject(
    ctx: typer.Context,
    kind: Annotated[
        str,
        typer.Option("--kind", callback=_kind_option, help=f"One of: {kind_choices_help()}."),
    ],
    name: Annotated[str, typer.Option("--name", help="Registered name.")],
    division: Annotated[
        str, typer.Option("--division", help="County-level division code (6 digits).")
    ],
    credit_code: Annotated[
        str | None, typer.Option("--credit-code", help="Unified social credit code.")
    ] = None,
    resident_id: Annotated[
        str | None,
        typer.Option("--resident-id", help='Resident ID number; "-" asks for it without echo.'),
    ] = None,
    address: Annotated[str | None, typer.Option("--address", help="Postal address.")] = None,
    legal_representative: Annotated[
        str | None,
        typer.Option("--legal-representative", help="Legal representative or person in charge."),
    ] = None,
    phone: Annotated[
        str | None,
        typer.Option("--phone", help='Contact phone; "-" asks for it without echo.'),
    ] = None,
    request_id: RequestIdOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register a subject directly (it starts in PENDING_REVIEW)."""
    chosen_request_id = request_id or str(uuid.uuid4())
    request = registry_pb2.RegisterSubjectRequest(
        request_id=chosen_request_id,
        registration=registry_pb2.SubjectRegistration(
            kind=kind,
            name=name.strip(),
            credit_code=(credit_code or "").strip(),
            resident_id=_secret_or_prompt(resident_id, "Resident ID number").strip(),
            division_code=division.strip(),
            address=(address or "").strip(),
            legal_representative=(legal_representative or "").strip(),
            contact_phone=_secret_or_prompt(phone, "Contact phone").strip(),
        ),
    )
    settings = settings_from_context(ctx)
    error_console = stderr_console()
    try:
        with registry_stub(settings) as stub:
            response = stub.RegisterSubject(
                request, timeout=settings.timeout_seconds, metadata=settings.call_metadata
            )
    except grpc.RpcError as error:
        print_rpc_error(error_console, error, settings)
        error_console.print(
            Text(
                f"request id: {chosen_request_id} (pass --request-id {chosen_request_id} "
                "to retry without risk of registering twice)",
                style="dim",
            )
        )
        raise typer.Exit(RPC_ERROR_EXIT_CODE) from None
    _show_subject(stdout_console(), response.subject, as_json)


@subjects_app.command("review")
def review_subject(
    ctx: typer.Context,
    subject_id: Annotated[str, typer.Argument(help="The subject to review.")],
    decision: Annotated[
        Decision, typer.Option("--decision", case_sensitive=False, help="The decision.")
    ],
    reason: Annotated[
        str | None, typer.Option("--reason", help="Required for reject and suspend.")
    ] = None,
    version: Annotated[
        int,
        typer.Option("--version", min=0, help="The version you reviewed; 0 skips the check."),
    ] = 0,
    as_json: JsonOption = False,
) -> None:
    """Approve, reject, suspend or reinstate a subject."""
    reason_text = (reason or "").strip()
    if decision.needs_reason and not reason_text:
        raise typer.BadParameter(f"--reason is required to {decision.value}")
    settings = settings_from_context(ctx)
    with exit_on_rpc_error(settings, stderr_console()), registry_stub(settings) as stub:
        response = stub.ReviewSubject(
            registry_pb2.ReviewSubjectRequest(
                subject_id=subject_id,
                decision=decision.proto_name,
                reason=reason_text,
                version=version,
            ),
            timeout=settings.timeout_seconds,
            metadata=settings.call_metadata,
        )
    _show_subject(stdout_console(), response.subject, as_json)


# ---------------------------------------------------------------- import


class _RichImportProgress:
    """Feeds ImportSession progress into two rich progress bars."""

    def __init__(
        self, progress: Progress, already_confirmed: int, total: int, counts: OutcomeCounts
    ) -> None:
        self._progress = progress
        self._counts = counts
        self._sent_task: TaskID = progress.add_task(
            "sent", total=total, completed=already_confirmed, counts=""
        )
        self._confirmed_task: TaskID = progress.add_task(
            "confirmed",
            total=total,
            completed=already_confirmed,
            counts=outcome_counts_label(counts),
        )

    def records_sent(self, count: int) -> None:
        self._progress.advance(self._sent_task, count)

    def batch_confirmed(self, record_count: int, counts: OutcomeCounts) -> None:
        self._counts = self._counts.plus(counts)
        self._progress.update(
            self._confirmed_task,
            advance=record_count,
            counts=outcome_counts_label(self._counts),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class _ImportTarget:
    """Which import of which file, and where its report and checkpoint live."""

    file_sha256: str
    import_id: str
    source_province: str
    report_path: Path
    checkpoint_path: Path

    def fresh_checkpoint(self) -> ImportCheckpoint:
        return ImportCheckpoint(self.file_sha256, self.import_id, self.source_province)


def _open_import_state(
    target: _ImportTarget, resume: bool, console: Console
) -> tuple[ImportCheckpoint, ReportWriter | None]:
    """The checkpoint to continue from and the report opened for writing; no writer when the
    checkpoint says the import already finished."""
    if resume:
        checkpoint = load_checkpoint(target.checkpoint_path)
        if checkpoint is None and target.checkpoint_path.exists():
            console.print(
                Text(f"Cannot read {target.checkpoint_path}; starting over.", style="yellow")
            )
        if checkpoint is not None:
            report_size = target.report_path.stat().st_size if target.report_path.exists() else -1
            if not checkpoint.matches(target.file_sha256, target.import_id, target.source_province):
                console.print(
                    Text(
                        "The checkpoint belongs to another file or import; starting over.",
                        style="yellow",
                    )
                )
            elif report_size < checkpoint.report_bytes or checkpoint.report_bytes == 0:
                console.print(
                    Text(
                        "The report the checkpoint refers to is missing or shorter; starting over.",
                        style="yellow",
                    )
                )
            elif checkpoint.completed:
                return checkpoint, None
            else:
                console.print(
                    Text(
                        f"Resuming import {target.import_id}: "
                        f"{checkpoint.records_confirmed} records already confirmed."
                    )
                )
                return checkpoint, ReportWriter.resume(target.report_path, checkpoint.report_bytes)
    report = ReportWriter.start_new(target.report_path)
    checkpoint = dataclasses.replace(target.fresh_checkpoint(), report_bytes=report.size_bytes)
    save_checkpoint(target.checkpoint_path, checkpoint)
    return checkpoint, report


def _print_import_outcome(
    console: Console,
    checkpoint: ImportCheckpoint,
    this_run: OutcomeCounts,
    resumed_records: int,
    report_path: Path,
) -> None:
    console.print(import_summary_table(this_run, checkpoint.counts, resumed_records))
    console.print(Text(f"{checkpoint.records_confirmed} records confirmed; report: {report_path}"))


@subjects_app.command("import")
def import_subjects(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="CSV (UTF-8) or XLSX (first sheet) with a header row.",
        ),
    ],
    province: Annotated[
        str,
        typer.Option(
            "--province",
            callback=_province_option,
            help="Two-digit code of the source province, e.g. 33.",
        ),
    ],
    import_id: Annotated[
        str | None,
        typer.Option(
            "--import-id",
            help="Import run id (default: derived from the file's sha256 and the province).",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=MAX_BATCH_SIZE, help="Records per message.")
    ] = 1000,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            dir_okay=False,
            help="Per-record report (default: <FILE stem>.import-report.csv here).",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--no-resume",
            help="Skip records a previous run of this file already got confirmed.",
        ),
    ] = True,
) -> None:
    """Bulk-import a province's historical registrations.

    Columns: source_record_id, kind, name, credit_code, resident_id, division_code, address,
    legal_representative, contact_phone. Re-running the same file resumes the same import.
    """
    settings = settings_from_context(ctx)
    console, error_console = stdout_console(), stderr_console()
    if import_id is not None and not 1 <= len(import_id) <= MAX_IMPORT_ID_LENGTH:
        raise typer.BadParameter(f"--import-id must be 1-{MAX_IMPORT_ID_LENGTH} characters")
    try:
        layout = read_header(file)
        total_records = count_subject_records(file)
        sha256 = file_sha256(file)
    except SubjectFileError as error:
        error_console.print(Text(f"error: {error}", style="bold red"))
        raise typer.Exit(FILE_ERROR_EXIT_CODE) from None
    if layout.ignored_columns:
        error_console.print(
            Text(f"Ignoring columns: {', '.join(layout.ignored_columns)}", style="yellow")
        )
    report_path = report if report is not None else Path.cwd() / f"{file.stem}.import-report.csv"
    if not report_path.parent.is_dir():
        raise typer.BadParameter(f"no directory {report_path.parent} for the report")
    target = _ImportTarget(
        file_sha256=sha256,
        import_id=import_id or derive_import_id(sha256, province),
        source_province=province,
        report_path=report_path,
        checkpoint_path=checkpoint_path_for(report_path),
    )
    checkpoint, report_writer = _open_import_state(target, resume, error_console)
    resumed_records = checkpoint.records_confirmed
    if report_writer is None:
        console.print(
            Text(
                f"Import {target.import_id} of this file already finished "
                "(use --no-resume to send it again)."
            )
        )
        _print_import_outcome(console, checkpoint, OutcomeCounts(), resumed_records, report_path)
        return
    console.print(
        Text(
            f"Importing {total_records} records from {file.name} as import "
            f"{target.import_id} to {settings.address}"
        )
    )
    plan = ImportPlan(
        source_path=file,
        source_province=province,
        import_id=target.import_id,
        batch_size=batch_size,
        records_to_skip=resumed_records,
    )
    with report_writer:
        session = _run_import_with_progress(
            settings, plan, checkpoint, report_writer, target, total_records, error_console
        )
    final_checkpoint = dataclasses.replace(session.checkpoint, completed=True)
    save_checkpoint(target.checkpoint_path, final_checkpoint)
    _print_import_outcome(
        console, final_checkpoint, session.counts_this_run, resumed_records, report_path
    )
    summary = session.server_summary
    if summary is not None and summary.received != session.records_sent:
        error_console.print(
            Text(
                f"warning: the registry counted {summary.received} records received, "
                f"this run sent {session.records_sent}",
                style="yellow",
            )
        )


def _run_import_with_progress(
    settings: ClientSettings,
    plan: ImportPlan,
    checkpoint: ImportCheckpoint,
    report_writer: ReportWriter,
    target: _ImportTarget,
    total_records: int,
    error_console: Console,
) -> ImportSession:
    """Runs the import under progress bars; on failure says how far it got and exits."""
    progress = Progress(
        TextColumn("{task.description:>9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[counts]}"),
        console=error_console,
    )
    with progress:
        session = ImportSession(
            plan=plan,
            checkpoint=checkpoint,
            report=report_writer,
            save_checkpoint=lambda latest: save_checkpoint(target.checkpoint_path, latest),
            progress=_RichImportProgress(
                progress, checkpoint.records_confirmed, total_records, checkpoint.counts
            ),
        )
        failure: Text | None = None
        exit_code = RPC_ERROR_EXIT_CODE
        try:
            with registry_stub(settings) as stub:
                session.run(stub, settings.call_metadata)
        except grpc.RpcError as error:
            progress.stop()
            print_rpc_error(error_console, error, settings)
            failure = Text("The import stopped.")
        except ImportProtocolError as error:
            failure = Text(f"error: {error}", style="bold red")
        except SubjectFileError as error:
            failure = Text(f"error: {error}", style="bold red")
            exit_code = FILE_ERROR_EXIT_CODE
        except KeyboardInterrupt:
            failure = Text("Interrupted.")
            exit_code = INTERRUPTED_EXIT_CODE
    if failure is not None:
        error_console.print(failure)
        error_console.print(
            Text(
                f"{session.checkpoint.records_confirmed} records are confirmed and in the "
                f"report; run the same command again to resume."
            )
        )
        raise typer.Exit(exit_code)
    return session
