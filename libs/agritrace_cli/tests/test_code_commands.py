"""`agritrace codes ...` against a small in-memory CodingService on a real gRPC server.

The fake keeps the rules the CLI relies on (idempotency by request id, the state moves, serial
ranges, chunked exports with progress counts, BadRequest/ErrorInfo details on errors) and logs
what it received, so the tests can check both what the CLI sent and what it showed.
"""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from typer.testing import CliRunner, Result

from agritrace.coding.v1 import coding_pb2 as pb
from agritrace.coding.v1 import coding_pb2_grpc
from agritrace_cli import codes as codes_module
from agritrace_cli.main import app

ALPHABET = "0123456789ACDEFGHJKMNPQRTVWXY"
RESOLVER = "https://trace.example.gov.cn/tc/"
SUBJECT_ID = "S338KA27N9HFS0SA"
ONLINE_LIMIT = 10_000
UUID_PATTERN = re.compile(r"request id: ([0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12})")


# ---------------------------------------------------------------- the fake service


def check_character(body: str) -> str:
    """The character that makes sum(v_i * 256^(15-i)) a multiple of 29 (docs/trace-codes.md)."""
    partial = int.from_bytes(bytes(ALPHABET.index(c) for c in body) + b"\0", "big") % 29
    return ALPHABET[-partial % 29]


def make_code(number: int, province: str = "33") -> str:
    digits = []
    for _ in range(13):
        number, digit = divmod(number, 29)
        digits.append(ALPHABET[digit])
    body = province + "".join(reversed(digits))
    return body + check_character(body)


def normalize(text: str) -> str:
    typed = text.upper().replace(" ", "").replace("-", "")
    return typed.translate(str.maketrans("OILZSB", "011258"))


def abort(
    context: grpc.ServicerContext,
    code: grpc.StatusCode,
    message: str,
    reason: str,
    violations: Sequence[tuple[str, str]] = (),
) -> None:
    """Aborts as the kernel's interceptor does: ErrorInfo, plus BadRequest for violations."""
    details: list[any_pb2.Any] = []
    messages: list[object] = [
        error_details_pb2.ErrorInfo(reason=reason, domain="agritrace"),
    ]
    if violations:
        messages.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=name, description=text)
                    for name, text in violations
                ]
            )
        )
    for message_detail in messages:
        packed = any_pb2.Any()
        packed.Pack(message_detail)
        details.append(packed)
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=details)
    context.abort_with_status(rpc_status.to_status(status))


def invalid(context: grpc.ServicerContext, field_path: str, description: str) -> None:
    abort(
        context,
        grpc.StatusCode.INVALID_ARGUMENT,
        f"invalid argument: {field_path}: {description}",
        "INVALID_ARGUMENT",
        [(field_path, description)],
    )


@dataclass
class FakeIssuance:
    issuance: pb.Issuance
    codes: list[pb.Code] = field(default_factory=list)


class FakeCoding(coding_pb2_grpc.CodingServiceServicer):
    """In-memory coding service with just enough rules to exercise the CLI."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.issuances: dict[str, FakeIssuance] = {}
        self.codes: dict[str, pb.Code] = {}
        self.derivations: list[pb.Derivation] = []
        self._answers: dict[str, object] = {}  # request id -> first answer
        self._next_code_number = 7_000_000
        self.requests: list[object] = []
        self.received_metadata: list[dict[str, str]] = []
        self.codes_per_export_chunk = 2
        # When set, ExportCodes fails with UNAVAILABLE after this many chunks.
        self.fail_export_after_chunks: int | None = None
        # When set, ExportCodes ends normally (a broken server) after this many chunks.
        self.end_export_after_chunks: int | None = None

    # ------------------------------------------------------------------ helpers

    def _received(self, request: object, context: grpc.ServicerContext) -> None:
        self.requests.append(request)
        self.received_metadata.append(
            {key: str(value) for key, value in context.invocation_metadata()}
        )

    def add_issuance(
        self, quantity: int, mode: pb.IssueMode = pb.ISSUE_MODE_DOWNLOAD, batch: str = ""
    ) -> FakeIssuance:
        with self._lock:
            return self._issue(SUBJECT_ID, mode, quantity, batch, "")

    def _issue(
        self, subject_id: str, mode: pb.IssueMode, quantity: int, batch: str, printer: str
    ) -> FakeIssuance:
        issuance_id = str(1000 + len(self.issuances) + 1)
        issuance = pb.Issuance(
            issuance_id=issuance_id,
            subject_id=subject_id,
            province="33",
            mode=mode,
            quantity=quantity,
            product_batch_id=batch,
            printer_subject_id=printer,
            state_counts={"CODE_STATE_ISSUED": quantity},
        )
        issuance.create_time.FromSeconds(1_750_000_000)
        issued = FakeIssuance(issuance)
        for serial in range(1, quantity + 1):
            self._next_code_number += 7919
            text = make_code(self._next_code_number)
            code = pb.Code(
                code=text,
                issuance_id=issuance_id,
                serial=serial,
                state=pb.CODE_STATE_ISSUED,
                product_batch_id=batch,
                resolver_url=RESOLVER + text,
            )
            issued.codes.append(code)
            self.codes[text] = code
        self.issuances[issuance_id] = issued
        return issued

    def _selection(
        self, serial_range: pb.SerialRange, prefix: str, context: grpc.ServicerContext
    ) -> list[pb.Code]:
        issued = self.issuances.get(serial_range.issuance_id)
        if issued is None:
            abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"no issuance {serial_range.issuance_id}",
                "ISSUANCE_NOT_FOUND",
            )
        assert issued is not None
        first = serial_range.first_serial or 1
        last = serial_range.last_serial or issued.issuance.quantity
        if first < 1:
            invalid(context, f"{prefix}first_serial", "must be at least 1")
        if last > issued.issuance.quantity:
            invalid(
                context,
                f"{prefix}last_serial",
                f"is beyond the issuance's last serial {issued.issuance.quantity}",
            )
        if last < first:
            invalid(context, f"{prefix}last_serial", f"must be at least {prefix}first_serial")
        return issued.codes[first - 1 : last]

    def _move(
        self,
        selected: list[pb.Code],
        allowed: set[int],
        target: int,
        context: grpc.ServicerContext,
        batch: str = "",
    ) -> list[pb.Code]:
        refused = [code for code in selected if code.state not in allowed]
        if refused:
            abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{len(refused)} selected codes may not move to {pb.CodeState.Name(target)}",
                "ILLEGAL_STATE_MOVE",
            )
        for code in selected:
            code.state = target
            if batch:
                code.product_batch_id = batch
        return selected

    # ------------------------------------------------------------------ issue / verify

    def IssueCodes(
        self, request: pb.IssueCodesRequest, context: grpc.ServicerContext
    ) -> pb.IssueCodesResponse:
        self._received(request, context)
        if request.mode not in (
            pb.ISSUE_MODE_ONLINE,
            pb.ISSUE_MODE_DOWNLOAD,
            pb.ISSUE_MODE_PRE_PRINT,
        ):
            invalid(context, "mode", "must be ONLINE, DOWNLOAD or PRE_PRINT")
        limit = ONLINE_LIMIT if request.mode == pb.ISSUE_MODE_ONLINE else 1_000_000
        if request.quantity < 1:
            invalid(context, "quantity", "must be at least 1")
        if request.quantity > limit:
            invalid(context, "quantity", f"must be at most {limit:,}")
        if request.printer_subject_id and request.mode != pb.ISSUE_MODE_PRE_PRINT:
            invalid(context, "printer_subject_id", "is only for PRE_PRINT")
        with self._lock:
            first = self._answers.get(request.request_id)
            if isinstance(first, pb.IssueCodesResponse):
                return pb.IssueCodesResponse(
                    issuance=first.issuance, codes=first.codes, replayed=True
                )
            issued = self._issue(
                request.subject_id,
                request.mode,
                request.quantity,
                request.product_batch_id,
                request.printer_subject_id,
            )
            online = request.mode == pb.ISSUE_MODE_ONLINE
            answer = pb.IssueCodesResponse(
                issuance=issued.issuance, codes=issued.codes if online else []
            )
            self._answers[request.request_id] = answer
        return answer

    def VerifyCode(
        self, request: pb.VerifyCodeRequest, context: grpc.ServicerContext
    ) -> pb.VerifyCodeResponse:
        self._received(request, context)
        typed = normalize(request.code)
        if len(typed) != 16 or any(c not in ALPHABET for c in typed):
            return pb.VerifyCodeResponse(summary="not a trace code")
        answer = pb.VerifyCodeResponse(
            code=typed,
            well_formed=True,
            check_valid=check_character(typed[:15]) == typed[15],
            province=typed[:2],
        )
        found = self.codes.get(typed)
        if not answer.check_valid:
            answer.summary = "mistyped: the check character does not hold"
        elif found is None:
            answer.summary = "counterfeit: never issued"
        else:
            answer.exists = True
            answer.state = found.state
            answer.summary = {
                pb.CODE_STATE_ACTIVE: "genuine and active",
                pb.CODE_STATE_VOID: "void",
            }.get(found.state, "not activated")
            signed_in = any(key == "authorization" for key, _ in context.invocation_metadata())
            if signed_in:
                answer.subject_id = self.issuances[found.issuance_id].issuance.subject_id
                answer.product_batch_id = found.product_batch_id
        return answer

    # ------------------------------------------------------------------ export

    def ExportCodes(
        self, request: pb.ExportCodesRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExportCodesResponse]:
        self._received(request, context)
        if request.format not in (pb.EXPORT_FORMAT_CSV, pb.EXPORT_FORMAT_LABELS_ZIP):
            invalid(context, "format", "must be CSV or LABELS_ZIP")
        selected = self._selection(
            pb.SerialRange(
                issuance_id=request.issuance_id,
                first_serial=request.first_serial,
                last_serial=request.last_serial,
            ),
            "",
            context,
        )
        if request.format == pb.EXPORT_FORMAT_CSV:
            chunks = list(self._csv_chunks(selected))
            content_type = "text/csv; charset=utf-8"
        else:
            chunks = list(self._zip_chunks(selected))
            content_type = "application/zip"
        for number, (data, written) in enumerate(chunks, start=1):
            yield pb.ExportCodesResponse(
                data=data,
                codes_written=written,
                codes_total=len(selected),
                content_type=content_type if number == 1 else "",
            )
            if self.fail_export_after_chunks == number:
                context.abort(grpc.StatusCode.UNAVAILABLE, "the fake coding service went away")
            if self.end_export_after_chunks == number:
                return

    def _csv_chunks(self, selected: list[pb.Code]) -> Iterator[tuple[bytes, int]]:
        for start in range(0, len(selected), self.codes_per_export_chunk):
            part = selected[start : start + self.codes_per_export_chunk]
            header = b"serial,code,resolver_url\n" if start == 0 else b""
            rows = "".join(f"{c.serial},{c.code},{c.resolver_url}\n" for c in part)
            yield header + rows.encode(), start + len(part)

    def _zip_chunks(self, selected: list[pb.Code]) -> Iterator[tuple[bytes, int]]:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for code in selected:
                archive.writestr(f"{code.serial}-{code.code}.svg", f"<svg>{code.code}</svg>")
        data = buffer.getvalue()
        half = len(data) // 2
        yield data[:half], len(selected) // 2
        yield data[half:], len(selected)

    # ------------------------------------------------------------------ moves

    def MarkCodesPrinted(
        self, request: pb.MarkCodesPrintedRequest, context: grpc.ServicerContext
    ) -> pb.MarkCodesPrintedResponse:
        self._received(request, context)
        with self._lock:
            first = self._answers.get(request.request_id)
            if isinstance(first, pb.MarkCodesPrintedResponse):
                return pb.MarkCodesPrintedResponse(
                    printed=first.printed, activated=first.activated, replayed=True
                )
            selected = self._selection(request.range, "range.", context)
            moved = self._move(selected, {pb.CODE_STATE_ISSUED}, pb.CODE_STATE_PRINTED, context)
            activated = 0
            for code in moved:
                if code.product_batch_id:
                    code.state = pb.CODE_STATE_ACTIVE
                    activated += 1
            answer = pb.MarkCodesPrintedResponse(printed=len(moved), activated=activated)
            self._answers[request.request_id] = answer
        return answer

    def ActivateCodes(
        self, request: pb.ActivateCodesRequest, context: grpc.ServicerContext
    ) -> pb.ActivateCodesResponse:
        self._received(request, context)
        if not request.product_batch_id:
            invalid(context, "product_batch_id", "is required")
        with self._lock:
            first = self._answers.get(request.request_id)
            if isinstance(first, pb.ActivateCodesResponse):
                return pb.ActivateCodesResponse(activated=first.activated, replayed=True)
            selected = self._selection(request.range, "range.", context)
            moved = self._move(
                selected,
                {pb.CODE_STATE_PRINTED},
                pb.CODE_STATE_ACTIVE,
                context,
                batch=request.product_batch_id,
            )
            answer = pb.ActivateCodesResponse(activated=len(moved))
            self._answers[request.request_id] = answer
        return answer

    def VoidCodes(
        self, request: pb.VoidCodesRequest, context: grpc.ServicerContext
    ) -> pb.VoidCodesResponse:
        self._received(request, context)
        if not request.reason:
            invalid(context, "reason", "is required")
        with self._lock:
            first = self._answers.get(request.request_id)
            if isinstance(first, pb.VoidCodesResponse):
                return pb.VoidCodesResponse(voided=first.voided, replayed=True)
            selected = []
            for number, typed in enumerate(request.codes):
                code = self.codes.get(normalize(typed))
                if code is None:
                    abort(
                        context,
                        grpc.StatusCode.NOT_FOUND,
                        f"no code {typed}",
                        "CODE_NOT_FOUND",
                        [(f"codes[{number}]", "was never issued")],
                    )
                assert code is not None
                selected.append(code)
            allowed = {pb.CODE_STATE_ISSUED, pb.CODE_STATE_PRINTED, pb.CODE_STATE_ACTIVE}
            moved = self._move(selected, allowed, pb.CODE_STATE_VOID, context)
            answer = pb.VoidCodesResponse(voided=len(moved))
            self._answers[request.request_id] = answer
        return answer

    # ------------------------------------------------------------------ label / lineage

    def RenderLabel(
        self, request: pb.RenderLabelRequest, context: grpc.ServicerContext
    ) -> pb.RenderLabelResponse:
        self._received(request, context)
        code = self.codes.get(normalize(request.code))
        if code is None:
            abort(context, grpc.StatusCode.NOT_FOUND, f"no code {request.code}", "CODE_NOT_FOUND")
        assert code is not None
        formats = {
            pb.LABEL_FORMAT_SVG: (b"<svg>%s</svg>", "image/svg+xml"),
            pb.LABEL_FORMAT_PNG: (b"\x89PNG\r\n%s", "image/png"),
            pb.LABEL_FORMAT_ZPL: (b"^XA^BQN,2,4^FD%s^FS^XZ", "application/zpl"),
            pb.LABEL_FORMAT_PDF: (b"%%PDF-1.7 %s", "application/pdf"),
        }
        if request.format not in formats:
            invalid(context, "format", "must be SVG, PNG, ZPL or PDF")
        template, content_type = formats[request.format]
        return pb.RenderLabelResponse(
            data=template % code.code.encode(),
            content_type=content_type,
            resolver_url=code.resolver_url,
        )

    def GetLineage(
        self, request: pb.GetLineageRequest, context: grpc.ServicerContext
    ) -> pb.GetLineageResponse:
        self._received(request, context)
        code = normalize(request.code)
        if code not in self.codes:
            abort(context, grpc.StatusCode.NOT_FOUND, f"no code {request.code}", "CODE_NOT_FOUND")
        depth = request.depth or 1
        answer = pb.GetLineageResponse(code=code)
        for direction, side, other in (
            (answer.ancestors, "child_codes", "parent_codes"),
            (answer.descendants, "parent_codes", "child_codes"),
        ):
            frontier = {code}
            for _ in range(depth):
                steps = [d for d in self.derivations if frontier & set(getattr(d, side))]
                direction.extend(steps)
                frontier = {c for d in steps for c in getattr(d, other)}
        return answer

    def add_derivation(self, parents: list[str], quantity: int, reason: str) -> list[str]:
        derived = self._issue(SUBJECT_ID, pb.ISSUE_MODE_DERIVED, quantity, "BATCH-MIX", "")
        children = [code.code for code in derived.codes]
        for parent in parents:
            self.codes[parent].state = pb.CODE_STATE_CONSUMED
        derivation = pb.Derivation(
            issuance_id=derived.issuance.issuance_id,
            parent_codes=parents,
            child_codes=children,
            reason=reason,
            subject_id=SUBJECT_ID,
        )
        derivation.create_time.FromSeconds(1_750_000_600)
        self.derivations.append(derivation)
        return children


@dataclass(frozen=True)
class RunningCoding:
    fake: FakeCoding
    address: str


@pytest.fixture
def coding() -> Iterator[RunningCoding]:
    """A FakeCoding served on a free loopback port for the duration of one test."""
    fake = FakeCoding()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    add_servicer: Callable[[FakeCoding, grpc.Server], None] = (
        coding_pb2_grpc.add_CodingServiceServicer_to_server
    )
    add_servicer(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield RunningCoding(fake, f"127.0.0.1:{port}")
    finally:
        server.stop(grace=None)


CodesInvoker = Callable[..., Result]


@pytest.fixture
def run_codes(coding: RunningCoding, tmp_path_factory: pytest.TempPathFactory) -> CodesInvoker:
    """Runs `agritrace --address <fake> codes ARGS...` in-process, with no stored session."""
    runner = CliRunner(
        env={
            "COLUMNS": "200",
            "AGRITRACE_ADDRESS": None,
            "AGRITRACE_TOKEN": None,
            "AGRITRACE_CONFIG_DIR": str(tmp_path_factory.mktemp("config")),
        }
    )

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, ["--address", coding.address, "codes", *args], env=env)

    return invoke


def assert_clean_failure(result: Result, exit_code: int) -> None:
    """Failed with the exit code, a message and no traceback."""
    assert result.exit_code == exit_code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output


def table_rows(output: str) -> list[list[str]]:
    """Each line's cells, with the box-drawing borders removed."""
    return [
        [cell.strip() for cell in re.split(r"[│┃]", line) if cell.strip()]
        for line in output.splitlines()
    ]


def files_in(directory: Path) -> set[str]:
    return {path.name for path in directory.iterdir()}


def grouped_code(code: str) -> str:
    return f"{code[:2]} {code[2:6]} {code[6:10]} {code[10:14]} {code[14:]}"


def expected_csv(codes: Sequence[pb.Code]) -> str:
    rows = "".join(f"{code.serial},{code.code},{code.resolver_url}\n" for code in codes)
    return "serial,code,resolver_url\n" + rows


# ---------------------------------------------------------------- issue


def test_issue_online_prints_the_issuance_the_request_id_and_the_codes(
    coding: RunningCoding, run_codes: CodesInvoker
) -> None:
    result = run_codes(
        "issue", SUBJECT_ID, "--quantity", "3", "--mode", "online", "--batch", "B-2025-01"
    )

    assert result.exit_code == 0, result.output
    (request,) = coding.fake.requests
    assert isinstance(request, pb.IssueCodesRequest)
    assert request.mode == pb.ISSUE_MODE_ONLINE
    assert request.quantity == 3
    assert request.product_batch_id == "B-2025-01"
    shown_id = UUID_PATTERN.search(result.stderr)
    assert shown_id is not None, result.output
    assert shown_id.group(1) == request.request_id

    (issued,) = coding.fake.issuances.values()
    rows = table_rows(result.stdout)
    assert ["issuance_id", issued.issuance.issuance_id] in rows
    assert ["mode", "ONLINE"] in rows
    assert ["quantity", "3"] in rows
    assert ["province", "33"] in rows
    shown_lines = [line.split() for line in result.stdout.splitlines()]
    for code in issued.codes:
        grouped = grouped_code(code.code).split()
        assert [str(code.serial), *grouped, code.resolver_url] in shown_lines, result.stdout


def test_issue_with_the_same_request_id_is_answered_as_a_replay(
    coding: RunningCoding, run_codes: CodesInvoker
) -> None:
    first = run_codes("issue", SUBJECT_ID, "-n", "2", "--mode", "ONLINE", "--request-id", "r-1")
    again = run_codes("issue", SUBJECT_ID, "-n", "2", "--mode", "online", "--request-id", "r-1")

    assert first.exit_code == 0, first.output
    assert again.exit_code == 0, again.output
    assert len(coding.fake.issuances) == 1
    assert "request id: r-1" in first.stderr
    assert "a retry" not in first.output
    assert "a retry" in again.output
    (issued,) = coding.fake.issuances.values()
    assert issued.codes[0].code[2:6] in again.stdout


def test_issue_online_to_a_csv_file(
    coding: RunningCoding, run_codes: CodesInvoker, tmp_path: Path
) -> None:
    target = tmp_path / "codes.csv"

    result = run_codes("issue", SUBJECT_ID, "-n", "4", "--mode", "online", "--output", str(target))

    assert result.exit_code == 0, result.output
    (issued,) = coding.fake.issuances.values()
    assert target.read_text(encoding="utf-8") == expected_csv(issued.codes)
    assert "4 codes written to" in result.stdout
    assert issued.codes[0].resolver_url not in result.stdout  # not printed as well
    assert files_in(tmp_path) == {"codes.csv"}


def test_issue_download_hints_at_export_and_pre_print_names_the_printer(
    coding: RunningCoding, run_codes: CodesInvoker
) -> None:
    download = run_codes("issue", SUBJECT_ID, "-n", "500", "--mode", "download")
    pre_print = run_codes(
        "issue", SUBJECT_ID, "-n", "100", "--mode", "pre-print", "--printer", "S33PRINTER000001"
    )

    assert download.exit_code == 0, download.output
    assert ["mode", "DOWNLOAD"] in table_rows(download.stdout)
    assert "agritrace codes export 1001 --output" in download.stdout
    assert pre_print.exit_code == 0, pre_print.output
    request = coding.fake.requests[1]
    assert isinstance(request, pb.IssueCodesRequest)
    assert request.mode == pb.ISSUE_MODE_PRE_PRINT
    assert request.printer_subject_id == "S33PRINTER000001"
    assert ["printer_subject_id", "S33PRINTER000001"] in table_rows(pre_print.stdout)


def test_issue_refuses_output_for_modes_without_codes(
    coding: RunningCoding, run_codes: CodesInvoker, tmp_path: Path
) -> None:
    result = run_codes(
        "issue",
        SUBJECT_ID,
        "-n",
        "5",
        "--mode",
        "download",
        "--output",
        str(tmp_path / "codes.csv"),
    )

    assert_clean_failure(result, 2)
    assert "only online issuing returns codes" in result.output
    assert coding.fake.requests == []


def test_issue_bad_quantity_shows_the_field_violation_and_how_to_retry(
    coding: RunningCoding, run_codes: CodesInvoker
) -> None:
    zero = run_codes(
        "issue", SUBJECT_ID, "--quantity", "0", "--mode", "online", "--request-id", "r-zero"
    )
    too_many = run_codes("issue", SUBJECT_ID, "--quantity", "10001", "--mode", "online")

    assert_clean_failure(zero, 1)
    assert "error: INVALID_ARGUMENT: invalid argument: quantity: must be at least 1" in zero.stderr
    assert "field violations:" in zero.stderr
    assert "  quantity: must be at least 1" in zero.stderr
    assert "reason: INVALID_ARGUMENT (domain agritrace)" in zero.stderr
    assert "--request-id r-zero" in zero.stderr
    assert_clean_failure(too_many, 1)
    assert "quantity: must be at most 10,000" in too_many.stderr
    assert coding.fake.issuances == {}


def test_issue_needs_a_known_mode(coding: RunningCoding, run_codes: CodesInvoker) -> None:
    result = run_codes("issue", SUBJECT_ID, "--quantity", "1", "--mode", "production-line")

    assert_clean_failure(result, 2)
    assert "--mode" in result.output
    assert coding.fake.requests == []


# ---------------------------------------------------------------- verify


def test_verify_anonymously_shows_the_state_but_not_the_subject(
    coding: RunningCoding, run_codes: CodesInvoker
) -> None:
    issued = coding.fake.add_issuance(2, batch="B-7")
    code = issued.codes[0].code
    typed = f"{code[:2]} {code[2:6]}-{code[6:10]} {code[10:]}".lower()

    result = run_codes("verify", typed)

    assert result.exit_code == 0, result.output
    rows = table_rows(result.stdout)
    assert ["code", grouped_code(code)] in rows
    assert ["well_formed", "yes"] in rows
    assert ["check_valid", "yes"] in rows
    assert ["exists", "yes"] in rows
    assert ["state", "ISSUED"] in rows
    assert ["province", "33"] in rows
    assert ["summary", "not activated"] in rows
    assert SUBJECT_ID not in result.stdout
    assert "B-7" not in result.stdout
    assert "authorization" not in coding.fake.received_metadata[-1]


def test_verify_with_a_token_sends_it_and_shows_subject_and_batch(
    coding: RunningCoding, run_codes: CodesInvoker
) -> None:
    issued = coding.fake.add_issuance(1, batch="B-7")

    result = run_codes("verify", issued.codes[0].code, env={"AGRITRACE_TOKEN": "secret-token"})

    assert result.exit_code == 0, result.output
    rows = table_rows(result.stdout)
    assert ["subject_id", SUBJECT_ID] in rows
    assert ["product_batch_id", "B-7"] in rows
    assert coding.fake.received_metadata[-1]["authorization"] == "Bearer secret-token"


def test_verify_a_mistyped_and_a_malformed_code(
    coding: RunningCoding, run_codes: CodesInvoker
) -> None:
    issued = coding.fake.add_issuance(1)
    code = issued.codes[0].code
    wrong_check = code[:15] + ALPHABET[(ALPHABET.index(code[15]) + 1) % 29]

    mistyped = run_codes("verify", wrong_check)
    malformed = run_codes("verify", "hello")

    assert mistyped.exit_code == 0, mistyped.output
    rows = table_rows(mistyped.stdout)
    assert ["well_formed", "yes"] in rows
    assert ["check_valid", "no"] in rows
    assert ["exists", "no"] in rows
    assert malformed.exit_code == 0, malformed.output
    rows = table_rows(malformed.stdout)
    assert ["code", "hello (as typed)"] in rows
    assert ["well_formed", "no"] in rows
    assert ["summary", "not a trace code"] in rows


# ---------------------------------------------------------------- export


def test_export_writes_the_concatenated_chunks_and_no_part_file(
    coding: RunningCoding, run_codes: CodesInvoker, tmp_path: Path
) -> None:
    issued = coding.fake.add_issuance(7)
    target = tmp_path / "out" / "codes.csv"
    target.parent.mkdir()

    result = run_codes("export", issued.issuance.issuance_id, "--output", str(target))

    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8") == expected_csv(issued.codes)
    assert files_in(target.parent) == {"codes.csv"}
    (request,) = coding.fake.requests
    assert isinstance(request, pb.ExportCodesRequest)
    assert request.format == pb.EXPORT_FORMAT_CSV
    assert (request.first_serial, request.last_serial) == (0, 0)
    assert "7/7" in result.stderr  # the progress bar, driven by codes_written / codes_total
    assert f"7 codes ({target.stat().st_size} bytes, csv) written to" in result.stdout


def test_export_a_serial_range_as_a_zip_of_labels(
    coding: RunningCoding, run_codes: CodesInvoker, tmp_path: Path
) -> None:
    issued = coding.fake.add_issuance(10)
    target = tmp_path / "labels.ZIP"

    result = run_codes(
        "export", issued.issuance.issuance_id, "-o", str(target), "--from", "3", "--to", "6"
    )

    assert result.exit_code == 0, result.output
    (request,) = coding.fake.requests
    assert isinstance(request, pb.ExportCodesRequest)
    assert request.format == pb.EXPORT_FORMAT_LABELS_ZIP
    assert (request.first_serial, request.last_serial) == (3, 6)
    with zipfile.ZipFile(target) as archive:
        assert archive.namelist() == [f"{c.serial}-{c.code}.svg" for c in issued.codes[2:6]]
    assert files_in(tmp_path) == {"labels.ZIP"}


def test_export_format_option_wins_over_the_extension(
    coding: RunningCoding, run_codes: CodesInvoker, tmp_path: Path
) -> None:
    issued = coding.fake.add_issuance(3)
    target = tmp_path / "codes.zip"

    result = run_codes("export", issued.issuance.issuance_id, "-o", str(target), "--format", "csv")

    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8") == expected_csv(issued.codes)


def test_interrupted_export_leaves_no_file_and_a_rerun_completes(
    coding: RunningCoding, run_codes: CodesInvoker, tmp_path: Path
) -> None:
    issued = coding.fake.add_issuance(6)
    target = tmp_path / "codes.csv"
    part = tmp_path / "codes.csv.part"
    part.write_bytes(b"left over by a crashed earlier run")
    coding.fake.fail_export_after_chunks = 2

    interrupted = run_codes("export", issued.issuance.issuance_id, "--output", str(target))

    assert_clean_failure(interrupted, 1)
    assert "error: UNAVAILABLE: the fake coding service went away" in interrupted.stderr
    assert "The export stopped after 4 of 6 codes." in interrupted.stderr
    assert f"{target} was not written" in interrupted.stderr
    assert not target.exists()
    assert not part.exists()

    coding.fake.fail_export_after_chunks = None
    rerun = run_codes("export", issued.issuance.issuance_id, "--output", str(target))

    assert rerun.exit_code == 0, rerun.output
    assert target.read_text(encoding="utf-8") == expected_csv(issued.codes)
    assert not part.exists()


def test_interrupted_export_leaves_an_earlier_complete_file_alone(
    coding: RunningCoding, run_codes: CodesInvoker, tmp_path: Path
) -> None:
    issued = coding.fake.add_issuance(6)
    target = tmp_path / "codes.csv"
    target.write_text("an earlier, complete export\n", encoding="utf-8")
    coding.fake.fail_export_after_chunks = 1

    result = run_codes("export", issued.issuance.issuance_id, "--output", str(target))

    assert_clean_failure(result, 1)
    assert f"{target} was left as it was" in result.stderr
    assert target.read_text(encoding="utf-8") == "an earlier, complete export\n"
    assert files_in(tmp_path) == {"codes.csv"}


def test_export_cut_short_without_an_error_is_refused(
    coding: RunningCoding, run_codes: CodesInvoker, tmp_path: Path
) -> None:
    issued = coding.fake.add_issuance(6)
    target = tmp_path / "codes.csv"
    coding.fake.end_export_after_chunks = 1

    result = run_codes("export", issued.issuance.issuance_id, "--output", str(target))

    assert_clean_failure(result, 1)
    assert "the server ended the export after 2 of 6 codes" in result.stderr
    assert not target.exists()
    assert files_in(tmp_path) == set()


@pytest.mark.parametrize(
    ("failure", "exit_code", "message"),
    [
        (KeyboardInterrupt(), 130, "Interrupted after 2 of 6 codes."),
        (OSError(28, "No space left on device"), 2, "No space left on device"),
    ],
)
def test_export_interrupted_locally_removes_the_part_file(
    coding: RunningCoding,
    run_codes: CodesInvoker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: BaseException,
    exit_code: int,
    message: str,
) -> None:
    issued = coding.fake.add_issuance(6)
    target = tmp_path / "codes.csv"
    real_stream_export = codes_module._stream_export

    def stream_then_fail(*args: Any) -> None:
        handle, state = args[3], args[4]
        handle.write(b"serial,code,resolver_url\n1,")
        state.codes_written, state.codes_total, state.chunks = 2, 6, 1
        assert (tmp_path / "codes.csv.part").exists()
        raise failure

    monkeypatch.setattr(codes_module, "_stream_export", stream_then_fail)
    result = run_codes("export", issued.issuance.issuance_id, "--output", str(target))
    monkeypatch.setattr(codes_module, "_stream_export", real_stream_export)

    assert_clean_failure(result, exit_code)
    assert message in result.stderr
    assert f"{target} was not written" in result.stderr
    assert files_in(tmp_path) == set()


def test_export_errors_are_shown_with_their_fields(
    coding: RunningCoding, run_codes: CodesInvoker, tmp_path: Path
) -> None:
    issued = coding.fake.add_issuance(6)
    target = tmp_path / "codes.csv"

    unknown = run_codes("export", "999", "--output", str(target))
    beyond = run_codes("export", issued.issuance.issuance_id, "--output", str(target), "--to", "9")
    no_directory = run_codes(
        "export", issued.issuance.issuance_id, "--output", str(tmp_path / "missing" / "codes.csv")
    )

    assert_clean_failure(unknown, 1)
    assert "error: NOT_FOUND: no issuance 999" in unknown.stderr
    assert "reason: ISSUANCE_NOT_FOUND" in unknown.stderr
    assert_clean_failure(beyond, 1)
    assert "last_serial: is beyond the issuance's last serial 6" in beyond.stderr
    assert_clean_failure(no_directory, 2)
    assert "no directory" in no_directory.output
    assert files_in(tmp_path) == set()


# ---------------------------------------------------------------- print / activate / void


def test_print_then_activate_a_pre_printed_range(
    coding: RunningCoding, run_codes: CodesInvoker
) -> None:
    issued = coding.fake.add_issuance(10, mode=pb.ISSUE_MODE_PRE_PRINT)
    issuance_id = issued.issuance.issuance_id

    printed = run_codes("print", issuance_id, "--from", "1", "--to", "10")
    activated = run_codes(
        "activate",
        issuance_id,
        "--from",
        "4",
        "--to",
        "6",
        "--batch",
        "B-2025-07",
        "--request-id",
        "act-1",
    )

    assert printed.exit_code == 0, printed.output
    assert "10 codes marked printed" in printed.stdout
    assert UUID_PATTERN.search(printed.stderr) is not None
    assert activated.exit_code == 0, activated.output
    assert "3 codes activated for batch B-2025-07" in activated.stdout
    assert "request id: act-1" in activated.stderr
    states = [code.state for code in issued.codes]
    assert (
        states
        == [pb.CODE_STATE_PRINTED] * 3 + [pb.CODE_STATE_ACTIVE] * 3 + [pb.CODE_STATE_PRINTED] * 4
    )
    assert issued.codes[4].product_batch_id == "B-2025-07"
    request = coding.fake.requests[1]
    assert isinstance(request, pb.ActivateCodesRequest)
    assert request.range == pb.SerialRange(issuance_id=issuance_id, first_serial=4, last_serial=6)


def test_print_of_a_batch_bound_issuance_activates_and_replays(
    coding: RunningCoding, run_codes: CodesInvoker
) -> None:
    issued = coding.fake.add_issuance(4, batch="B-1")
    issuance_id = issued.issuance.issuance_id

    first = run_codes("print", issuance_id, "--from", "1", "--to", "4", "--request-id", "p-1")
    retry = run_codes("print", issuance_id, "--from", "1", "--to", "4", "--request-id", "p-1")
    again = run_codes("print", issuance_id, "--from", "1", "--to", "4")

    assert first.exit_code == 0, first.output
    assert "4 codes marked printed (4 of them now ACTIVE)" in first.stdout
    assert retry.exit_code == 0, retry.output
    assert "a retry" in retry.stdout
    assert_clean_failure(again, 1)
    assert "error: FAILED_PRECONDITION" in again.stderr
    assert "reason: ILLEGAL_STATE_MOVE" in again.stderr
    assert "to retry without risk of confirming printing twice" in again.stderr


def test_print_and_activate_need_their_options(
    coding: RunningCoding, run_codes: CodesInvoker
) -> None:
    issued = coding.fake.add_issuance(3)

    no_range = run_codes("print", issued.issuance.issuance_id)
    zero = run_codes("print", issued.issuance.issuance_id, "--from", "0", "--to", "2")
    no_batch = run_codes("activate", issued.issuance.issuance_id, "--from", "1", "--to", "2")
    backwards = run_codes("print", issued.issuance.issuance_id, "--from", "3", "--to", "2")

    for result in (no_range, zero, no_batch):
        assert_clean_failure(result, 2)
    assert "--from" in no_range.output
    assert "--batch" in no_batch.output
    assert_clean_failure(backwards, 1)
    assert "range.last_serial: must be at least range.first_serial" in backwards.stderr
    assert [type(request) for request in coding.fake.requests] == [pb.MarkCodesPrintedRequest]


def test_void_codes_with_a_reason(coding: RunningCoding, run_codes: CodesInvoker) -> None:
    issued = coding.fake.add_issuance(3)
    first, second, _ = (code.code for code in issued.codes)

    result = run_codes(
        "void", first, second.lower(), "--reason", "damaged labels", "--request-id", "v-1"
    )
    repeat = run_codes("void", first, second, "--reason", "damaged labels", "--request-id", "v-1")
    again = run_codes("void", first, "--reason", "damaged labels")
    no_reason = run_codes("void", first)

    assert result.exit_code == 0, result.output
    assert "2 codes voided" in result.stdout
    assert [code.state for code in issued.codes] == [
        pb.CODE_STATE_VOID,
        pb.CODE_STATE_VOID,
        pb.CODE_STATE_ISSUED,
    ]
    request = coding.fake.requests[0]
    assert isinstance(request, pb.VoidCodesRequest)
    assert list(request.codes) == [first, second.lower()]
    assert request.reason == "damaged labels"
    assert repeat.exit_code == 0, repeat.output
    assert "a retry" in repeat.stdout
    assert_clean_failure(again, 1)
    assert "ILLEGAL_STATE_MOVE" in again.stderr
    assert_clean_failure(no_reason, 2)
    assert "--reason" in no_reason.output


def test_void_unknown_code_names_the_field(coding: RunningCoding, run_codes: CodesInvoker) -> None:
    issued = coding.fake.add_issuance(1)

    result = run_codes("void", issued.codes[0].code, "33XXXXXXXXXXXXXX", "--reason", "lost")

    assert_clean_failure(result, 1)
    assert "error: NOT_FOUND: no code 33XXXXXXXXXXXXXX" in result.stderr
    assert "codes[1]: was never issued" in result.stderr
    assert "reason: CODE_NOT_FOUND" in result.stderr
    assert issued.codes[0].state == pb.CODE_STATE_ISSUED


# ---------------------------------------------------------------- label / lineage


@pytest.mark.parametrize(
    ("file_name", "options", "expected_format", "starts_with"),
    [
        ("label.svg", (), pb.LABEL_FORMAT_SVG, b"<svg>"),
        ("label.png", (), pb.LABEL_FORMAT_PNG, b"\x89PNG"),
        ("label.txt", ("--format", "zpl"), pb.LABEL_FORMAT_ZPL, b"^XA"),
        ("label.pdf", ("--format", "PDF"), pb.LABEL_FORMAT_PDF, b"%PDF"),
    ],
)
def test_label_writes_the_rendered_file(
    coding: RunningCoding,
    run_codes: CodesInvoker,
    tmp_path: Path,
    file_name: str,
    options: tuple[str, ...],
    expected_format: int,
    starts_with: bytes,
) -> None:
    code = coding.fake.add_issuance(1).codes[0]
    target = tmp_path / file_name

    result = run_codes("label", code.code, "--output", str(target), *options)

    assert result.exit_code == 0, result.output
    (request,) = coding.fake.requests
    assert isinstance(request, pb.RenderLabelRequest)
    assert request.format == expected_format
    assert target.read_bytes().startswith(starts_with)
    assert code.code.encode() in target.read_bytes()
    assert f"QR code: {code.resolver_url}" in result.stdout
    assert files_in(tmp_path) == {file_name}


def test_label_needs_a_format_and_a_known_code(
    coding: RunningCoding, run_codes: CodesInvoker, tmp_path: Path
) -> None:
    code = coding.fake.add_issuance(1).codes[0]

    no_format = run_codes("label", code.code, "--output", str(tmp_path / "label.bin"))
    unknown = run_codes("label", "33XXXXXXXXXXXXXX", "--output", str(tmp_path / "label.svg"))

    assert_clean_failure(no_format, 2)
    assert "give --format svg, png, zpl or pdf" in no_format.output
    assert_clean_failure(unknown, 1)
    assert "error: NOT_FOUND" in unknown.stderr
    assert files_in(tmp_path) == set()


def test_lineage_shows_ancestors_and_descendants(
    coding: RunningCoding, run_codes: CodesInvoker
) -> None:
    parents = [code.code for code in coding.fake.add_issuance(2).codes]
    (mixed,) = coding.fake.add_derivation(parents, 1, "MIX")
    repacked = coding.fake.add_derivation([mixed], 2, "REPACK")

    result = run_codes("lineage", mixed, "--depth", "2")
    original = run_codes("lineage", parents[0])
    as_json = run_codes("lineage", repacked[0], "--depth", "2", "--json")

    assert result.exit_code == 0, result.output
    request = coding.fake.requests[0]
    assert isinstance(request, pb.GetLineageRequest)
    assert request.depth == 2
    assert "derived from (nearest first)" in result.stdout
    assert "went into (nearest first)" in result.stdout
    assert "MIX" in result.stdout
    assert "REPACK" in result.stdout
    for code in [*parents, *repacked]:
        assert code in result.stdout
    assert original.exit_code == 0, original.output
    assert "derived from: nothing (an original code)" in original.stdout
    assert as_json.exit_code == 0, as_json.output
    shown = json.loads(as_json.stdout)
    assert [step["reason"] for step in shown["ancestors"]] == ["REPACK", "MIX"]
    assert shown["descendants"] == []
    assert shown["ancestors"][1]["parent_codes"] == parents


def test_lineage_of_a_large_derivation_lists_some_codes_and_json_all(
    coding: RunningCoding, run_codes: CodesInvoker
) -> None:
    parent = coding.fake.add_issuance(1).codes[0].code
    children = coding.fake.add_derivation([parent], 25, "SPLIT")

    table = run_codes("lineage", parent)
    as_json = run_codes("lineage", parent, "--json")

    assert table.exit_code == 0, table.output
    assert "children (25):" in table.stdout
    assert children[19] in table.stdout
    assert children[20] not in table.stdout
    assert "… 5 more (--json lists all)" in " ".join(table.stdout.split())
    assert json.loads(as_json.stdout)["descendants"][0]["child_codes"] == children


def test_lineage_depth_is_limited(coding: RunningCoding, run_codes: CodesInvoker) -> None:
    result = run_codes("lineage", "33K7MXH2TA9WPRC6", "--depth", "21")

    assert_clean_failure(result, 2)
    assert coding.fake.requests == []


# ---------------------------------------------------------------- connection


def test_unreachable_service_exits_1_naming_the_address(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_address = f"127.0.0.1:{probe.getsockname()[1]}"
    runner = CliRunner(
        env={
            "COLUMNS": "200",
            "AGRITRACE_ADDRESS": closed_address,
            "AGRITRACE_TOKEN": None,
            "AGRITRACE_CONFIG_DIR": str(tmp_path),
        }
    )

    result = runner.invoke(app, ["--timeout", "5", "codes", "verify", "33K7MXH2TA9WPRC6"])

    assert_clean_failure(result, 1)
    assert "UNAVAILABLE" in result.output
    assert f"(registry address: {closed_address})" in result.output
