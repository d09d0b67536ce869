"""The event log (agritrace.events.v1.EventLogService) end to end, in both run modes (see
conftest.platform): after a registration, an import, a large issuance and a batch, the
registry, coding and flow servers (the one all-in-one server) list those events in log order,
page by page, to services and administrators only."""

from __future__ import annotations

import json
import math
import sys
import uuid
from datetime import UTC, datetime

import grpc
import pytest
from google.type import date_pb2

from agritrace.coding.v1 import coding_pb2 as cpb
from agritrace.events.v1 import event_log_pb2 as pb
from agritrace.events.v1 import event_log_pb2_grpc
from agritrace.flow.v1 import flow_pb2 as fpb
from agritrace.flow.v1 import flow_pb2_grpc
from agritrace.registry.v1 import registry_pb2 as rpb
from agritrace.sso.v1 import sso_pb2, sso_pb2_grpc
from agritrace_kernel.auth.sso_client import bearer_metadata
from agritrace_testing.grpc_errors import violations

pytestmark = pytest.mark.integration

SHOUGUANG = "370783"


def rid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def log_as(platform, token: str | None, source: str  # type: ignore[no-untyped-def]
           ) -> event_log_pb2_grpc.EventLogServiceStub:
    """The event log of `source` at the server that hosts it."""
    address = {"coding": platform.coding_address, "flow": platform.flow_address}.get(source, "")
    return event_log_pb2_grpc.EventLogServiceStub(platform.channel_as(token, address))


def read_all(stub: event_log_pb2_grpc.EventLogServiceStub, source: str, page_size: int = 0
             ) -> tuple[list[pb.LoggedEvent], int]:
    """Every event of the log, following the page tokens; and how many pages it took."""
    events: list[pb.LoggedEvent] = []
    token, pages = "", 0
    while True:
        page = stub.ListEvents(pb.ListEventsRequest(source=source, page_size=page_size,
                                                    page_token=token))
        pages += 1
        events.extend(page.events)
        assert page.newest_position >= max((e.position for e in events), default=0)
        token = page.next_page_token
        if not token:
            return events, pages


def fixtures_module(platform):  # type: ignore[no-untyped-def]
    """conftest.py itself (pytest imports it under a name of its own): its helpers."""
    return sys.modules[type(platform).__module__]


def service_account_token(platform) -> str:  # type: ignore[no-untyped-def]
    """A fresh SERVICE account (as the query service has), signed in."""
    password = fixtures_module(platform).USER_PASSWORD
    sso = sso_pb2_grpc.SsoServiceStub(platform.sso_channel)
    username = f"svc-reader-{uuid.uuid4().hex[:6]}"
    sso.CreateAccount(sso_pb2.CreateAccountRequest(
        request_id=username, password=password,
        account=sso_pb2.Account(username=username, display_name="event reader",
                                kind=sso_pb2.ACCOUNT_KIND_SERVICE)),
        metadata=bearer_metadata(platform.admin_token))
    return str(platform.login(username, password))


def test_each_source_lists_its_events_in_log_order(platform) -> None:  # type: ignore[no-untyped-def]
    # As the administrator throughout: nothing waits on sso binding an operator's account.
    credit_code = fixtures_module(platform).credit_code
    subject_id = platform.registry.RegisterSubject(rpb.RegisterSubjectRequest(
        request_id=rid("reg"), registration=rpb.SubjectRegistration(
            kind=rpb.SUBJECT_KIND_COOPERATIVE, name="寿光市绿源蔬菜专业合作社",
            division_code=SHOUGUANG, credit_code=credit_code(SHOUGUANG)))).subject.subject_id
    import_id = rid("it-log-import")
    imported = list(platform.registry.ImportSubjects(iter([rpb.ImportSubjectsRequest(
        import_id=import_id, source_province="37", records=[rpb.ImportRecord(
            source_record_id="r1", registration=rpb.SubjectRegistration(
                kind=rpb.SUBJECT_KIND_ENTERPRISE, name="寿光蔬菜有限公司",
                division_code=SHOUGUANG, credit_code=credit_code(SHOUGUANG)))])])))
    imported_id = imported[0].results[0].subject_id
    coding = platform.coding
    large = coding.IssueCodes(cpb.IssueCodesRequest(
        request_id=rid("issue"), subject_id=subject_id, mode=cpb.ISSUE_MODE_DOWNLOAD,
        quantity=10_001)).issuance
    codes = [c.code for c in coding.IssueCodes(cpb.IssueCodesRequest(
        request_id=rid("issue"), subject_id=subject_id, mode=cpb.ISSUE_MODE_ONLINE,
        quantity=2)).codes]
    coding.MarkCodesPrinted(cpb.MarkCodesPrintedRequest(request_id=rid("print"), codes=codes))
    today = datetime.now(UTC).date()
    flow = flow_pb2_grpc.FlowServiceStub(platform.channel_as(platform.admin_token,
                                                             platform.flow_address))
    batch = flow.CreateBatch(fpb.CreateBatchRequest(request_id=rid("batch"), codes=codes,
                                                    batch=fpb.Batch(
        subject_id=subject_id, product_code="010403001", product_name="寿光番茄",
        quantity=fpb.Quantity(amount="100", unit="KG"),
        production_date=date_pb2.Date(year=today.year, month=today.month, day=today.day),
        origin_division=SHOUGUANG, certificate=fpb.Certificate(
            producer_name="寿光市绿源蔬菜专业合作社", contact_phone="13905361234",
            issue_date=date_pb2.Date(year=today.year, month=today.month, day=today.day),
            commitment="不使用禁限用农药兽药、不超标使用常规农药兽药、严格执行安全间隔期",
            basis=fpb.CERTIFICATE_BASIS_SELF_TEST, test_result="农残速测 合格")))).batch

    reader = service_account_token(platform)
    registry_events, _ = read_all(log_as(platform, reader, "registry"), "registry")
    coding_events, pages = read_all(log_as(platform, reader, "coding"), "coding", page_size=2)
    flow_events, _ = read_all(log_as(platform, platform.admin_token, "flow"), "flow")

    for source, events in (("registry", registry_events), ("coding", coding_events),
                           ("flow", flow_events)):
        positions = [e.position for e in events]
        assert positions == sorted(set(positions)), source
        assert {e.source for e in events} == {source}
        assert all(len(e.event_id) == 32 and e.occurred_at.seconds for e in events)
    registered = [json.loads(e.payload_json)["subject_id"] for e in registry_events
                  if e.name == "subject_registered"]
    assert subject_id in registered
    (applied,) = [json.loads(e.payload_json) for e in registry_events
                  if e.name == "import_batch_applied"
                  and json.loads(e.payload_json)["import_id"] == import_id]
    assert [s["subject_id"] for s in applied["subjects"]] == [imported_id]

    parts = [json.loads(e.payload_json) for e in coding_events if e.name == "codes_issued"
             and json.loads(e.payload_json)["issuance_id"] == large.issuance_id]
    assert [(p["part"], p["parts"], p["code_count"]) for p in parts] == [(1, 2, 10_000),
                                                                          (2, 2, 1)]
    assert len({code for p in parts for code in p["codes"]}) == 10_001
    assert pages == math.ceil(len(coding_events) / 2)
    activated = [json.loads(e.payload_json) for e in coding_events
                 if e.name == "codes_activated"]
    assert sorted(codes) in [sorted(payload["codes"]) for payload in activated]
    created = [json.loads(e.payload_json) for e in flow_events if e.name == "batch_created"]
    assert batch.batch_id in [payload["batch_id"] for payload in created]


def test_only_services_and_administrators_read_a_log_of_a_source_it_hosts(  # type: ignore[no-untyped-def]
    platform,
) -> None:
    operator = platform.new_operator()
    with pytest.raises(grpc.RpcError) as denied:
        log_as(platform, operator.token, "registry").ListEvents(
            pb.ListEventsRequest(source="registry"))
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as anonymous:
        log_as(platform, None, "registry").ListEvents(pb.ListEventsRequest(source="registry"))
    assert anonymous.value.code() is grpc.StatusCode.UNAUTHENTICATED

    admin = log_as(platform, platform.admin_token, "registry")
    # sso's log is not served; in microservices mode the registry server hosts only its own.
    unknown = ["sso", ""] + (["coding"] if platform.mode == "microservices" else [])
    for source in unknown:
        with pytest.raises(grpc.RpcError) as refused:
            admin.ListEvents(pb.ListEventsRequest(source=source))
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert set(violations(refused.value)) == {"source"}
    with pytest.raises(grpc.RpcError) as forged:
        admin.ListEvents(pb.ListEventsRequest(source="registry", page_token="forged"))
    assert set(violations(forged.value)) == {"page_token"}
