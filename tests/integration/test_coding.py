"""The coding service end to end, in both run modes (see conftest.platform): every issuing
mode, verification, derivation and lineage, labels decoded by a real QR decoder, bad input,
and a server killed in the middle of a million-code issue."""

from __future__ import annotations

import csv
import io
import signal
import sqlite3
import threading
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg
import pytest
import zxingcpp
from PIL import Image

from agritrace.coding.v1 import coding_pb2 as pb
from agritrace.coding.v1 import coding_pb2_grpc
from agritrace_coding.domain import codes as code_format
from agritrace_registry.domain import identifiers
from agritrace_testing.grpc_errors import error_reason, violations
from agritrace_testing.polling import eventually

pytestmark = pytest.mark.integration

PASSWORD = "a long enough password"
RESOLVER = "https://trace.agritrace.example.cn/tc/"


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


@dataclass(frozen=True)
class Operator:
    """A subject, its operator's token, and the coding service as that operator."""

    subject_id: str
    token: str
    coding: coding_pb2_grpc.CodingServiceStub


def new_operator(platform, county: str = "330106") -> Operator:  # type: ignore[no-untyped-def]
    account = platform.new_operator(county)
    return Operator(account.subject_id, account.token,
                    coding_pb2_grpc.CodingServiceStub(platform.coding_channel_as(account.token)))


def regulator(platform, jurisdiction: str) -> coding_pb2_grpc.CodingServiceStub:  # type: ignore[no-untyped-def]
    """The coding service as a regulator (inspector) of `jurisdiction`."""
    return coding_pb2_grpc.CodingServiceStub(
        platform.coding_channel_as(platform.new_regulator(jurisdiction)))


def anonymous(platform) -> coding_pb2_grpc.CodingServiceStub:  # type: ignore[no-untyped-def]
    return coding_pb2_grpc.CodingServiceStub(platform.coding_channel_as(None))


def state_of(stub: coding_pb2_grpc.CodingServiceStub, code: str) -> int:
    return stub.VerifyCode(pb.VerifyCodeRequest(code=code)).state  # type: ignore[no-any-return]


def counts(stub: coding_pb2_grpc.CodingServiceStub, issuance_id: str) -> dict[str, int]:
    issuance = stub.GetIssuance(pb.GetIssuanceRequest(issuance_id=issuance_id)).issuance
    return dict(issuance.state_counts)


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        call(*args, **kwargs)
    return raised.value


def test_online_issue_retry_print_and_verify(platform) -> None:  # type: ignore[no-untyped-def]
    owner = new_operator(platform)
    request = pb.IssueCodesRequest(
        request_id=f"online-{uuid.uuid4().hex}", subject_id=owner.subject_id,
        mode=pb.ISSUE_MODE_ONLINE, quantity=25, product_batch_id="B-2026-001")
    first = owner.coding.IssueCodes(request)
    codes = [c.code for c in first.codes]
    assert len(codes) == len(set(codes)) == 25
    assert [c.serial for c in first.codes] == list(range(1, 26))
    assert all(code_format.parse(c).check_valid and c.startswith("33") for c in codes)
    assert first.codes[0].resolver_url == RESOLVER + codes[0]
    assert first.issuance.province == "33" and not first.replayed

    again = owner.coding.IssueCodes(request)
    assert again.replayed and [c.code for c in again.codes] == codes
    assert again.issuance.issuance_id == first.issuance.issuance_id

    scanner = anonymous(platform)
    before = scanner.VerifyCode(pb.VerifyCodeRequest(code=code_format.display(codes[0]).lower()))
    assert before.exists and before.state == pb.CODE_STATE_ISSUED
    assert "not activated" in before.summary and before.subject_id == ""

    printed = owner.coding.MarkCodesPrinted(pb.MarkCodesPrintedRequest(
        request_id=f"print-{uuid.uuid4().hex}", codes=codes[:10]))
    # The issuance names its batch: printing activates at once.
    assert (printed.printed, printed.activated) == (10, 10)
    after = scanner.VerifyCode(pb.VerifyCodeRequest(code=codes[0]))
    assert after.state == pb.CODE_STATE_ACTIVE and after.summary == "genuine and active"
    seen_by_owner = owner.coding.VerifyCode(pb.VerifyCodeRequest(code=codes[0]))
    assert seen_by_owner.subject_id == owner.subject_id
    assert seen_by_owner.product_batch_id == "B-2026-001"
    assert counts(owner.coding, first.issuance.issuance_id) == {
        "CODE_STATE_ACTIVE": 10, "CODE_STATE_ISSUED": 15}

    typo = codes[1][:5] + ("X" if codes[1][5] != "X" else "Y") + codes[1][6:]
    mistyped = scanner.VerifyCode(pb.VerifyCodeRequest(code=typo))
    assert mistyped.well_formed and not mistyped.check_valid and not mistyped.exists
    body = "33" + "".join(code_format.ALPHABET[(i * 7) % 29] for i in range(13))
    forged = scanner.VerifyCode(pb.VerifyCodeRequest(code=body + code_format.check_character(body)))
    assert forged.check_valid and not forged.exists and "counterfeit" in forged.summary
    garbage = scanner.VerifyCode(pb.VerifyCodeRequest(code="hello"))
    assert not garbage.well_formed

    port = platform.coding_metrics_port or platform.metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    for sample in ('agritrace_codes_total{operation="online",province="33"}',
                   'agritrace_codes_total{operation="activated",province="33"}',
                   'agritrace_code_verifications_total{outcome="bad_check"}',
                   'agritrace_code_verifications_total{outcome="unknown"}',
                   'agritrace_code_verifications_total{outcome="malformed"}'):
        assert sample in metrics, sample


def test_download_mode_exports_csv_and_a_zip_of_labels(platform) -> None:  # type: ignore[no-untyped-def]
    owner = new_operator(platform)
    issued = owner.coding.IssueCodes(pb.IssueCodesRequest(
        request_id=f"dl-{uuid.uuid4().hex}", subject_id=owner.subject_id,
        mode=pb.ISSUE_MODE_DOWNLOAD, quantity=20_000, product_batch_id="B-DL-1"))
    assert not issued.codes and issued.issuance.quantity == 20_000
    issuance_id = issued.issuance.issuance_id

    chunks = list(owner.coding.ExportCodes(pb.ExportCodesRequest(
        issuance_id=issuance_id, format=pb.EXPORT_FORMAT_CSV)))
    assert len(chunks) > 1, "the export is streamed in chunks"
    assert chunks[0].content_type.startswith("text/csv")
    assert chunks[-1].codes_written == chunks[-1].codes_total == 20_000
    rows = list(csv.reader(io.StringIO(b"".join(c.data for c in chunks).decode())))
    assert rows[0] == ["serial", "code", "resolver_url"]
    assert [int(r[0]) for r in rows[1:]] == list(range(1, 20_001))
    assert len({r[1] for r in rows[1:]}) == 20_000
    assert all(r[2] == RESOLVER + r[1] and code_format.has_valid_check(r[1]) for r in rows[1:])
    listed = owner.coding.ListCodes(pb.ListCodesRequest(issuance_id=issuance_id, page_size=3))
    assert [c.code for c in listed.codes] == [r[1] for r in rows[1:4]]

    archive = b"".join(c.data for c in owner.coding.ExportCodes(pb.ExportCodesRequest(
        issuance_id=issuance_id, format=pb.EXPORT_FORMAT_LABELS_ZIP,
        first_serial=101, last_serial=150)))
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        names = opened.namelist()
        assert len(names) == 50
        assert names[0] == f"0000101-{rows[101][1]}.svg"
        assert code_format.display(rows[101][1]) in opened.read(names[0]).decode()


def test_pre_print_run_activated_by_range(platform) -> None:  # type: ignore[no-untyped-def]
    owner, printer = new_operator(platform), new_operator(platform, "330102")
    run = owner.coding.IssueCodes(pb.IssueCodesRequest(
        request_id=f"pre-{uuid.uuid4().hex}", subject_id=owner.subject_id,
        mode=pb.ISSUE_MODE_PRE_PRINT, quantity=1000, printer_subject_id=printer.subject_id))
    issuance_id = run.issuance.issuance_id
    first_code = next(iter(printer.coding.ListCodes(pb.ListCodesRequest(
        issuance_id=issuance_id, page_size=1)).codes)).code

    # The printing company receives the run: it lists, exports and confirms printing.
    runs = printer.coding.ListIssuances(pb.ListIssuancesRequest(subject_id=printer.subject_id))
    assert [i.issuance_id for i in runs.issuances] == [issuance_id]
    exported = b"".join(c.data for c in printer.coding.ExportCodes(pb.ExportCodesRequest(
        issuance_id=issuance_id, format=pb.EXPORT_FORMAT_CSV)))
    assert exported.count(b"\n") == 1001
    scanned = anonymous(platform).VerifyCode(pb.VerifyCodeRequest(code=first_code))
    assert "not activated" in scanned.summary

    whole_run = pb.SerialRange(issuance_id=issuance_id, first_serial=1, last_serial=1000)
    printed = printer.coding.MarkCodesPrinted(pb.MarkCodesPrintedRequest(
        request_id=f"printed-{uuid.uuid4().hex}", range=whole_run))
    assert (printed.printed, printed.activated) == (1000, 0)
    assert "not activated" in anonymous(platform).VerifyCode(
        pb.VerifyCodeRequest(code=first_code)).summary

    # Binding to goods is the owner's: the printer may not.
    denied = rpc_error(printer.coding.ActivateCodes, pb.ActivateCodesRequest(
        request_id=f"act-{uuid.uuid4().hex}", product_batch_id="B-TEA-7",
        range=pb.SerialRange(issuance_id=issuance_id, first_serial=1, last_serial=10)))
    assert denied.code() is grpc.StatusCode.PERMISSION_DENIED

    activated = owner.coding.ActivateCodes(pb.ActivateCodesRequest(
        request_id=f"act-{uuid.uuid4().hex}", product_batch_id="B-TEA-7",
        range=pb.SerialRange(issuance_id=issuance_id, first_serial=1, last_serial=500)))
    assert activated.activated == 500
    assert counts(owner.coding, issuance_id) == {"CODE_STATE_ACTIVE": 500,
                                                 "CODE_STATE_PRINTED": 500}
    active = owner.coding.VerifyCode(pb.VerifyCodeRequest(code=first_code))
    assert active.state == pb.CODE_STATE_ACTIVE and active.product_batch_id == "B-TEA-7"

    # An overlapping range is refused as a whole: nothing of it changes.
    # Regulators read within their jurisdiction (the owner is in county 330106).
    for jurisdiction, allowed in (("33", True), ("330106", True), ("330102", False),
                                  ("44", False)):
        inspector = regulator(platform, jurisdiction)
        request = pb.GetIssuanceRequest(issuance_id=issuance_id)
        if allowed:
            assert inspector.GetIssuance(request).issuance.quantity == 1000
        else:
            refused = rpc_error(inspector.GetIssuance, request)
            assert refused.code() is grpc.StatusCode.PERMISSION_DENIED, jurisdiction
    read_only = rpc_error(regulator(platform, "33").VoidCodes, pb.VoidCodesRequest(
        request_id=f"v-{uuid.uuid4().hex}", codes=[first_code], reason="inspection"))
    assert read_only.code() is grpc.StatusCode.PERMISSION_DENIED

    overlap = rpc_error(owner.coding.ActivateCodes, pb.ActivateCodesRequest(
        request_id=f"act-{uuid.uuid4().hex}", product_batch_id="B-TEA-8",
        range=pb.SerialRange(issuance_id=issuance_id, first_serial=401, last_serial=600)))
    assert overlap.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(overlap) == "ILLEGAL_STATE_MOVE"
    assert counts(owner.coding, issuance_id) == {"CODE_STATE_ACTIVE": 500,
                                                 "CODE_STATE_PRINTED": 500}


def line_requests(opened: pb.OpenLine, script: Iterator[pb.StreamCodesRequest | None]
                  ) -> Iterator[pb.StreamCodesRequest]:
    yield pb.StreamCodesRequest(open=opened)
    for message in script:
        if message is None:
            return
        yield message


class LineScript:
    """Feeds a production line's requests one at a time, as answers come back."""

    def __init__(self) -> None:
        self._queue: list[pb.StreamCodesRequest | None] = []
        self._ready = threading.Condition()

    def send(self, message: pb.StreamCodesRequest | None) -> None:
        with self._ready:
            self._queue.append(message)
            self._ready.notify()

    def __iter__(self) -> Iterator[pb.StreamCodesRequest | None]:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: bool(self._queue))
                message = self._queue.pop(0)
            yield message
            if message is None:
                return


def test_production_line_stream_broken_midway_voids_unacknowledged(  # type: ignore[no-untyped-def]
    platform,
) -> None:
    owner = new_operator(platform)
    script = LineScript()
    responses = owner.coding.StreamCodes(line_requests(pb.OpenLine(
        request_id=f"line-{uuid.uuid4().hex}", subject_id=owner.subject_id,
        product_batch_id="B-LINE-3", line_id="packing-line-3"), iter(script)))
    opened = next(responses).opened
    script.send(pb.StreamCodesRequest(request=pb.RequestCodes(count=10)))
    sent = [c.code for c in next(responses).codes.codes]
    assert len(sent) == 10
    script.send(pb.StreamCodesRequest(acknowledge=pb.AcknowledgePrinted(codes=sent[:6])))
    acknowledged = next(responses).acknowledged
    assert (acknowledged.printed, acknowledged.outstanding) == (6, 4)

    responses.cancel()  # the line's connection breaks
    eventually(lambda: counts(owner.coding, opened.issuance_id).get("CODE_STATE_VOID") == 4,
               timeout=20, interval=0.1, what="the unacknowledged codes void")
    assert counts(owner.coding, opened.issuance_id) == {"CODE_STATE_ACTIVE": 6,
                                                        "CODE_STATE_VOID": 4}
    assert all(state_of(owner.coding, code) == pb.CODE_STATE_ACTIVE for code in sent[:6])
    assert all(state_of(owner.coding, code) == pb.CODE_STATE_VOID for code in sent[6:])


def test_production_line_stream_ending_normally(platform) -> None:  # type: ignore[no-untyped-def]
    owner = new_operator(platform)

    def script() -> Iterator[pb.StreamCodesRequest]:
        yield pb.StreamCodesRequest(open=pb.OpenLine(
            request_id=f"line-{uuid.uuid4().hex}", subject_id=owner.subject_id,
            product_batch_id="B-LINE-4", line_id="line-4"))
        yield pb.StreamCodesRequest(request=pb.RequestCodes(count=3))

    answers = list(owner.coding.StreamCodes(script()))
    assert [a.WhichOneof("message") for a in answers] == ["opened", "codes"]
    issuance_id = answers[0].opened.issuance_id

    def all_void() -> None:
        assert counts(owner.coding, issuance_id) == {"CODE_STATE_VOID": 3}

    eventually(all_void, timeout=10, interval=0.1)


def test_derivation_and_lineage_both_ways(platform) -> None:  # type: ignore[no-untyped-def]
    owner = new_operator(platform)
    parents = [c.code for c in owner.coding.IssueCodes(pb.IssueCodesRequest(
        request_id=f"p-{uuid.uuid4().hex}", subject_id=owner.subject_id,
        mode=pb.ISSUE_MODE_ONLINE, quantity=3, product_batch_id="B-APPLE-1")).codes]
    owner.coding.MarkCodesPrinted(pb.MarkCodesPrintedRequest(
        request_id=f"pp-{uuid.uuid4().hex}", codes=parents))
    request = pb.DeriveCodesRequest(
        request_id=f"mix-{uuid.uuid4().hex}", subject_id=owner.subject_id,
        parent_codes=parents[:2], product_batch_id="B-MIX-1", quantity=1, reason="MIX")
    derived = owner.coding.DeriveCodes(request)
    child = derived.codes[0].code
    assert derived.issuance.mode == pb.ISSUE_MODE_DERIVED
    assert owner.coding.DeriveCodes(request).codes[0].code == child  # a retry
    assert [state_of(owner.coding, code) for code in parents] == [
        pb.CODE_STATE_CONSUMED, pb.CODE_STATE_CONSUMED, pb.CODE_STATE_ACTIVE]

    # The child is ISSUED, not yet ACTIVE: goods cannot be repacked before being labelled.
    refused = rpc_error(owner.coding.DeriveCodes, pb.DeriveCodesRequest(
        request_id=f"repack-{uuid.uuid4().hex}", subject_id=owner.subject_id,
        parent_codes=[child, parents[2]], product_batch_id="B-BOX-1", quantity=2,
        reason="REPACK"))
    assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert state_of(owner.coding, parents[2]) == pb.CODE_STATE_ACTIVE


def test_lineage_of_a_two_step_derivation(platform) -> None:  # type: ignore[no-untyped-def]
    owner = new_operator(platform)
    coding = owner.coding

    def active(count: int, batch: str) -> list[str]:
        issued = [c.code for c in coding.IssueCodes(pb.IssueCodesRequest(
            request_id=f"i-{uuid.uuid4().hex}", subject_id=owner.subject_id,
            mode=pb.ISSUE_MODE_ONLINE, quantity=count, product_batch_id=batch)).codes]
        coding.MarkCodesPrinted(pb.MarkCodesPrintedRequest(
            request_id=f"p-{uuid.uuid4().hex}", codes=issued))
        return issued

    def derive(parents: list[str], batch: str, quantity: int, reason: str) -> list[str]:
        children = [c.code for c in coding.DeriveCodes(pb.DeriveCodesRequest(
            request_id=f"d-{uuid.uuid4().hex}", subject_id=owner.subject_id,
            parent_codes=parents, product_batch_id=batch, quantity=quantity,
            reason=reason)).codes]
        coding.MarkCodesPrinted(pb.MarkCodesPrintedRequest(
            request_id=f"p-{uuid.uuid4().hex}", codes=children))
        return children

    apples = active(3, "B-APPLE-2")
    mixed = derive(apples[:2], "B-MIX-2", 1, "MIX")
    boxes = derive([mixed[0], apples[2]], "B-BOX-2", 2, "REPACK")
    assert state_of(coding, mixed[0]) == pb.CODE_STATE_CONSUMED

    up = coding.GetLineage(pb.GetLineageRequest(code=boxes[0], depth=5))
    assert [sorted(d.parent_codes) for d in up.ancestors] == [
        sorted([mixed[0], apples[2]]), sorted(apples[:2])]
    assert up.ancestors[0].reason == "REPACK" and up.ancestors[1].reason == "MIX"
    assert not up.descendants
    down = coding.GetLineage(pb.GetLineageRequest(code=apples[0], depth=5))
    assert [list(d.child_codes) for d in down.descendants] == [mixed, boxes]
    assert not down.ancestors
    one_step = coding.GetLineage(pb.GetLineageRequest(code=apples[0], depth=1))
    assert [list(d.child_codes) for d in one_step.descendants] == [mixed]

    # Deriving from a consumed code is an illegal move, and writes nothing.
    refused = rpc_error(coding.DeriveCodes, pb.DeriveCodesRequest(
        request_id=f"d-{uuid.uuid4().hex}", subject_id=owner.subject_id,
        parent_codes=[apples[0]], product_batch_id="B-X", quantity=1, reason="SPLIT"))
    assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION
    issuances = coding.ListIssuances(pb.ListIssuancesRequest(subject_id=owner.subject_id))
    assert len(issuances.issuances) == 3


def test_labels_decode_back_to_the_resolver_url(platform) -> None:  # type: ignore[no-untyped-def]
    owner = new_operator(platform)
    codes = [c.code for c in owner.coding.IssueCodes(pb.IssueCodesRequest(
        request_id=f"l-{uuid.uuid4().hex}", subject_id=owner.subject_id,
        mode=pb.ISSUE_MODE_ONLINE, quantity=12)).codes]
    png = owner.coding.RenderLabel(pb.RenderLabelRequest(code=codes[0],
                                                          format=pb.LABEL_FORMAT_PNG))
    assert png.content_type == "image/png" and png.resolver_url == RESOLVER + codes[0]
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.data)))
    assert [d.text for d in decoded] == [RESOLVER + codes[0]]

    svg = owner.coding.RenderLabel(pb.RenderLabelRequest(code=codes[1],
                                                          format=pb.LABEL_FORMAT_SVG))
    assert svg.content_type == "image/svg+xml"
    assert code_format.display(codes[1]) in svg.data.decode()
    zpl = owner.coding.RenderLabel(pb.RenderLabelRequest(code=codes[2],
                                                          format=pb.LABEL_FORMAT_ZPL))
    assert zpl.data.startswith(b"^XA") and (RESOLVER + codes[2]).encode() in zpl.data
    sheet = owner.coding.RenderLabelSheet(pb.RenderLabelSheetRequest(codes=codes))
    assert sheet.data.startswith(b"%PDF") and (sheet.labels, sheet.pages) == (12, 1)


def test_bad_input_is_refused_clearly_and_writes_nothing(platform) -> None:  # type: ignore[no-untyped-def]
    owner, stranger = new_operator(platform), new_operator(platform)
    coding = owner.coding

    def issue(**fields: object) -> grpc.RpcError:
        request = pb.IssueCodesRequest(request_id=f"bad-{uuid.uuid4().hex}",
                                       subject_id=owner.subject_id, mode=pb.ISSUE_MODE_ONLINE,
                                       quantity=5)
        for name, value in fields.items():
            setattr(request, name, value)
        return rpc_error(platform.coding.IssueCodes, request)

    unknown = issue(subject_id=identifiers.new_subject_id("33"))
    assert unknown.code() is grpc.StatusCode.NOT_FOUND
    assert error_reason(unknown) == "SUBJECT_NOT_FOUND"
    malformed = issue(subject_id="not-a-subject")
    assert malformed.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "subject_id" in violations(malformed)
    for quantity in (0, -1, 10_001):
        error = issue(quantity=quantity)
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, quantity
        assert "quantity" in violations(error)
    huge = issue(mode=pb.ISSUE_MODE_DOWNLOAD, quantity=1_000_001)
    assert violations(huge)["quantity"] == "must be at most 1,000,000"
    assert "mode" in violations(issue(mode=pb.ISSUE_MODE_UNSPECIFIED))
    assert "request_id" in violations(issue(request_id=""))
    assert "product_batch_id" in violations(issue(mode=pb.ISSUE_MODE_PRE_PRINT,
                                                  product_batch_id="B-1"))
    assert not coding.ListIssuances(pb.ListIssuancesRequest(
        subject_id=owner.subject_id)).issuances

    # Issuing for another subject, and touching another subject's codes.
    denied = rpc_error(stranger.coding.IssueCodes, pb.IssueCodesRequest(
        request_id=f"x-{uuid.uuid4().hex}", subject_id=owner.subject_id,
        mode=pb.ISSUE_MODE_ONLINE, quantity=1))
    assert denied.code() is grpc.StatusCode.PERMISSION_DENIED
    codes = [c.code for c in coding.IssueCodes(pb.IssueCodesRequest(
        request_id=f"ok-{uuid.uuid4().hex}", subject_id=owner.subject_id,
        mode=pb.ISSUE_MODE_ONLINE, quantity=3)).codes]
    for call, request in (
        (stranger.coding.VoidCodes, pb.VoidCodesRequest(
            request_id=f"v-{uuid.uuid4().hex}", codes=codes, reason="mine now")),
        (stranger.coding.MarkCodesPrinted, pb.MarkCodesPrintedRequest(
            request_id=f"m-{uuid.uuid4().hex}", codes=codes)),
        (stranger.coding.RenderLabel, pb.RenderLabelRequest(
            code=codes[0], format=pb.LABEL_FORMAT_SVG)),
    ):
        assert rpc_error(call, request).code() is grpc.StatusCode.PERMISSION_DENIED

    # A malformed code among good ones: the field is named, nothing is voided.
    bad = rpc_error(coding.VoidCodes, pb.VoidCodesRequest(
        request_id=f"v-{uuid.uuid4().hex}", codes=[codes[0], "33NOTACODE"], reason="damaged"))
    assert bad.code() is grpc.StatusCode.INVALID_ARGUMENT and "codes[1]" in violations(bad)
    no_reason = rpc_error(coding.VoidCodes, pb.VoidCodesRequest(
        request_id=f"v-{uuid.uuid4().hex}", codes=codes))
    assert "reason" in violations(no_reason)
    assert all(state_of(coding, code) == pb.CODE_STATE_ISSUED for code in codes)

    voided = coding.VoidCodes(pb.VoidCodesRequest(
        request_id=f"v-{uuid.uuid4().hex}", codes=codes[:1], reason="label torn"))
    assert voided.voided == 1 and state_of(coding, codes[0]) == pb.CODE_STATE_VOID
    again = rpc_error(coding.MarkCodesPrinted, pb.MarkCodesPrintedRequest(
        request_id=f"m-{uuid.uuid4().hex}", codes=codes[:2]))
    assert again.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert state_of(coding, codes[1]) == pb.CODE_STATE_ISSUED


class StoredCodes:
    """The coding service's tables, read directly: its PostgreSQL schema (microservices) or
    the all-in-one platform's SQLite file."""

    def __init__(self, platform, postgres_database: str) -> None:  # type: ignore[no-untyped-def]
        self.sqlite = None
        self.url = postgres_database.replace("+psycopg", "")
        if platform.mode == "all_in_one":
            self.sqlite = Path(platform.env["AGRITRACE_DATA_DIR"]) / "coding.db"
            self.wal = self.sqlite.with_name("coding.db-wal")
            self.wal_at_start = self.wal.stat().st_size if self.wal.exists() else 0

    def insert_running(self) -> bool:
        """Whether the codes are being written: a COPY into codes (PostgreSQL), or the
        write-ahead log grown by 8 MB (SQLite spills a large transaction into it)."""
        if self.sqlite is not None:
            size = self.wal.stat().st_size if self.wal.exists() else 0
            return size > self.wal_at_start + 8 * 2**20
        with psycopg.connect(self.url, autocommit=True) as db:
            row = db.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                             "AND query LIKE 'COPY codes%'").fetchone()
        return bool(row and row[0])

    def query(self, sql: str, *params: object) -> tuple[object, ...]:
        if self.sqlite is not None:
            with sqlite3.connect(self.sqlite) as db:
                return tuple(db.execute(sql.replace("%s", "?"), params).fetchone())
        with psycopg.connect(self.url, options="-csearch_path=coding") as db:
            found = db.execute(sql, params).fetchone()  # type: ignore[arg-type]
            assert found is not None
            return tuple(found)


def test_killed_mid_issue_then_retried_yields_one_complete_set(  # type: ignore[no-untyped-def]
    platform, postgres_database,
) -> None:
    """SIGKILL to the process holding the coding service (the coding server, or the whole
    all-in-one platform) while a million codes are being written; after a restart the retry
    with the same request id issues exactly one complete set."""
    owner = new_operator(platform)
    stored = StoredCodes(platform, postgres_database)
    request = pb.IssueCodesRequest(
        request_id=f"million-{uuid.uuid4().hex}", subject_id=owner.subject_id,
        mode=pb.ISSUE_MODE_PRE_PRINT, quantity=1_000_000)
    pending = owner.coding.IssueCodes.future(request, timeout=300)
    deadline = time.monotonic() + 120
    while not stored.insert_running():
        assert time.monotonic() < deadline, "the codes were never being written"
        assert not pending.done(), "the issue finished before it could be interrupted"
        time.sleep(0.02)
    time.sleep(0.3)
    name = "coding-server" if "coding-server" in platform.processes else "platform"
    server = platform.processes[name]
    server.send_signal(signal.SIGKILL)
    server.wait(timeout=30)
    with pytest.raises(grpc.RpcError):
        pending.result()

    count = ("SELECT count(*) FROM codes c JOIN issuances i ON c.issuance_id = i.issuance_id "
             "WHERE i.subject_id = %s")
    assert stored.query(count, owner.subject_id) == (0,), "a half batch is visible"

    platform.restart(name, platform.coding_address or platform.address)
    result = owner.coding.IssueCodes(request, timeout=300)
    assert not result.replayed and result.issuance.quantity == 1_000_000
    assert owner.coding.IssueCodes(request, timeout=60).replayed
    assert stored.query(count, owner.subject_id) == (1_000_000,)
    serials = stored.query("SELECT count(DISTINCT serial), min(serial), max(serial) FROM codes "
                           "WHERE issuance_id = %s", int(result.issuance.issuance_id))
    assert serials == (1_000_000, 1, 1_000_000)
    issuances = owner.coding.ListIssuances(pb.ListIssuancesRequest(subject_id=owner.subject_id))
    assert [i.issuance_id for i in issuances.issuances] == [result.issuance.issuance_id]
