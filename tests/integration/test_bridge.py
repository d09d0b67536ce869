"""The province bridge against the real platform (both modes) and a simulated province run
as its own process: the historical import survives a SIGKILL, a bridge acts for its own
province only, security reports are stored and announced, a conformance run connects a
province, and two provinces importing at once end with one national identity per
organisation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from agritrace.bridge.v1 import bridge_pb2 as bpb
from agritrace.bridge.v1 import bridge_pb2_grpc
from agritrace.events.v1 import event_log_pb2, event_log_pb2_grpc
from agritrace.flow.v1 import flow_pb2 as fpb
from agritrace.flow.v1 import flow_pb2_grpc
from agritrace.registry.v1 import registry_pb2 as rpb
from agritrace.registry.v1 import registry_pb2_grpc
from agritrace.sso.v1 import sso_pb2, sso_pb2_grpc
from agritrace_bridge.contract import MAX_PAGE_SIZE as MAX_IMPORT_PAGE_SIZE
from agritrace_bridge.simulator.data import SubjectGenerator
from agritrace_kernel.auth.sso_client import bearer_metadata
from agritrace_testing.bridge import Simulator
from agritrace_testing.bridge import register_province as shared_register_province
from agritrace_testing.bridge import start_simulator as start_shared_simulator
from agritrace_testing.chain import SHOUGUANG, party, printed_codes, tomato_batch
from agritrace_testing.polling import eventually
from tests.integration.conftest import ROOT, USER_PASSWORD, Platform, free_port, wait_serving

pytestmark = pytest.mark.integration


@dataclass
class Bridge:
    """A province's bridge: `python -m agritrace_bridge migrate`, then `serve`."""

    province: str
    env: dict[str, str]
    log_dir: Path
    address: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    starts: int = 0

    @property
    def server(self) -> subprocess.Popen[bytes]:
        return self.processes[-1]

    def start(self) -> None:
        self.starts += 1
        log = (self.log_dir / f"bridge-{self.province}-{self.starts}.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "agritrace_bridge", "serve"],
                                   env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        wait_serving(self.address, process)

    def kill(self) -> None:
        self.server.send_signal(signal.SIGKILL)
        self.server.wait(timeout=15)

    def stop(self) -> int:
        if self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            return self.server.wait(timeout=30)
        return self.server.returncode

    def logs(self) -> str:
        return "".join(path.read_text(errors="replace")[-3000:]
                       for path in sorted(self.log_dir.glob(f"bridge-{self.province}-*.log")))


def sso_stub(platform: Platform) -> Any:
    return sso_pb2_grpc.SsoServiceStub(platform.sso_channel)  # type: ignore[no-untyped-call]


def register_province(platform: Platform, province: str, stage: int) -> tuple[str, str]:
    """The province's platform in sso's directory at `stage`, and a platform client account
    for its bridge: (platform_id, username)."""
    return shared_register_province(sso_stub(platform), bearer_metadata(platform.admin_token),
                                    province, stage, USER_PASSWORD)


def start_simulator(province: str, log: Path, *args: str) -> Simulator:
    return start_shared_simulator(province, log, *args, cwd=ROOT)


def bridge_env(platform: Platform, province: str, username: str, simulator: Simulator,
               data_dir: Path, **extra: str) -> tuple[dict[str, str], str]:
    port = free_port()
    env = {k: v for k, v in platform.env.items()
           if not k.startswith("AGRITRACE_") or k in (
               "AGRITRACE_DATABASE_URL", "AGRITRACE_PII_KEY", "AGRITRACE_EVENT_BUS",
               "AGRITRACE_AMQP_URI", "AGRITRACE_REDIS_URL", "AGRITRACE_LOG_FORMAT")}
    if not env.get("AGRITRACE_PII_KEY"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGRITRACE_")}
    env.update({
        "AGRITRACE_DATA_DIR": str(data_dir),
        "AGRITRACE_GRPC_ADDRESS": f"127.0.0.1:{port}",
        "AGRITRACE_METRICS_PORT": str(free_port()),
        "AGRITRACE_SSO_ADDRESS": platform.sso_address or platform.address,
        "AGRITRACE_REGISTRY_ADDRESS": platform.address,
        "AGRITRACE_FLOW_ADDRESS": platform.flow_address or platform.address,
        "AGRITRACE_SERVICE_USERNAME": username,
        "AGRITRACE_SERVICE_PASSWORD": USER_PASSWORD,
        "AGRITRACE_MIGRATE_ON_START": "true",
        "AGRITRACE_OUTBOX_POLL_SECONDS": "0.1",
        "AGRITRACE_BRIDGE_PROVINCE": province,
        "AGRITRACE_BRIDGE_ADAPTER": "rest",
        "AGRITRACE_BRIDGE_ADAPTER_BASE_URL": simulator.url,
        "AGRITRACE_BRIDGE_ADAPTER_API_KEY": simulator.api_key,
        **extra,
    })
    return env, f"127.0.0.1:{port}"


@dataclass
class Province:
    """A simulated province with its bridge, on the module's platform."""

    code: str
    platform_id: str
    username: str
    simulator: Simulator
    bridge: Bridge
    platform: Platform

    def token(self) -> str:
        return self.platform.login(self.username, USER_PASSWORD)

    def stub(self, token: str | None = None) -> Any:
        channel = self.platform.channel_as(token or self.platform.admin_token,
                                           self.bridge.address)
        return bridge_pb2_grpc.ProvinceBridgeServiceStub(channel)  # type: ignore[no-untyped-call]


@contextmanager
def running_province(platform: Platform, tmp: Path, code: str, *simulator_args: str,
                     worker: bool = False, import_page_size: int = 100
                     ) -> Iterator[Province]:
    """A province's platform registered in sso (TESTING), its simulator and its bridge
    (and, with `worker`, the bridge's worker), stopped cleanly afterwards. The import's
    pages are small by default, so that a few thousand subjects make many pages."""
    platform_id, username = register_province(platform, code, sso_pb2.ONBOARDING_STAGE_TESTING)
    simulator = start_simulator(code, tmp / f"simulator-{code}.log", *simulator_args,
                                "--sso-address", platform.sso_address or platform.address)
    env, address = bridge_env(platform, code, username, simulator, tmp / f"var-{code}",
                              AGRITRACE_BRIDGE_IMPORT_PAGE_SIZE=str(import_page_size))
    bridge = Bridge(code, env, tmp, address)
    consumer: subprocess.Popen[bytes] | None = None
    try:
        bridge.start()
        if worker:
            consumer = start_worker(env, tmp / f"bridge-{code}-worker.log")
        yield Province(code, platform_id, username, simulator, bridge, platform)
        assert bridge.stop() == 0, bridge.logs()
        if consumer is not None:
            consumer.send_signal(signal.SIGTERM)
            assert consumer.wait(timeout=30) == 0
    except BaseException:
        sys.stderr.write(f"--- bridge {code} log ---\n{bridge.logs()}\n")
        raise
    finally:
        for process in [*bridge.processes, *([consumer] if consumer else [])]:
            if process.poll() is None:
                process.kill()
        simulator.stop()


@pytest.fixture(scope="module")
def province_37(platform: Platform, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[Province]:
    # National events reach a bridge over RabbitMQ, through its own worker.
    with running_province(platform, tmp_path_factory.mktemp(f"bridge-37-{platform.mode}"),
                          "37", "--subjects", "1500", "--invalid-every", "100",
                          "--latency-ms", "20",
                          worker=platform.mode == "microservices") as province:
        yield province


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m agritrace_bridge worker`, once it consumes (its queues exist)."""
    process = subprocess.Popen([sys.executable, "-m", "agritrace_bridge", "worker"],
                               env={**env, "AGRITRACE_METRICS_PORT": str(free_port())},
                               cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        eventually(lambda: process.poll() is not None or "worker started" in log.read_text(),
                   timeout=120, what="the bridge worker started")
        assert process.poll() is None, log.read_text()[-3000:]
    except BaseException:
        # A worker left behind would compete for the province's queues with later runs.
        process.kill()
        process.wait()
        raise
    return process


def _subjects_in(platform: Platform, division_prefix: str) -> list[Any]:
    """Every national subject located under `division_prefix`, a page of 1000 at a time."""
    subjects, token = [], ""
    while True:
        page = platform.registry.ListSubjects(rpb.ListSubjectsRequest(
            division_prefix=division_prefix, page_size=1000, page_token=token))
        subjects += page.subjects
        token = page.next_page_token
        if not token:
            return subjects


def _latest(province: Province) -> Any:
    return province.stub().GetStatus(bpb.GetStatusRequest()).latest_import


def test_the_import_survives_a_sigkill_and_ends_with_each_subject_once(
        province_37: Province) -> None:
    province = province_37
    bridge = province.stub(province.token())  # the province's own ops team
    run = bridge.StartImport(bpb.StartImportRequest(request_id="first")).run
    assert run.state == bpb.IMPORT_STATE_RUNNING
    eventually(lambda: _latest(province).pages >= 3, timeout=60, what="three pages imported")

    province.bridge.kill()
    province.bridge.start()

    done = eventually(lambda: (r := _latest(province)).state == bpb.IMPORT_STATE_COMPLETED
                      and r, timeout=120, what="the import completed")
    assert done.import_id == run.import_id
    assert (done.total_size, done.pages) == (1500, 15)
    assert done.created + done.merged + done.conflict + done.rejected == 1500
    assert done.rejected == 15 and done.created == 1485
    outcomes = _report(province, run.import_id)
    assert len({o.source_record_id for o in outcomes}) == len(outcomes) == 1500
    rejected = province.stub().GetImportReport(bpb.GetImportReportRequest(
        outcome=bpb.IMPORT_OUTCOME_REJECTED)).outcomes
    assert len(rejected) == 15 and all(o.field and o.reason for o in rejected)
    # One national identity per created record: no duplicate from the resent page.
    assert len(_subjects_in(province.platform, "37")) == 1485
    again = bridge.StartImport(bpb.StartImportRequest(request_id="first")).run
    assert again.import_id == run.import_id
    metrics = httpx.get(f"http://127.0.0.1:{province.bridge.env['AGRITRACE_METRICS_PORT']}"
                        "/metrics", timeout=10).text
    assert 'agritrace_bridge_records_moved_total{direction="import",province="37"}' in metrics
    assert 'agritrace_bridge_last_success_timestamp_seconds{direction="import",province="37"}' \
        in metrics


def test_a_bridge_acts_for_its_own_province_only(province_37: Province) -> None:
    platform = province_37.platform
    token = province_37.token()
    registry = registry_pb2_grpc.RegistryServiceStub(platform.channel)  # type: ignore[no-untyped-call]
    with pytest.raises(grpc.RpcError) as refused:
        list(registry.ImportSubjects(iter([rpb.ImportSubjectsRequest(
            import_id=f"foreign-{uuid.uuid4().hex[:8]}", source_province="11",
            records=[rpb.ImportRecord(source_record_id="11-1", registration=rpb.
                                      SubjectRegistration(name="x"))])]),
            metadata=bearer_metadata(token)))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    _, username = register_province(platform, "11", sso_pb2.ONBOARDING_STAGE_TESTING)
    foreign = platform.login(username, USER_PASSWORD)
    with pytest.raises(grpc.RpcError) as outside:
        province_37.stub(foreign).GetStatus(bpb.GetStatusRequest())
    assert outside.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_security_events_are_stored_once_and_announced(province_37: Province) -> None:
    bridge = province_37.stub(province_37.token())
    request = bpb.ReportSecurityEventRequest(
        request_id="posture-2024-q2", category="POSTURE", severity=bpb.SEVERITY_INFO,
        summary="季度安全自查: 等保三级测评通过", details="no open findings")
    first = bridge.ReportSecurityEvent(request)
    again = bridge.ReportSecurityEvent(request)
    assert (again.event_id, again.replayed, first.replayed) == (first.event_id, True, False)
    with pytest.raises(grpc.RpcError) as bad:
        bridge.ReportSecurityEvent(bpb.ReportSecurityEventRequest(request_id="x"))
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    log = event_log_pb2_grpc.EventLogServiceStub(province_37.platform.channel_as(  # type: ignore[no-untyped-call]
        province_37.platform.admin_token, province_37.bridge.address))
    events = log.ListEvents(event_log_pb2.ListEventsRequest(source="province-bridge-37"))
    reported = [e for e in events.events if e.name == "security_event_reported"]
    assert [e.event_id for e in reported] == [first.event_id]


def test_a_full_conformance_pass_run_by_an_administrator_connects_the_province(
        province_37: Province) -> None:
    own = province_37.stub(province_37.token()).RunConformance(bpb.RunConformanceRequest())
    # Exchanging a token for a platform in TESTING is for administrators only.
    assert own.failed_checks == ["token_verifies"] and own.onboarding_stage == "TESTING"
    assert own.stage_change.startswith("unchanged")

    answer = province_37.stub().RunConformance(bpb.RunConformanceRequest())

    assert answer.passed, [(r.name, r.detail) for r in answer.results]
    assert (answer.onboarding_stage, answer.stage_change) == ("CONNECTED",
                                                              "moved to CONNECTED")
    status = province_37.stub().GetStatus(bpb.GetStatusRequest())
    assert status.onboarding_stage == "CONNECTED" and status.adapter == "rest"


def _admin(province: Province, method: str, path: str, body: dict[str, Any]) -> None:
    province.simulator.admin(method, path, body)


def _inbound(province: Province) -> Any:
    return province.stub().GetStatus(bpb.GetStatusRequest()).inbound


def test_internal_trace_reaches_flow_once_through_faults_and_a_flow_outage(
        province_37: Province) -> None:
    platform = province_37.platform
    coop = party(platform, SHOUGUANG, "寿光市绿源蔬菜专业合作社", rpb.SUBJECT_KIND_COOPERATIVE)
    harvested = datetime.now(UTC) - timedelta(days=3)
    batch_id = coop.flow.CreateBatch(tomato_batch(coop, printed_codes(coop, 2),
                                                  harvested)).batch.batch_id
    before = _inbound(province_37)
    _admin(province_37, "PUT", "/admin/batches", {"batch_ids": [batch_id]})
    # The province fails one request in three from now on (503 with Retry-After: 1).
    _admin(province_37, "PATCH", "/admin/faults", {"fail_every": 3})
    try:
        _admin(province_37, "POST", "/admin/trace-records", {"count": 40})
        eventually(lambda: _inbound(province_37).delivered > before.delivered,
                   timeout=60, what="first records delivered")
        if platform.mode == "microservices":
            flow = platform.processes["flow-server"]
            flow.send_signal(signal.SIGTERM)
            assert flow.wait(timeout=30) == 0
            _admin(province_37, "POST", "/admin/trace-records", {"count": 40})
            # The new records are read and kept; flow is down, so they wait.
            eventually(lambda: _inbound(province_37).queue_depth >= 40, timeout=60,
                       what="records waiting")
            time.sleep(2)
            assert _inbound(province_37).queue_depth >= 40
            platform.restart("flow-server", platform.flow_address)
        else:
            _admin(province_37, "POST", "/admin/trace-records", {"count": 40})
        done = eventually(lambda: (s := _inbound(province_37)).queue_depth == 0
                          and s.delivered - before.delivered + s.errors - before.errors >= 80
                          and s, timeout=120, what="every record delivered")
    finally:
        _admin(province_37, "PATCH", "/admin/faults", {"fail_every": 0})
    history, token = [], ""
    flow_stub = flow_pb2_grpc.FlowServiceStub(  # type: ignore[no-untyped-call]
        platform.channel_as(platform.admin_token, platform.flow_address or platform.address))
    while True:
        page = flow_stub.ListBatchHistory(fpb.ListBatchHistoryRequest(
            batch_id=batch_id, page_size=1000, page_token=token))
        history += [h.record_id for h in page.records if h.kind == "INTERNAL_TRACE"]
        token = page.next_page_token
        if not token:
            break
    assert len(history) == len(set(history)) == done.delivered - before.delivered
    assert len(history) >= 70  # the simulator's records pass flow's rules but a few


def test_national_records_wait_while_the_province_is_down_then_reach_it_once(
        province_37: Province) -> None:
    platform = province_37.platform
    if platform.mode != "microservices":
        pytest.skip("national events reach a bridge over RabbitMQ (microservices mode); the "
                    "all-in-one platform delivers its events in its own process")

    def pushed(record_id: str) -> int:
        return httpx.get(f"{province_37.simulator.url}/v1/national-records/{record_id}",
                         headers={"Authorization": f"Bearer {province_37.simulator.api_key}"},
                         timeout=10).status_code

    def outbound() -> Any:
        return province_37.stub().GetStatus(bpb.GetStatusRequest()).outbound

    before = outbound()
    _admin(province_37, "PATCH", "/admin/faults", {"down": True})
    try:
        # Two national facts about province 37: a subject registered there, then reviewed.
        operator = platform.new_operator("370102")
        platform.registry.ReviewSubject(rpb.ReviewSubjectRequest(
            subject_id=operator.subject_id, decision=rpb.REVIEW_DECISION_APPROVE))
        other = platform.new_operator("110105")  # another province's: not for this bridge
        waiting = eventually(lambda: (s := outbound()).queue_depth >= 2
                             and s.errors > before.errors and s, timeout=60,
                             what="records waiting")
        assert waiting.lag_seconds > 0
    finally:
        _admin(province_37, "PATCH", "/admin/faults", {"down": False})
    eventually(lambda: outbound().queue_depth == 0, timeout=90, what="queued records pushed")
    assert outbound().dead_letters == 0
    events = _registry_events(platform, {operator.subject_id, other.subject_id})
    ours = [e.event_id for e in events if operator.subject_id in e.payload_json]
    theirs = [e.event_id for e in events if other.subject_id in e.payload_json]
    assert len(ours) == 2 and all(pushed(event_id) == 200 for event_id in ours)
    assert theirs and all(pushed(event_id) == 404 for event_id in theirs)


def _registry_events(platform: Platform, subject_ids: set[str]) -> list[Any]:
    """The registry's events (its event log) that name one of these subjects."""
    log = event_log_pb2_grpc.EventLogServiceStub(  # type: ignore[no-untyped-call]
        platform.channel_as(platform.admin_token))
    found, token = [], ""
    while True:
        page = log.ListEvents(event_log_pb2.ListEventsRequest(
            source="registry", page_size=5000, page_token=token))
        found += [e for e in page.events if e.name.startswith("subject_")
                  and any(s in e.payload_json for s in subject_ids)]
        token = page.next_page_token
        if not token:
            return found


def _report(province: Province, import_id: str) -> list[Any]:
    outcomes, token = [], ""
    while True:
        page = province.stub().GetImportReport(bpb.GetImportReportRequest(
            import_id=import_id, page_size=1000, page_token=token))
        outcomes += page.outcomes
        token = page.next_page_token
        if not token:
            return outcomes


# Per province: subjects, of which the last ones are the organisations both hold - the
# issue's full size in both modes (40-55 s each on this 2-core machine, since the registry checks
# an import's duplicates per batch rather than the whole import after every page).
TWO_PROVINCE_SIZE, TWO_PROVINCE_SHARED = 50_000, 2_000
TWO_PROVINCE_SEED = 7


def test_two_provinces_import_at_once_and_shared_subjects_get_one_identity(
        platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Provinces 13 and 14 import at once, each through its bridge at the production page
    size, 50,000 subjects each of which 2,000 are the same organisations (same credit code,
    located in 13). Every shared organisation ends as exactly one national subject with both
    provenances, every other record as a subject of its own."""
    size, shared = TWO_PROVINCE_SIZE, TWO_PROVINCE_SHARED
    tmp = tmp_path_factory.mktemp(f"bridges-13-14-{platform.mode}")
    simulated = ("--subjects", str(size), "--shared", str(shared),
                 "--seed", str(TWO_PROVINCE_SEED))
    with running_province(platform, tmp, "13", "--shared-with", "14", *simulated,
                          import_page_size=MAX_IMPORT_PAGE_SIZE) as hebei, \
            running_province(platform, tmp, "14", "--shared-with", "13", *simulated,
                             import_page_size=MAX_IMPORT_PAGE_SIZE) as shanxi:
        runs = {p.code: p.stub(p.token()).StartImport(bpb.StartImportRequest(
            request_id="history")).run for p in (hebei, shanxi)}
        # Asked every second: status calls would take CPU from the import itself.
        eventually(lambda: all(_latest(p).state == bpb.IMPORT_STATE_COMPLETED
                               for p in (hebei, shanxi)), timeout=900, interval=1,
                   what="both imported")
        with ThreadPoolExecutor(2) as pool:  # the two reports side by side
            reports = dict(zip(runs, pool.map(lambda p: _report(p, runs[p.code].import_id),
                                              (hebei, shanxi)), strict=True))
        finished = [_latest(p) for p in (hebei, shanxi)]
    distinct = 2 * size - shared
    assert [(r.total_size, r.created + r.merged) for r in finished] == [(size, size)] * 2
    assert sum(r.created for r in finished) == distinct
    outcomes = [o for report in reports.values() for o in report]
    for report in reports.values():
        assert len({o.source_record_id for o in report}) == len(report) == size
    assert {o.outcome for o in outcomes} <= {bpb.IMPORT_OUTCOME_CREATED,
                                              bpb.IMPORT_OUTCOME_MERGED}
    merged = [o for o in outcomes if o.outcome == bpb.IMPORT_OUTCOME_MERGED]
    assert len(merged) == shared and len({o.subject_id for o in outcomes}) == distinct

    # The registry's side: every subject of the two provinces, with its provenance.
    with ThreadPoolExecutor(2) as pool:  # the two provinces' listings side by side
        subjects = [s for listed in pool.map(lambda prefix: _subjects_in(platform, prefix),
                                             ("13", "14")) for s in listed]
    assert len({s.subject_id for s in subjects}) == len(subjects) == distinct
    assert {s.subject_id for s in subjects} == {o.subject_id for o in outcomes}
    # The overlap set as the simulators compute it, independently of what was imported.
    generator = SubjectGenerator("13", TWO_PROVINCE_SEED, size, shared_with="14",
                                 shared=shared)
    shared_codes = {generator.subject(i).credit_code for i in range(generator.own, size)}
    assert len(shared_codes) == shared
    holders: dict[str, list[Any]] = {code: [] for code in shared_codes}
    for subject in subjects:
        if subject.credit_code in holders:
            holders[subject.credit_code].append(subject)
    both = {"province:13", "province:14"}
    assert all(len(found) == 1 for found in holders.values()), \
        [code for code, found in holders.items() if len(found) != 1][:10]
    assert all({p.source for p in found[0].provenance} == both
               for found in holders.values())
    assert {found[0].subject_id for found in holders.values()} == \
        {o.subject_id for o in merged}
    # Every other subject came from one province only.
    assert all(len(s.provenance) == 1 for s in subjects if s.credit_code not in holders)
