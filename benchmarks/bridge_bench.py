"""The province bridge's benchmarks (issue #7), in microservices mode, as a province runs
against the national services: sso, registry and flow each in its own process on a throwaway
PostgreSQL database (one schema per service, the bridge's province_bridge_37 beside them),
events published to RabbitMQ (a vhost of the benchmark's own, no consumer: no query worker
and no bridge worker, so the machine's two cores go to the path measured), leases in Redis
(BENCH_REDIS_URL);
the simulated province (`python -m agritrace_bridge simulate`, REST adapter over HTTP on
127.0.0.1) and the bridge (`python -m agritrace_bridge serve`, as the province's platform
client) each in its own process. Every process shares the machine's cores with the others.

14. Historical import. The simulator of province 37 holds --bridge-subjects subjects (default
   20,000; no invalid rows). StartImport (as the province's platform client), then
   GetStatus is polled every 0.25 s until the run is COMPLETED (progress printed); the rate
   is N over the bridge's own start-to-finish times of the run. Each page of 1,000 subjects is
   listed from the simulator (generated on request, JSON over HTTP), sent to the registry as
   one ImportSubjects call, and its outcomes and next page token committed in the bridge's
   database. Checks (MISMATCH otherwise): the run's total and outcome counts equal N, all
   CREATED; GetImportReport pages through N distinct records; the registry holds N subjects
   in province 37. Baseline, measured first in the same run on the same registry: the same
   generator's subjects of province 41 (another province, so nothing is a duplicate of the
   bridge's), generated before timing, sent by this process as the same pages through the
   bridge's own registry adapter (GrpcSubjectImporter: one ImportSubjects call per page of
   1,000, one after the other), as province 41's platform client: the registry's rate for the
   bridge's calls, with the province and the checkpoints taken away.
15. Internal trace, simulator → bridge → flow CaptureRecords. The province's records go to
   real batches of a subject of province 37 (created in flow first, and given to the
   simulator), enough of them that no record's occurrence lies in the future. Records are
   created by POST /admin/trace-records on the simulator (what its --record-rate thread
   does; here the benchmark paces it, so it knows when each record was created). A thread
   polls flow.internal_traces every 20 ms for the province's records past the last one
   seen (the bridge delivers in the province's order, one call at a time) and notes when
   each became visible.
   - Backlog: --bridge-trace-backlog records (default 10,000) created at once; records/s =
     the backlog over the time from its creation until the last record is visible in flow.
     Baseline: records of the same generator for batches of province 41, sent by this
     process through the bridge's flow adapter (GrpcTraceCapture: CaptureRecords, 500
     records a call as the bridge delivers, one call after the other), as province 41's
     platform client.
   - Steady stream: --bridge-trace-rate records/s (default 100) for --bridge-trace-seconds
     (default 60), created every 0.1 s. Lag of each record: from the POST that created it
     being sent until it is visible in flow (p50, p99, max); records/s delivered: the
     records over the span from the first to the last arrival in flow. The bridge's own
     gauge (GetStatus inbound.lag_seconds: the age of the oldest record read from the
     province but not yet delivered) is sampled every 0.5 s alongside. The lag includes the
     bridge's wait between polls of the province (1 s once it has read everything) and the
     POST's own time (printed).
   Exactly once (MISMATCH otherwise): every record the simulator made is in
   flow.internal_traces, each has exactly one INTERNAL_TRACE entry in flow's batch history,
   and the bridge's inbox holds each as DELIVERED with flow's answer STORED (no REFUSED).

Nothing here asserts on timing.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import grpc
import psycopg
from google.type import date_pb2

from agritrace.bridge.v1 import bridge_pb2 as bpb
from agritrace.bridge.v1 import bridge_pb2_grpc
from agritrace.flow.v1 import flow_pb2 as fpb
from agritrace.flow.v1 import flow_pb2_grpc
from agritrace.sso.v1 import sso_pb2, sso_pb2_grpc
from agritrace_bridge.adapters.national import GrpcSubjectImporter, GrpcTraceCapture
from agritrace_bridge.contract import MAX_PAGE_SIZE
from agritrace_bridge.service_layer.inbound import DELIVERY_BATCH
from agritrace_bridge.simulator.data import (
    EPOCH,
    SubjectGenerator,
    trace_record,
    trace_record_id,
)
from agritrace_kernel.auth.sso_client import BearerTokenClientInterceptor, ServiceTokenProvider
from agritrace_kernel.ports import free_port
from agritrace_testing.bridge import Simulator, register_province, start_simulator
from agritrace_testing.rabbit import RabbitVhost
from benchmarks.cpu import process_cpu_seconds
from benchmarks.import_bench import percentile
from benchmarks.infra import (
    AMQP_URI,
    REDIS_URL,
    RESULTS_DIR,
    ROOT,
    Microservices,
    RegistryServer,
    ThrowawayDatabase,
    log,
    start_microservices,
)

if TYPE_CHECKING:
    from rich.console import Console

    from benchmarks.run import Report

BRIDGE_PROVINCE = "37"  # the bridged province (Shandong)
DIRECT_PROVINCE = "41"  # the baselines' province (Henan): no record shared with the bridge's
PRODUCER_COUNTY = {"37": "370783", "41": "410102"}
TOMATO = ("010403001", "寿光番茄")
POLL_SECONDS = 0.02  # flow.internal_traces
STATUS_SECONDS = 0.5  # the bridge's GetStatus, during the stream
TICK_SECONDS = 0.1
DRAIN_SECONDS = 120.0  # after the stream (or a backlog), how long the records may take
IMPORT_TIMEOUT = 1800.0
# The simulator's record n goes to batch n % B at step (n // B) % 5 of cycle n // (5B); cycle
# c's last step occurs 60c + 45 days (and up to 23 h 10 min) after its EPOCH.
_STEPS, _CYCLE_DAYS, _LAST_STEP_DAYS = 5, 60, 46


def cpu_now(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process."""
    return {name: process_cpu_seconds(pid) for name, pid in pids.items()}


def cpu_since(before: dict[str, float], pids: dict[str, int]) -> dict[str, float]:
    now = cpu_now(pids)
    return {name: round(now[name] - before[name], 2) for name in before}


def _cpu_text(spent: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in spent.items())


def _date(moment: datetime) -> date_pb2.Date:
    return date_pb2.Date(year=moment.year, month=moment.month, day=moment.day)


def batches_needed(records: int, now: datetime) -> int:
    """Batches the simulator must spread `records` over so that none occurs after `now`
    (flow refuses a record from the future)."""
    cycles = ((now - EPOCH).days - _LAST_STEP_DAYS) // _CYCLE_DAYS + 1
    if cycles < 1:
        raise ValueError("the simulator's records would all lie in the future")
    return max(1, math.ceil(records / (_STEPS * cycles)))


def _client_channel(platform: Microservices, address: str, username: str, password: str
                    ) -> tuple[grpc.Channel, list[grpc.Channel]]:
    """A channel to `address` whose calls carry `username`'s token (signed in to sso); and
    the channels to close. It signs in now, not inside a timed call."""
    sso = grpc.insecure_channel(platform.address("sso"))
    target = grpc.insecure_channel(address)
    tokens = ServiceTokenProvider(sso, username, password)
    tokens.token()
    return grpc.intercept_channel(target, BearerTokenClientInterceptor(tokens)), [target, sso]


@dataclass
class Province:
    """A province's platform client account (in sso's directory at TESTING)."""

    code: str
    username: str
    password: str


def _register(platform: Microservices, code: str) -> Province:
    password = secrets.token_urlsafe(18)
    with grpc.insecure_channel(platform.address("sso")) as channel:
        sso = sso_pb2_grpc.SsoServiceStub(channel)  # type: ignore[no-untyped-call]
        _, username = register_province(sso, platform.credentials, code,
                                        sso_pb2.ONBOARDING_STAGE_TESTING, password)
    return Province(code, username, password)


def start_bridge(db: ThrowawayDatabase, platform: Microservices, province: Province,
                 simulator: Simulator, amqp_uri: str) -> RegistryServer:
    """The province's bridge: migrated, then `serve` until SERVING (its log in
    bench-results/bridge-serve.log)."""
    bridge = RegistryServer(
        db.sqlalchemy_url, RESULTS_DIR / "bridge-serve.log", module="agritrace_bridge",
        pii_key=platform.servers["sso"].pii_key, extra_env={
            "AGRITRACE_EVENT_BUS": "rabbitmq", "AGRITRACE_AMQP_URI": amqp_uri,
            "AGRITRACE_REDIS_URL": REDIS_URL, "AGRITRACE_METRICS_PORT": str(free_port()),
            "AGRITRACE_SSO_ADDRESS": platform.address("sso"),
            "AGRITRACE_REGISTRY_ADDRESS": platform.address("registry"),
            "AGRITRACE_FLOW_ADDRESS": platform.address("flow"),
            "AGRITRACE_SERVICE_USERNAME": province.username,
            "AGRITRACE_SERVICE_PASSWORD": province.password,
            "AGRITRACE_BRIDGE_PROVINCE": province.code, "AGRITRACE_BRIDGE_ADAPTER": "rest",
            "AGRITRACE_BRIDGE_ADAPTER_BASE_URL": simulator.url,
            "AGRITRACE_BRIDGE_ADAPTER_API_KEY": simulator.api_key})
    bridge.migrate()
    bridge.start()
    try:
        waited = bridge.wait_serving(timeout=120.0)
    except BaseException:
        bridge.stop()
        raise
    log(f"[bridge] bridge of province {province.code} SERVING on {bridge.address} after "
        f"{waited:.1f} s")
    return bridge


# -- 14. historical import ---------------------------------------------------------------------


@dataclass(frozen=True)
class ImportFigure:
    subjects: int
    seconds: float
    counts: dict[str, int]

    @property
    def rate(self) -> float:
        return self.subjects / self.seconds if self.seconds else 0.0


def direct_import(platform: Microservices, province: Province, subjects: int, seed: int
                  ) -> ImportFigure:
    """The baseline: the generator's subjects of `province`, made before timing, sent as the
    bridge sends them (GrpcSubjectImporter, pages of MAX_PAGE_SIZE, one after the other)."""
    generator = SubjectGenerator(province=province.code, seed=seed, count=subjects)
    pages = [[generator.subject(i) for i in range(start, min(start + MAX_PAGE_SIZE, subjects))]
             for start in range(0, subjects, MAX_PAGE_SIZE)]
    channel, opened = _client_channel(platform, platform.address("registry"), province.username,
                                      province.password)
    importer = GrpcSubjectImporter(channel)
    counts: Counter[str] = Counter()
    import_id = f"bench-direct-{uuid.uuid4().hex[:12]}"
    try:
        started = time.perf_counter()
        last_print = started
        for page in pages:
            counts.update(o.outcome.value for o in importer.import_page(
                import_id, province.code, page))
            now = time.perf_counter()
            if now - last_print >= 5.0:
                last_print = now
                done = sum(counts.values())
                log(f"  [bridge] direct import: {done:,}/{subjects:,} subjects "
                    f"{now - started:6.1f} s  {done / (now - started):8,.0f} subjects/s")
        seconds = time.perf_counter() - started
    finally:
        for opened_channel in opened:
            opened_channel.close()
    return ImportFigure(subjects, seconds, dict(counts))


def _bridge_stub(platform: Microservices, bridge: RegistryServer, province: Province
                 ) -> tuple[Any, list[grpc.Channel]]:
    channel, opened = _client_channel(platform, bridge.address, province.username,
                                      province.password)
    return bridge_pb2_grpc.ProvinceBridgeServiceStub(channel), opened  # type: ignore[no-untyped-call]


def _seconds(stamp: Any) -> float:
    return float(stamp.seconds + stamp.nanos / 1e9)


def bridge_import(bridge: Any, subjects: int) -> tuple[ImportFigure, Any, float]:
    """StartImport, then GetStatus every 0.25 s until the run ends. The figure (over the
    run's own start and finish times), the finished run, and the wall time seen here."""
    started = time.perf_counter()
    run = bridge.StartImport(bpb.StartImportRequest(request_id=f"bench-{uuid.uuid4().hex}"),
                             timeout=30).run
    last_print = started
    while True:
        time.sleep(0.25)
        latest = bridge.GetStatus(bpb.GetStatusRequest(), timeout=30).latest_import
        now = time.perf_counter()
        answered = latest.created + latest.merged + latest.conflict + latest.rejected
        if latest.state in (bpb.IMPORT_STATE_COMPLETED, bpb.IMPORT_STATE_FAILED):
            break
        if now - last_print >= 5.0:
            last_print = now
            log(f"  [bridge] import through the bridge: {answered:,}/{subjects:,} subjects, "
                f"{latest.pages} pages  {now - started:6.1f} s  "
                f"{answered / (now - started):8,.0f} subjects/s"
                + (f"  (retrying: {latest.last_error})" if latest.last_error else ""))
        if now - started > IMPORT_TIMEOUT:
            raise TimeoutError(f"the bridge's import not done after {IMPORT_TIMEOUT:.0f} s")
    wall = time.perf_counter() - started
    if latest.import_id != run.import_id:
        raise RuntimeError(f"GetStatus answered run {latest.import_id}, not {run.import_id}")
    seconds = _seconds(latest.finish_time) - _seconds(latest.start_time)
    counts = {"CREATED": latest.created, "MERGED": latest.merged,
              "CONFLICT": latest.conflict, "REJECTED": latest.rejected}
    return ImportFigure(subjects, seconds, counts), latest, wall


def report_ids(bridge: Any, import_id: str) -> list[str]:
    """Every record of the run's report (GetImportReport, pages of 1,000)."""
    ids: list[str] = []
    token = ""
    while True:
        page = bridge.GetImportReport(bpb.GetImportReportRequest(
            import_id=import_id, page_size=1000, page_token=token), timeout=60)
        ids.extend(outcome.source_record_id for outcome in page.outcomes)
        token = page.next_page_token
        if not token:
            return ids


def _import_phase(report: Report, console: Console, db: ThrowawayDatabase,
                  platform: Microservices, bridge: Any, provinces: dict[str, Province],
                  subjects: int, seed: int, pids: dict[str, int]) -> None:
    log(f"[bridge] registry direct: {subjects:,} subjects of province {DIRECT_PROVINCE} in "
        f"pages of {MAX_PAGE_SIZE:,} (GrpcSubjectImporter, as the bridge sends them)")
    registry_pid = {"registry": pids["registry"]}
    before = cpu_now(registry_pid)
    direct = direct_import(platform, provinces[DIRECT_PROVINCE], subjects, seed)
    direct_cpu = cpu_since(before, registry_pid)
    console.print(f"  registry direct (ImportSubjects, pages of {MAX_PAGE_SIZE:,}, province "
                  f"{DIRECT_PROVINCE}): {subjects:,} subjects in {direct.seconds:.1f} s = "
                  f"[bold]{direct.rate:,.0f} subjects/s[/]; outcomes {direct.counts}; CPU "
                  f"{_cpu_text(direct_cpu)}")
    if direct.counts.get("CREATED", 0) != subjects:
        report.mismatch(f"bridge phase, direct import: outcomes {direct.counts}, expected "
                        f"{subjects:,} CREATED")
    log(f"[bridge] import through the bridge: StartImport of {subjects:,} subjects of province "
        f"{BRIDGE_PROVINCE}")
    import_pids = {name: pids[name] for name in ("registry", "bridge", "simulator")}
    before = cpu_now(import_pids)
    figure, run, wall = bridge_import(bridge, subjects)
    bridge_cpu = cpu_since(before, import_pids)
    ids = report_ids(bridge, run.import_id)
    stored = db.scalar("SELECT count(*) FROM registry.subjects "
                       f"WHERE division_code LIKE '{BRIDGE_PROVINCE}%'")
    ratio = figure.rate / direct.rate if direct.rate else 0.0
    console.print(
        f"  through the bridge (simulator → bridge → ImportSubjects, pages of "
        f"{MAX_PAGE_SIZE:,}): {subjects:,} subjects in {figure.seconds:.1f} s (run's start to "
        f"finish; {wall:.1f} s seen by polling) = [bold]{figure.rate:,.0f} subjects/s[/] "
        f"({ratio:.2f}× direct), {run.pages} pages, {run.attempts} attempts; outcomes "
        f"{figure.counts}; report: {len(set(ids)):,} distinct records; registry: {stored:,} "
        f"subjects of province {BRIDGE_PROVINCE}; CPU {_cpu_text(bridge_cpu)}")
    if run.state != bpb.IMPORT_STATE_COMPLETED:
        report.mismatch(f"bridge import ended {bpb.ImportState.Name(run.state)}: "
                        f"{run.last_error}")
    answered = sum(figure.counts.values())
    if run.total_size != subjects or answered != subjects or \
            figure.counts["CREATED"] != subjects:
        report.mismatch(f"bridge import: total {run.total_size:,}, outcomes {figure.counts}; "
                        f"expected {subjects:,} CREATED")
    if len(ids) != subjects or len(set(ids)) != subjects:
        report.mismatch(f"bridge import report: {len(ids):,} outcomes, {len(set(ids)):,} "
                        f"distinct, expected {subjects:,}")
    if stored != subjects:
        report.mismatch(f"registry holds {stored:,} subjects of province {BRIDGE_PROVINCE} "
                        f"after the bridge's import of {subjects:,}")
    report.figures.setdefault("bridge", {})["import"] = {
        "subjects": subjects, "page_size": MAX_PAGE_SIZE,
        "bridge": {"seconds": round(figure.seconds, 2), "wall_seconds_polled": round(wall, 2),
                   "subjects_per_second": round(figure.rate, 1), "pages": run.pages,
                   "attempts": run.attempts, "counts": figure.counts,
                   "report_distinct_records": len(set(ids)), "registry_subjects": stored,
                   "cpu_seconds": bridge_cpu},
        "direct": {"seconds": round(direct.seconds, 2),
                   "subjects_per_second": round(direct.rate, 1), "counts": direct.counts,
                   "cpu_seconds": direct_cpu},
        "ratio_to_direct": round(ratio, 3)}
    report.rows.append((
        f"14. Historical import through the bridge ({subjects:,} subjects)",
        f"{figure.rate:,.0f} subjects/s ({figure.seconds:.1f} s)",
        f"registry ImportSubjects direct, same pages: {direct.rate:,.0f} subjects/s "
        f"({direct.seconds:.1f} s)",
        f"{ratio:.2f}× direct"))


# -- 15. internal trace ------------------------------------------------------------------------


class FlowPoller:
    """Polls flow.internal_traces every POLL_SECONDS for the province's records after the last
    one seen (record ids sort in the simulator's order, which the bridge delivers in) and
    notes when each first appeared (perf_counter)."""

    def __init__(self, conninfo: str, province: str) -> None:
        self.conninfo, self.province = conninfo, province
        self.seen: dict[str, float] = {}
        self._last = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flow-poller", daemon=True)

    def __enter__(self) -> FlowPoller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            while not self._stop.wait(POLL_SECONDS):
                rows = conn.execute(
                    "SELECT source_record_id FROM flow.internal_traces WHERE source_province = "
                    "%s AND source_record_id > %s ORDER BY source_record_id",
                    (self.province, self._last)).fetchall()
                if not rows:
                    continue
                now = time.perf_counter()
                with self._lock:
                    for (record_id,) in rows:
                        self.seen.setdefault(record_id, now)
                self._last = rows[-1][0]

    def count(self) -> int:
        with self._lock:
            return len(self.seen)

    def wait_for(self, record_ids: list[str], timeout: float, label: str) -> bool:
        """Waits until every one of `record_ids` was seen; progress every 5 s."""
        deadline = time.monotonic() + timeout
        last_print = time.monotonic()
        while time.monotonic() < deadline:
            with self._lock:
                missing = sum(1 for record_id in record_ids if record_id not in self.seen)
            if not missing:
                return True
            if time.monotonic() - last_print >= 5.0:
                last_print = time.monotonic()
                log(f"  [bridge] {label}: {len(record_ids) - missing:,}/{len(record_ids):,} "
                    "records in flow")
            time.sleep(0.1)
        return False


def create_batches(platform: Microservices, county: str, count: int) -> list[str]:
    """A producer in `county` and `count` batches of it in flow (as the administrator)."""
    subject_id = platform.register_subject(county, f"绿源蔬菜专业合作社{county}(基准)")
    produced = datetime.now(UTC) - timedelta(days=1)
    with grpc.insecure_channel(platform.address("flow")) as channel:
        flow = flow_pb2_grpc.FlowServiceStub(channel)  # type: ignore[no-untyped-call]
        return [flow.CreateBatch(fpb.CreateBatchRequest(
            request_id=f"bench-{uuid.uuid4().hex}", batch=fpb.Batch(
                subject_id=subject_id, product_code=TOMATO[0], product_name=TOMATO[1],
                quantity=fpb.Quantity(amount="100000", unit="KG"),
                production_date=_date(produced), origin_division=county)),
            metadata=platform.credentials, timeout=30).batch.batch_id for _ in range(count)]


@dataclass(frozen=True)
class CaptureFigure:
    records: int
    seconds: float
    outcomes: dict[str, int]
    cpu_seconds: dict[str, float]

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def direct_capture(platform: Microservices, province: Province, records: int, seed: int,
                   pids: dict[str, int]) -> CaptureFigure:
    """The baseline: `records` of the simulator's generator for new batches of `province`,
    made before timing, sent as the bridge delivers them (GrpcTraceCapture, DELIVERY_BATCH a
    call, one after the other); the CPU the processes `pids` used meanwhile."""
    batch_ids = create_batches(platform, PRODUCER_COUNTY[province.code],
                               batches_needed(records, datetime.now(UTC)))
    made = [trace_record(province.code, seed, batch_ids, n) for n in range(records)]
    channel, opened = _client_channel(platform, platform.address("flow"), province.username,
                                      province.password)
    capture = GrpcTraceCapture(channel)
    outcomes: Counter[str] = Counter()
    try:
        before = cpu_now(pids)
        started = time.perf_counter()
        for start in range(0, records, DELIVERY_BATCH):
            outcomes.update(o.outcome for o in capture.capture(
                province.code, made[start:start + DELIVERY_BATCH]))
        seconds = time.perf_counter() - started
        cpu = cpu_since(before, pids)
    finally:
        for opened_channel in opened:
            opened_channel.close()
    return CaptureFigure(records, seconds, dict(outcomes), cpu)


def stream_size(rate: float, seconds: float) -> int:
    """Records the steady stream makes: `rate` a second over whole ticks."""
    return round(round(seconds / TICK_SECONDS) * TICK_SECONDS * rate)


@dataclass
class Stream:
    """What the steady stream made and saw."""

    created: dict[str, float] = field(default_factory=dict)  # record id -> POST sent
    gauge: list[float] = field(default_factory=list)  # GetStatus inbound.lag_seconds
    depth: list[int] = field(default_factory=list)  # GetStatus inbound.queue_depth
    post_seconds: list[float] = field(default_factory=list)  # each POST's answer time
    late_ticks: int = 0


def steady_stream(simulator: Simulator, bridge: Any, rate: float, seconds: float,
                  first: int) -> Stream:
    """`rate` records a second for `seconds`, a POST every TICK_SECONDS; the bridge's status
    sampled every STATUS_SECONDS from another thread."""
    stream = Stream()
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(STATUS_SECONDS):
            try:
                inbound = bridge.GetStatus(bpb.GetStatusRequest(), timeout=5).inbound
            except grpc.RpcError:
                continue
            stream.gauge.append(inbound.lag_seconds)
            stream.depth.append(inbound.queue_depth)

    sampler = threading.Thread(target=sample, name="bridge-status", daemon=True)
    sampler.start()
    ticks = round(seconds / TICK_SECONDS)
    made = 0  # stream_size(rate, seconds) in the end
    started = time.perf_counter()
    try:
        for tick in range(ticks):
            delay = started + tick * TICK_SECONDS - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif delay < -TICK_SECONDS:
                stream.late_ticks += 1
            count = round((tick + 1) * TICK_SECONDS * rate) - made
            if count <= 0:
                continue
            sent = time.perf_counter()
            length = simulator.admin("POST", "/admin/trace-records",
                                     {"count": count})["trace_records"]
            stream.post_seconds.append(time.perf_counter() - sent)
            if length != first + made + count:
                raise RuntimeError(f"the simulator holds {length} records, expected "
                                   f"{first + made + count} (someone else adds records?)")
            for number in range(first + made, first + made + count):
                stream.created[trace_record_id(BRIDGE_PROVINCE, number)] = sent
            made += count
            if tick and tick % round(10 / TICK_SECONDS) == 0:
                log(f"  [bridge] stream: {made:,} records made in "
                    f"{time.perf_counter() - started:.0f} s")
    finally:
        stop.set()
        sampler.join()
    return stream


def exactly_once(db: ThrowawayDatabase, province: str, generated: int) -> dict[str, Any]:
    """flow's and the bridge's view of the province's records, after all arrived."""
    with psycopg.connect(db.conninfo) as conn:
        stored = {row[0] for row in conn.execute(
            "SELECT source_record_id FROM flow.internal_traces WHERE source_province = %s",
            (province,))}
        history = conn.execute(
            "SELECT count(*), count(DISTINCT record_id) FROM flow.batch_history "
            "WHERE kind = 'INTERNAL_TRACE' AND record_id LIKE %s",
            (f"{province}:%",)).fetchone() or (0, 0)
        inbox = {f"{state}/{outcome}": count for state, outcome, count in conn.execute(
            f"SELECT state, outcome, count(*) FROM province_bridge_{province}.trace_inbox "
            "GROUP BY state, outcome")}
    expected = {trace_record_id(province, n) for n in range(generated)}
    return {"generated": generated, "stored_in_flow": len(stored),
            "missing_in_flow": len(expected - stored), "unexpected_in_flow": len(stored - expected),
            "history_entries": history[0], "history_distinct_records": history[1],
            "bridge_inbox": inbox}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def _trace_phase(report: Report, console: Console, db: ThrowawayDatabase,
                 platform: Microservices, bridge: Any, simulator: Simulator,
                 provinces: dict[str, Province], backlog: int, rate: float, seconds: float,
                 seed: int, pids: dict[str, int]) -> None:
    figures = report.figures.setdefault("bridge", {})
    total = backlog + stream_size(rate, seconds)
    count = batches_needed(total, datetime.now(UTC))
    log(f"[bridge] internal trace: {count} batches of province {BRIDGE_PROVINCE} in flow "
        f"for {total:,} records; baseline batches of province {DIRECT_PROVINCE}")
    batch_ids = create_batches(platform, PRODUCER_COUNTY[BRIDGE_PROVINCE], count)
    simulator.admin("PUT", "/admin/batches", {"batch_ids": batch_ids})

    log(f"[bridge] flow direct: {backlog:,} records of province {DIRECT_PROVINCE}, "
        f"CaptureRecords of {DELIVERY_BATCH} (GrpcTraceCapture, as the bridge delivers them)")
    direct = direct_capture(platform, provinces[DIRECT_PROVINCE], backlog, seed,
                            {"flow": pids["flow"]})
    console.print(f"  flow direct (CaptureRecords, {DELIVERY_BATCH} records a call, province "
                  f"{DIRECT_PROVINCE}): {backlog:,} records in {direct.seconds:.1f} s = "
                  f"[bold]{direct.rate:,.0f} records/s[/]; outcomes {direct.outcomes}; CPU "
                  f"{_cpu_text(direct.cpu_seconds)}")
    if direct.outcomes.get("STORED", 0) != backlog:
        report.mismatch(f"bridge phase, direct capture: outcomes {direct.outcomes}, expected "
                        f"{backlog:,} STORED")

    with FlowPoller(db.conninfo, BRIDGE_PROVINCE) as poller:
        log(f"[bridge] backlog: {backlog:,} records made at once on the simulator")
        backlog_ids = [trace_record_id(BRIDGE_PROVINCE, n) for n in range(backlog)]
        trace_pids = {name: pids[name] for name in ("flow", "bridge", "simulator")}
        before = cpu_now(trace_pids)
        started = time.perf_counter()
        simulator.admin("POST", "/admin/trace-records", {"count": backlog})
        complete = poller.wait_for(backlog_ids, DRAIN_SECONDS + backlog / 100, "backlog")
        backlog_cpu = cpu_since(before, trace_pids)
        last = max((poller.seen[i] for i in backlog_ids if i in poller.seen), default=started)
        backlog_seconds = last - started
        backlog_rate = len([i for i in backlog_ids if i in poller.seen]) / backlog_seconds \
            if backlog_seconds > 0 else 0.0
        ratio = backlog_rate / direct.rate if direct.rate else 0.0
        console.print(
            f"  backlog through the bridge (simulator → bridge → CaptureRecords): {backlog:,} "
            f"records in {backlog_seconds:.1f} s = [bold]{backlog_rate:,.0f} records/s[/] "
            f"({ratio:.2f}× direct); CPU {_cpu_text(backlog_cpu)}"
            + ("" if complete else " [bold red]INCOMPLETE[/]"))
        if not complete:
            report.mismatch(f"bridge backlog: {poller.count():,} of {backlog:,} records in "
                            f"flow after {DRAIN_SECONDS + backlog / 100:.0f} s")
        time.sleep(1.5)  # the bridge back to its idle poll, as in the steady state

        log(f"[bridge] steady stream: {rate:g} records/s for {seconds:g} s")
        before = cpu_now(trace_pids)
        stream = steady_stream(simulator, bridge, rate, seconds, backlog)
        stream_ids = list(stream.created)
        drained = poller.wait_for(stream_ids, DRAIN_SECONDS, "stream")
        stream_cpu = cpu_since(before, trace_pids)
        seen = dict(poller.seen)
    lags = sorted(seen[i] - sent for i, sent in stream.created.items() if i in seen)
    arrivals = sorted(seen[i] for i in stream_ids if i in seen)
    # Over the span of the arrivals: the rate flow received them at while the stream ran.
    delivered_rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) \
        if len(arrivals) > 1 and arrivals[-1] > arrivals[0] else 0.0
    posts = stream.post_seconds
    gauge_max = max(stream.gauge, default=0.0)
    gauge_p50 = percentile(stream.gauge, 50) if stream.gauge else 0.0
    checks = exactly_once(db, BRIDGE_PROVINCE, total)
    lag_text = (f"p50 {_ms(percentile(lags, 50))}, p99 {_ms(percentile(lags, 99))}, max "
                f"{_ms(lags[-1])}") if lags else "no record seen"
    console.print(
        f"  steady stream: {len(stream.created):,} records made at {rate:g}/s for {seconds:g} s"
        f" ({stream.late_ticks} ticks more than one late; the POSTs answered in p50 "
        f"{_ms(percentile(posts, 50) if posts else 0.0)}, max {_ms(max(posts, default=0.0))}),"
        f" {len(lags):,} seen in flow, arriving at {delivered_rate:,.1f} records/s; lag from "
        f"creation to visible in flow: [bold]{lag_text}[/]\n"
        f"    bridge's gauge (inbound lag_seconds, oldest record read but not delivered; "
        f"{len(stream.gauge)} samples): p50 {_ms(gauge_p50)}, max {_ms(gauge_max)}; queue "
        f"depth max {max(stream.depth, default=0):,}; CPU over the stream "
        f"{_cpu_text(stream_cpu)}\n"
        f"    exactly once: {checks['generated']:,} made, {checks['stored_in_flow']:,} in flow "
        f"({checks['missing_in_flow']:,} missing, {checks['unexpected_in_flow']:,} "
        f"unexpected), history {checks['history_entries']:,} entries of "
        f"{checks['history_distinct_records']:,} records; bridge inbox {checks['bridge_inbox']}")
    once = (checks["missing_in_flow"] == 0 and checks["unexpected_in_flow"] == 0
            and checks["history_entries"] == checks["history_distinct_records"] == total
            and checks["bridge_inbox"] == {"DELIVERED/STORED": total})
    if not drained:
        report.mismatch(f"bridge stream: {len(lags):,} of {len(stream_ids):,} records in flow "
                        f"{DRAIN_SECONDS:.0f} s after the stream ended")
    if not once:
        report.mismatch(f"bridge internal trace not exactly once: {checks}")
    figures["trace_backlog"] = {
        "records": backlog, "seconds": round(backlog_seconds, 2),
        "records_per_second": round(backlog_rate, 1), "complete": complete,
        "cpu_seconds": backlog_cpu,
        "direct": {"seconds": round(direct.seconds, 2),
                   "records_per_second": round(direct.rate, 1), "outcomes": direct.outcomes,
                   "cpu_seconds": direct.cpu_seconds},
        "ratio_to_direct": round(ratio, 3)}
    figures["trace_stream"] = {
        "rate_per_second": rate, "seconds": seconds, "records": len(stream.created),
        "seen_in_flow": len(lags), "late_ticks": stream.late_ticks,
        "post_seconds_p50": round(percentile(posts, 50), 4) if posts else None,
        "delivered_per_second": round(delivered_rate, 1),
        "lag_s": {"p50": round(percentile(lags, 50), 4), "p99": round(percentile(lags, 99), 4),
                  "max": round(lags[-1], 4)} if lags else None,
        "bridge_gauge_s": {"samples": len(stream.gauge), "p50": round(gauge_p50, 4),
                           "max": round(gauge_max, 4)},
        "queue_depth_max": max(stream.depth, default=0), "batches": count,
        "cpu_seconds": stream_cpu}
    figures["trace_exactly_once"] = checks | {"ok": once}
    report.rows.append((
        f"15. Internal trace backlog through the bridge ({backlog:,} records)",
        f"{backlog_rate:,.0f} records/s ({backlog_seconds:.1f} s)",
        f"flow CaptureRecords direct, {DELIVERY_BATCH} a call: {direct.rate:,.0f} records/s",
        f"{ratio:.2f}× direct"))
    report.rows.append((
        f"   Internal trace stream, {rate:g} records/s for {seconds:g} s",
        f"lag {lag_text}; {delivered_rate:,.0f} records/s delivered",
        f"bridge's own lag gauge: p50 {_ms(gauge_p50)}, max {_ms(gauge_max)}",
        f"each record once: {'yes' if once else 'NO'}"))


# -- the phase ---------------------------------------------------------------------------------


def run_bridge_phase(report: Report, console: Console, *, subjects: int, trace_backlog: int,
                     trace_rate: float, trace_seconds: float, seed: int) -> None:
    db = ThrowawayDatabase(suffix="_bridge")
    vhost = RabbitVhost(AMQP_URI, "agritrace_bench", log)
    platform: Microservices | None = None
    simulator: Simulator | None = None
    bridge: RegistryServer | None = None
    opened: list[grpc.Channel] = []
    try:
        db.create()
        amqp_uri = vhost.create()
        # No consumer of the national events runs here (the read model is not measured): the
        # events are published (each service declares its exchange), and dropped.
        log(f"[bridge] throwaway database {db.name}, RabbitMQ {amqp_uri.rsplit('@', 1)[-1]}; "
            "starting sso, registry and flow")
        platform = start_microservices(db, ("registry", "flow"), amqp_uri=amqp_uri,
                                       redis_url=REDIS_URL, label="bridge")
        provinces = {code: _register(platform, code)
                     for code in (BRIDGE_PROVINCE, DIRECT_PROVINCE)}
        simulator = start_simulator(
            BRIDGE_PROVINCE, RESULTS_DIR / "bridge-simulator.log", "--subjects", str(subjects),
            "--seed", str(seed), "--sso-address", platform.address("sso"), cwd=ROOT)
        bridge = start_bridge(db, platform, provinces[BRIDGE_PROVINCE], simulator, amqp_uri)
        stub, opened = _bridge_stub(platform, bridge, provinces[BRIDGE_PROVINCE])
        assert bridge.process is not None
        pids = {"registry": platform.pid("registry"), "flow": platform.pid("flow"),
                "bridge": bridge.process.pid, "simulator": simulator.process.pid}
        console.print(
            f"  bridge runs against the microservices platform: bridge pid {pids['bridge']}, "
            f"simulator pid {pids['simulator']}, registry pid {pids['registry']}, flow pid "
            f"{pids['flow']}, PostgreSQL, RabbitMQ (logs: "
            f"{(RESULTS_DIR / 'bridge-*.log').relative_to(ROOT)})")
        _import_phase(report, console, db, platform, stub, provinces, subjects, seed, pids)
        _trace_phase(report, console, db, platform, stub, simulator, provinces, trace_backlog,
                     trace_rate, trace_seconds, seed, pids)
    finally:
        for channel in opened:
            channel.close()
        if bridge is not None:
            bridge.stop()
        if simulator is not None:
            simulator.stop()
        if platform is not None:
            platform.stop()
        vhost.drop()
        db.drop()
