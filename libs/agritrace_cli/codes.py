"""`agritrace codes ...`: issue, verify, export, print, activate, void, label and trace codes.

The national trace code (追溯码) is explained in docs/trace-codes.md. Commands that change
codes carry a request id (default: a new UUID, printed on stderr before the call): running the
command again with `--request-id <that id>` after a failure or an interruption is safe, the
server answers the retry with the first result and changes nothing more.

Files (`export`, `label`, `issue --output`) are written to `<FILE>.part` and renamed to FILE
only when complete, so an interrupted command never leaves a truncated FILE behind.
"""

from __future__ import annotations

import contextlib
import csv
import enum
import io
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, BinaryIO, Final

import grpc
import typer
from google.protobuf import json_format
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from agritrace.coding.v1 import coding_pb2, coding_pb2_grpc
from agritrace_cli.client import (
    RPC_ERROR_EXIT_CODE,
    ClientSettings,
    coding_stub,
    exit_on_rpc_error,
    print_rpc_error,
    settings_from_context,
)
from agritrace_cli.options import RequestIdOption
from agritrace_cli.rendering import stderr_console, stdout_console, timestamp_label
from agritrace_cli.subjects import FILE_ERROR_EXIT_CODE, INTERRUPTED_EXIT_CODE

PART_SUFFIX: Final = ".part"
MAX_LINEAGE_DEPTH: Final = 20
# Codes listed per derivation side in the lineage table (--json shows them all).
LINEAGE_CODES_SHOWN: Final = 20
_PROVINCE_LENGTH: Final = 2
_DISPLAY_GROUP: Final = 4
_MODE_PREFIX: Final = "ISSUE_MODE_"
_STATE_PREFIX: Final = "CODE_STATE_"

codes_app = typer.Typer(
    name="codes",
    help=(
        "Issue, export, print, activate, verify and void national trace codes (追溯码), "
        "render their labels and follow their lineage."
    ),
    no_args_is_help=True,
)


class IssueModeChoice(enum.StrEnum):
    """The issuing modes IssueCodes accepts, as typed on the command line."""

    ONLINE = "online"
    DOWNLOAD = "download"
    PRE_PRINT = "pre-print"

    @property
    def proto(self) -> coding_pb2.IssueMode:
        return _ISSUE_MODES[self]


_ISSUE_MODES: Final = {
    IssueModeChoice.ONLINE: coding_pb2.ISSUE_MODE_ONLINE,
    IssueModeChoice.DOWNLOAD: coding_pb2.ISSUE_MODE_DOWNLOAD,
    IssueModeChoice.PRE_PRINT: coding_pb2.ISSUE_MODE_PRE_PRINT,
}


class ExportFormatChoice(enum.StrEnum):
    CSV = "csv"
    ZIP = "zip"

    @property
    def proto(self) -> coding_pb2.ExportFormat:
        if self is ExportFormatChoice.ZIP:
            return coding_pb2.EXPORT_FORMAT_LABELS_ZIP
        return coding_pb2.EXPORT_FORMAT_CSV


class LabelFormatChoice(enum.StrEnum):
    SVG = "svg"
    PNG = "png"
    ZPL = "zpl"
    PDF = "pdf"

    @property
    def proto(self) -> coding_pb2.LabelFormat:
        return _LABEL_FORMATS[self]


_LABEL_FORMATS: Final = {
    LabelFormatChoice.SVG: coding_pb2.LABEL_FORMAT_SVG,
    LabelFormatChoice.PNG: coding_pb2.LABEL_FORMAT_PNG,
    LabelFormatChoice.ZPL: coding_pb2.LABEL_FORMAT_ZPL,
    LabelFormatChoice.PDF: coding_pb2.LABEL_FORMAT_PDF,
}


# ---------------------------------------------------------------- display helpers


def display_code(code: str) -> str:
    """How a code is shown to people: 33 K7MX H2TA 9WPR C6 (the province, then groups of 4)."""
    rest = code[_PROVINCE_LENGTH:]
    groups = [rest[i : i + _DISPLAY_GROUP] for i in range(0, len(rest), _DISPLAY_GROUP)]
    return " ".join([code[:_PROVINCE_LENGTH], *groups]) if rest else code


def mode_label(mode: coding_pb2.IssueMode) -> str:
    return coding_pb2.IssueMode.Name(mode).removeprefix(_MODE_PREFIX)


def state_label(state: coding_pb2.CodeState) -> str:
    if state == coding_pb2.CODE_STATE_UNSPECIFIED:
        return ""
    return coding_pb2.CodeState.Name(state).removeprefix(_STATE_PREFIX)


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _field_table(title: str, rows: Sequence[tuple[str, str]]) -> Table:
    """A two-column field/value table; empty values are left out."""
    table = Table(show_header=False, title=Text(title))
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for label, value in rows:
        if value:
            table.add_row(Text(label), Text(value))
    return table


def issuance_table(issuance: coding_pb2.Issuance) -> Table:
    rows: list[tuple[str, str]] = [
        ("issuance_id", issuance.issuance_id),
        ("subject_id", issuance.subject_id),
        ("mode", mode_label(issuance.mode)),
        ("quantity", f"{issuance.quantity:,}"),
        ("province", issuance.province),
        ("product_batch_id", issuance.product_batch_id),
        ("printer_subject_id", issuance.printer_subject_id),
        ("line_id", issuance.line_id),
        ("create_time", timestamp_label(issuance.create_time)),
    ]
    for state_name, count in sorted(issuance.state_counts.items()):
        rows.append((state_name.removeprefix(_STATE_PREFIX).lower(), f"{count:,}"))
    return _field_table(f"Issuance {issuance.issuance_id}", rows)


def code_list_table(codes: Sequence[coding_pb2.Code]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("serial", justify="right", no_wrap=True)
    table.add_column("code", no_wrap=True)
    table.add_column("resolver_url", overflow="fold")
    for code in codes:
        table.add_row(
            Text(str(code.serial)), Text(display_code(code.code)), Text(code.resolver_url)
        )
    return table


def verification_table(typed: str, answer: coding_pb2.VerifyCodeResponse) -> Table:
    shown_code = display_code(answer.code) if answer.code else f"{typed} (as typed)"
    rows: list[tuple[str, str]] = [
        ("code", shown_code),
        ("well_formed", _yes_no(answer.well_formed)),
        ("check_valid", _yes_no(answer.check_valid) if answer.well_formed else ""),
        ("exists", _yes_no(answer.exists)),
        ("state", state_label(answer.state)),
        ("province", answer.province),
        ("summary", answer.summary),
        ("subject_id", answer.subject_id),
        ("product_batch_id", answer.product_batch_id),
    ]
    return _field_table("Verification", rows)


def _codes_label(codes: Sequence[str]) -> str:
    shown = ", ".join(codes[:LINEAGE_CODES_SHOWN])
    hidden = len(codes) - LINEAGE_CODES_SHOWN
    return f"{shown}, … {hidden:,} more (--json lists all)" if hidden > 0 else shown


def derivation_lines(derivation: coding_pb2.Derivation) -> list[Text]:
    """One derivation as a few lines; codes are shown whole (canonical form), never cut."""
    when = timestamp_label(derivation.create_time)
    header = Text(f"  {derivation.reason or '?'}", style="bold")
    header.append(f"  issuance {derivation.issuance_id}")
    if derivation.subject_id:
        header.append(f" by {derivation.subject_id}")
    if when:
        header.append(f" at {when}")
    return [
        header,
        Text(
            f"    parents ({len(derivation.parent_codes):,}): "
            f"{_codes_label(derivation.parent_codes)}"
        ),
        Text(
            f"    children ({len(derivation.child_codes):,}): "
            f"{_codes_label(derivation.child_codes)}"
        ),
    ]


# ---------------------------------------------------------------- files


def part_path_for(path: Path) -> Path:
    """Where a file is written until complete: FILE.part next to FILE."""
    return path.with_name(path.name + PART_SUFFIX)


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[BinaryIO]:
    """A handle on FILE.part, renamed to FILE when the block ends normally and removed when it
    does not (an exception, an interruption): FILE is either complete or untouched."""
    part = part_path_for(path)
    try:
        with part.open("wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        part.replace(path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def _check_output_path(path: Path) -> None:
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a directory")
    if not path.parent.is_dir():
        raise typer.BadParameter(f"no directory {path.parent} for {path.name}")


def _file_error_exit(error: OSError, path: Path, error_console: Console) -> typer.Exit:
    reason = error.strerror or str(error)
    error_console.print(Text(f"error: cannot write {path}: {reason}", style="bold red"))
    return typer.Exit(FILE_ERROR_EXIT_CODE)


def _codes_csv(codes: Sequence[coding_pb2.Code]) -> bytes:
    """The codes as ExportCodes writes them: UTF-8 CSV with a header serial,code,resolver_url."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("serial", "code", "resolver_url"))
    writer.writerows((code.serial, code.code, code.resolver_url) for code in codes)
    return buffer.getvalue().encode("utf-8")


def _write_file(path: Path, data: bytes, error_console: Console) -> None:
    try:
        with atomic_output(path) as handle:
            handle.write(data)
    except OSError as error:
        raise _file_error_exit(error, path, error_console) from None


# ---------------------------------------------------------------- request ids




def _chosen_request_id(request_id: str | None, error_console: Console) -> str:
    """The given request id, or a new UUID; printed before the call, so that a user who
    interrupts a hanging call still knows what to retry with."""
    chosen = request_id or str(uuid.uuid4())
    error_console.print(Text(f"request id: {chosen}", style="dim"))
    return chosen


@contextlib.contextmanager
def _exit_on_rpc_error_with_retry_hint(
    settings: ClientSettings, error_console: Console, request_id: str, what: str
) -> Iterator[None]:
    """Like exit_on_rpc_error, then says how to retry without doing `what` twice."""
    try:
        yield
    except grpc.RpcError as error:
        print_rpc_error(error_console, error, settings)
        error_console.print(
            Text(
                f"request id: {request_id} (pass --request-id {request_id} "
                f"to retry without risk of {what} twice)",
                style="dim",
            )
        )
        raise typer.Exit(RPC_ERROR_EXIT_CODE) from None


def _print_replayed(console: Console, replayed: bool) -> None:
    if replayed:
        console.print(
            Text(
                "(a retry: this is the answer to the first request with this id; "
                "nothing changed now)",
                style="yellow",
            )
        )


def _serial_range(issuance_id: str, first: int, last: int) -> coding_pb2.SerialRange:
    return coding_pb2.SerialRange(issuance_id=issuance_id, first_serial=first, last_serial=last)


FromOption = Annotated[int, typer.Option("--from", min=1, help="First serial (from 1).")]
ToOption = Annotated[int, typer.Option("--to", min=1, help="Last serial (included).")]


# ---------------------------------------------------------------- issue


@codes_app.command("issue")
def issue_codes(
    ctx: typer.Context,
    subject_id: Annotated[str, typer.Argument(help="The subject the codes are issued to.")],
    quantity: Annotated[
        int,
        typer.Option("--quantity", "-n", help="How many codes: 1-1,000,000 (online: 10,000)."),
    ],
    mode: Annotated[
        IssueModeChoice,
        typer.Option(
            "--mode",
            case_sensitive=False,
            help="online: codes come back now; download: export them, print in the province; "
            "pre-print: blank codes for a printing company, activated later.",
        ),
    ],
    batch: Annotated[
        str | None,
        typer.Option("--batch", help="Product batch to bind the codes to (not for pre-print)."),
    ] = None,
    printer: Annotated[
        str | None,
        typer.Option("--printer", help="Pre-print: the printing company's subject id."),
    ] = None,
    request_id: RequestIdOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            dir_okay=False,
            help="Online: write the codes to this CSV (serial,code,resolver_url) "
            "instead of printing them.",
        ),
    ] = None,
) -> None:
    """Issue new codes to a subject."""
    if output is not None:
        if mode is not IssueModeChoice.ONLINE:
            raise typer.BadParameter(
                "only online issuing returns codes; export the others with "
                "`agritrace codes export`",
                param_hint="--output",
            )
        _check_output_path(output)
    settings = settings_from_context(ctx)
    console, error_console = stdout_console(), stderr_console()
    chosen_request_id = _chosen_request_id(request_id, error_console)
    request = coding_pb2.IssueCodesRequest(
        request_id=chosen_request_id,
        subject_id=subject_id.strip(),
        mode=mode.proto,
        quantity=quantity,
        product_batch_id=(batch or "").strip(),
        printer_subject_id=(printer or "").strip(),
    )
    with (
        _exit_on_rpc_error_with_retry_hint(
            settings, error_console, chosen_request_id, "issuing codes"
        ),
        coding_stub(settings) as stub,
    ):
        response = stub.IssueCodes(
            request, timeout=settings.timeout_seconds, metadata=settings.call_metadata
        )
    issuance = response.issuance
    console.print(issuance_table(issuance))
    _print_replayed(console, response.replayed)
    if response.codes:
        if output is not None:
            _write_file(output, _codes_csv(response.codes), error_console)
            console.print(Text(f"{len(response.codes):,} codes written to {output}"))
        else:
            console.print(code_list_table(response.codes))
    elif mode is not IssueModeChoice.ONLINE:
        console.print(
            Text(
                f"export the codes with: agritrace codes export {issuance.issuance_id} "
                "--output FILE.csv",
                style="dim",
            )
        )


# ---------------------------------------------------------------- verify


@codes_app.command("verify")
def verify_code(
    ctx: typer.Context,
    code: Annotated[
        str,
        typer.Argument(help="The code as printed or typed (spaces, hyphens and case are fine)."),
    ],
) -> None:
    """Check a code: well-formed, check character, issued, state (no sign-in needed; signed-in
    callers also see subject and batch)."""
    settings = settings_from_context(ctx)
    with exit_on_rpc_error(settings, stderr_console()), coding_stub(settings) as stub:
        answer = stub.VerifyCode(
            coding_pb2.VerifyCodeRequest(code=code),
            timeout=settings.timeout_seconds,
            metadata=settings.call_metadata,
        )
    stdout_console().print(verification_table(code, answer))


# ---------------------------------------------------------------- export


@dataclass
class _ExportProgress:
    """How far an export got."""

    codes_written: int = 0
    codes_total: int | None = None
    bytes_written: int = 0
    chunks: int = 0

    def describe(self) -> str:
        total = "?" if self.codes_total is None else f"{self.codes_total:,}"
        return f"{self.codes_written:,} of {total} codes"


class _IncompleteExport(Exception):
    """The stream ended without error but short of the codes it announced."""


def _stream_export(
    stub: coding_pb2_grpc.CodingServiceStub,
    request: coding_pb2.ExportCodesRequest,
    settings: ClientSettings,
    handle: BinaryIO,
    state: _ExportProgress,
    progress: Progress,
    task: TaskID,
) -> None:
    # No deadline: a million-code export takes longer than a single call may; Ctrl-C stops it.
    for chunk in stub.ExportCodes(request, metadata=settings.call_metadata):
        handle.write(chunk.data)
        state.chunks += 1
        state.bytes_written += len(chunk.data)
        state.codes_written = chunk.codes_written
        state.codes_total = chunk.codes_total
        progress.update(task, total=chunk.codes_total, completed=chunk.codes_written)
    if state.chunks == 0:
        raise _IncompleteExport("the server ended the export without sending anything")
    if state.codes_written != state.codes_total:
        raise _IncompleteExport(f"the server ended the export after {state.describe()}")


@codes_app.command("export")
def export_codes(
    ctx: typer.Context,
    issuance_id: Annotated[str, typer.Argument(help="The issuance to export.")],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            dir_okay=False,
            help="The file to write (written as FILE.part, renamed when complete).",
        ),
    ],
    export_format: Annotated[
        ExportFormatChoice | None,
        typer.Option(
            "--format",
            case_sensitive=False,
            help="csv (serial,code,resolver_url) or zip (one SVG label per code); "
            "default: zip for a .zip FILE, else csv.",
        ),
    ] = None,
    first_serial: Annotated[
        int | None, typer.Option("--from", min=1, help="First serial (default: the first).")
    ] = None,
    last_serial: Annotated[
        int | None, typer.Option("--to", min=1, help="Last serial (default: the last).")
    ] = None,
) -> None:
    """Download the codes of an issuance (or a serial range of it) as CSV or a ZIP of labels.

    Safe to re-run: FILE appears only once complete; an interrupted export leaves no FILE
    (an earlier complete FILE stays as it was) and is simply run again.
    """
    _check_output_path(output)
    chosen_format = export_format or (
        ExportFormatChoice.ZIP if output.suffix.lower() == ".zip" else ExportFormatChoice.CSV
    )
    settings = settings_from_context(ctx)
    console, error_console = stdout_console(), stderr_console()
    request = coding_pb2.ExportCodesRequest(
        issuance_id=issuance_id.strip(),
        format=chosen_format.proto,
        first_serial=first_serial or 0,
        last_serial=last_serial or 0,
    )
    state = _ExportProgress()
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("codes"),
        TimeElapsedColumn(),
        console=error_console,
    )
    rpc_error: grpc.RpcError | None = None
    failure: Text | None = None
    exit_code = RPC_ERROR_EXIT_CODE
    with progress:
        task = progress.add_task(f"exporting {issuance_id}", total=None)
        try:
            with atomic_output(output) as handle, coding_stub(settings) as stub:
                _stream_export(stub, request, settings, handle, state, progress, task)
        except grpc.RpcError as error:
            rpc_error = error
            failure = Text(f"The export stopped after {state.describe()}.")
        except _IncompleteExport as error:
            failure = Text(f"error: {error}", style="bold red")
        except OSError as error:
            reason = error.strerror or str(error)
            failure = Text(f"error: cannot write {output}: {reason}", style="bold red")
            exit_code = FILE_ERROR_EXIT_CODE
        except KeyboardInterrupt:
            failure = Text(f"Interrupted after {state.describe()}.")
            exit_code = INTERRUPTED_EXIT_CODE
    if failure is not None:
        if rpc_error is not None:
            print_rpc_error(error_console, rpc_error, settings)
        error_console.print(failure)
        left = "was left as it was" if output.exists() else "was not written"
        error_console.print(Text(f"{output} {left}; run the same command again to export anew."))
        raise typer.Exit(exit_code)
    console.print(
        Text(
            f"{state.codes_written:,} codes ({state.bytes_written:,} bytes, "
            f"{chosen_format.value}) written to {output}"
        )
    )


# ---------------------------------------------------------------- print / activate / void


@codes_app.command("print")
def mark_printed(
    ctx: typer.Context,
    issuance_id: Annotated[str, typer.Argument(help="The issuance the codes belong to.")],
    first_serial: FromOption,
    last_serial: ToOption,
    request_id: RequestIdOption = None,
) -> None:
    """Confirm that a serial range was printed (ISSUED -> PRINTED; ACTIVE when the issuance
    names a product batch)."""
    settings = settings_from_context(ctx)
    console, error_console = stdout_console(), stderr_console()
    chosen_request_id = _chosen_request_id(request_id, error_console)
    request = coding_pb2.MarkCodesPrintedRequest(
        request_id=chosen_request_id,
        range=_serial_range(issuance_id.strip(), first_serial, last_serial),
    )
    with (
        _exit_on_rpc_error_with_retry_hint(
            settings, error_console, chosen_request_id, "confirming printing"
        ),
        coding_stub(settings) as stub,
    ):
        response = stub.MarkCodesPrinted(
            request, timeout=settings.timeout_seconds, metadata=settings.call_metadata
        )
    activated = f" ({response.activated:,} of them now ACTIVE)" if response.activated else ""
    console.print(Text(f"{response.printed:,} codes marked printed{activated}"))
    _print_replayed(console, response.replayed)


@codes_app.command("activate")
def activate_codes(
    ctx: typer.Context,
    issuance_id: Annotated[str, typer.Argument(help="The issuance the codes belong to.")],
    first_serial: FromOption,
    last_serial: ToOption,
    batch: Annotated[str, typer.Option("--batch", help="The product batch the goods belong to.")],
    request_id: RequestIdOption = None,
) -> None:
    """Bind printed codes of a serial range to a product batch (PRINTED -> ACTIVE)."""
    settings = settings_from_context(ctx)
    console, error_console = stdout_console(), stderr_console()
    chosen_request_id = _chosen_request_id(request_id, error_console)
    request = coding_pb2.ActivateCodesRequest(
        request_id=chosen_request_id,
        product_batch_id=batch.strip(),
        range=_serial_range(issuance_id.strip(), first_serial, last_serial),
    )
    with (
        _exit_on_rpc_error_with_retry_hint(
            settings, error_console, chosen_request_id, "activating"
        ),
        coding_stub(settings) as stub,
    ):
        response = stub.ActivateCodes(
            request, timeout=settings.timeout_seconds, metadata=settings.call_metadata
        )
    console.print(Text(f"{response.activated:,} codes activated for batch {batch.strip()}"))
    _print_replayed(console, response.replayed)


@codes_app.command("void")
def void_codes(
    ctx: typer.Context,
    codes: Annotated[list[str], typer.Argument(help="The codes to void (at most 10,000).")],
    reason: Annotated[
        str,
        typer.Option("--reason", help="Why, 1-500 characters: damaged labels, lost roll, ..."),
    ],
    request_id: RequestIdOption = None,
) -> None:
    """Withdraw codes (any state but CONSUMED or VOID); all or none."""
    settings = settings_from_context(ctx)
    console, error_console = stdout_console(), stderr_console()
    chosen_request_id = _chosen_request_id(request_id, error_console)
    request = coding_pb2.VoidCodesRequest(
        request_id=chosen_request_id, codes=codes, reason=reason.strip()
    )
    with (
        _exit_on_rpc_error_with_retry_hint(settings, error_console, chosen_request_id, "voiding"),
        coding_stub(settings) as stub,
    ):
        response = stub.VoidCodes(
            request, timeout=settings.timeout_seconds, metadata=settings.call_metadata
        )
    console.print(Text(f"{response.voided:,} codes voided"))
    _print_replayed(console, response.replayed)


# ---------------------------------------------------------------- label / lineage


@codes_app.command("label")
def render_label(
    ctx: typer.Context,
    code: Annotated[str, typer.Argument(help="The code whose label to render.")],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", dir_okay=False, help="The label file to write."),
    ],
    label_format: Annotated[
        LabelFormatChoice | None,
        typer.Option(
            "--format",
            case_sensitive=False,
            help="svg, png, zpl (Zebra thermal printers) or pdf; default: FILE's extension.",
        ),
    ] = None,
) -> None:
    """Render one code's label (QR code of its resolver URL, and the code under it)."""
    _check_output_path(output)
    chosen_format = label_format
    if chosen_format is None:
        suffix = output.suffix.lower().removeprefix(".")
        if suffix not in {choice.value for choice in LabelFormatChoice}:
            raise typer.BadParameter(
                "give --format svg, png, zpl or pdf (FILE's extension names none)",
                param_hint="--format",
            )
        chosen_format = LabelFormatChoice(suffix)
    settings = settings_from_context(ctx)
    console, error_console = stdout_console(), stderr_console()
    with exit_on_rpc_error(settings, error_console), coding_stub(settings) as stub:
        response = stub.RenderLabel(
            coding_pb2.RenderLabelRequest(code=code, format=chosen_format.proto),
            timeout=settings.timeout_seconds,
            metadata=settings.call_metadata,
        )
    _write_file(output, response.data, error_console)
    console.print(
        Text(
            f"{chosen_format.value} label ({len(response.data):,} bytes) written to {output}; "
            f"QR code: {response.resolver_url}"
        )
    )


@codes_app.command("lineage")
def show_lineage(
    ctx: typer.Context,
    code: Annotated[str, typer.Argument(help="The code whose derivations to follow.")],
    depth: Annotated[
        int,
        typer.Option(
            "--depth", min=1, max=MAX_LINEAGE_DEPTH, help="Derivation steps to follow each way."
        ),
    ] = 1,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole lineage as JSON.")
    ] = False,
) -> None:
    """Show what a code was derived from and what was derived from it (混批/重新包装)."""
    settings = settings_from_context(ctx)
    with exit_on_rpc_error(settings, stderr_console()), coding_stub(settings) as stub:
        lineage = stub.GetLineage(
            coding_pb2.GetLineageRequest(code=code, depth=depth),
            timeout=settings.timeout_seconds,
            metadata=settings.call_metadata,
        )
    if as_json:
        as_dict = json_format.MessageToDict(
            lineage, always_print_fields_with_no_presence=True, preserving_proto_field_name=True
        )
        typer.echo(json.dumps(as_dict, ensure_ascii=False, indent=2))
        return
    console = stdout_console()
    console.print(Text(f"Lineage of {lineage.code or code}", style="bold"))
    sections = (
        ("derived from", "nothing (an original code)", lineage.ancestors),
        ("went into", "nothing yet", lineage.descendants),
    )
    for title, when_empty, derivations in sections:
        if not derivations:
            console.print(Text(f"{title}: {when_empty}"))
            continue
        console.print(Text(f"{title} (nearest first):"))
        for derivation in derivations:
            for line in derivation_lines(derivation):
                console.print(line)
