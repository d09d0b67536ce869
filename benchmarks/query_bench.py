"""The query service's benchmarks (issue #6), in microservices mode: sso, registry, flow and
the query server and worker each in its own process on a throwaway PostgreSQL database (one
schema per service), events through RabbitMQ (a vhost of the benchmark's own), origin views
cached in Redis (database 13, BENCH_REDIS_URL). Every query RPC appends a hash-chained entry to
the query log: logging is on throughout, as in production.

11. GetOriginInfo at concurrency 16, anonymous, next to a bare grpcio echo (benchmarks.
   echo_server, its own process) and an echo through the kernel's server chain (create_server:
   tracing, metrics, logging, errors; what every service RPC pays before its own work), driven
   by the same 16 client threads, the modes taking turns in rounds. The read model is seeded
   by COPY into the query schema (subjects, batches with a compliance certificate, inspections
   and flags, ACTIVE codes bound to them). Two scan modes:
     - new: every call scans a code nobody scanned before (each package has its own code; the
       code's view misses the cache: a point query for the code's row + a near-cache fill;
       its batch's view is usually held already, as many codes share a batch; when not, a
       second point query for the batch);
     - again: codes scanned before (the code's and the batch's views come from the server's
       near cache: a code's view is kept there only, a batch's in Redis too).
   Figures: requests/s, p50/p99 client latency, the server's CPU per call; the rate's ratio
   to the echo's round by round too (its range shows how much the machine alone moves it).
   Goals: requests/s ≥ 1/2 of the bare echo's and p99 ≤ 2× the bare echo's p99. Every answer
   must say GENUINE_ACTIVE with the seeded product (else MISMATCH), and the query log must have
   grown by one entry per call. The log writer's cost, isolated: the same kind of entries (N = the
   scan calls) chained and written by a QueryLogWriter in this process into the same table,
   wired as the server's (libpq on PostgreSQL), in batches of 500 (the most the server's
   writer puts in one transaction); wall and CPU time per entry, set against the
   server's CPU per scan. And the log's cost inside the measured rounds: the query server's
   CPU per scan by thread (the scheduler's count per thread from /proc, the threads named by
   `py-spy dump`), the query-log writer's among them. Finally VerifyQueryLog (as the
   administrator) checks the chain over every entry written.
12. TraceForward over a generated graph of --trace-records (default 1,000,000) shipment and
   transformation rows, COPYed into the read model (~3,100 producer batches, ~60,000 batches
   in all, ~134,000 subjects in ten provinces): each producer batch goes producer → local
   wholesale market → 2-3 regional wholesalers (half in other provinces) who repack it → 2-4
   distributors → 1-3 sub-distributors who repack again → 2-3 supermarkets → 1-3 stores → 1-2
   restaurants → 0-1 branch kitchens: depth 10, ~300 edges a batch. Rows are stored in
   ship-time order (the trees interleaved, as months of business would leave them), secondary
   indexes built after the COPY, then ANALYZEd. No codes are bound to these batches (the
   lineage look-ups find nothing).
   From the producer batch of median size and from the largest: --trace-calls sequential
   TraceForward calls at depth 10, as a national regulator and as the origin province's
   regulator (nodes outside the province redacted); p50/p99, goal ≤ 100 ms. The answer's nodes
   and edges must be the generated tree's (MISMATCH otherwise). Baseline: the same traversal's
   SQL alone — the statements the service issues, level by level, on one psycopg connection in
   one transaction, with only the bookkeeping of the frontier in Python. Also printed: the
   query server's CPU per TraceForward, the client's CPU per SQL traversal and (py-spy) how
   the server's time splits between SQL, traversal, presentation and protobuf.
13. Read-model lag under a steady write load: RecordShipment (1 kg of one of four big
   batches, to one of two buyers) at --lag-rate per second and an inspection record
   (RecordInternalTrace) every other tick, for --lag-seconds, as the administrator, to the
   flow server (ALREADY_EXISTS, flow's answer when concurrent requests collide, is retried
   with the same request id and counted); its outbox relay publishes to RabbitMQ, the query
   worker projects. Figures: the
   worker's histogram agritrace_query_read_model_lag_seconds{source="flow"} over the load
   (difference of two scrapes of its /metrics; p50/p99 interpolated within buckets, as
   Prometheus' histogram_quantile does), and the exact distribution seen from outside: from
   each RecordShipment's answer (after flow's commit) to its row being visible in
   query.shipments (polled every 10 ms). Goal p99 ≤ 1 s. Also: the events the worker
   projected per second, its CPU per event (the most it could project on one free core) and
   (py-spy) where its time goes. Baseline: the load's events again (read from flow's outbox),
   through the query's handlers called in the benchmark's own thread on a read model of their
   own (a second throwaway database, primed with the registry's and flow's earlier events;
   invalidating in the benchmark's Redis, as the worker does; the first tenth untimed): CPU
   per event without nameko, kombu and eventlet. When the offered rate exceeds what the
   worker projects, the lag grows with the length of the load: a throughput limit, not a
   latency.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import psycopg

from agritrace.flow.v1 import flow_pb2 as fpb
from agritrace.flow.v1 import flow_pb2_grpc
from agritrace.query.v1 import query_pb2 as qpb
from agritrace.query.v1 import query_pb2_grpc
from agritrace.sso.v1 import sso_pb2
from agritrace_coding.domain import codes as code_format
from agritrace_kernel.config import load_settings
from agritrace_kernel.events.model import Event
from agritrace_query.bootstrap import bootstrap as query_bootstrap
from agritrace_registry.domain.divisions import DivisionCatalog
from agritrace_testing.rabbit import RabbitVhost
from benchmarks import stacks
from benchmarks.coding_bench import ConcurrentRun
from benchmarks.cpu import process_cpu_seconds, thread_cpu_seconds
from benchmarks.echo_server import METHOD as ECHO_METHOD
from benchmarks.import_bench import CHANNEL_OPTIONS, percentile, summarise
from benchmarks.infra import (
    AMQP_URI,
    REDIS_URL,
    RESULTS_DIR,
    ROOT,
    Microservices,
    RegistryServer,
    ThrowawayDatabase,
    log,
    scrape_metrics,
    start_microservices,
)
from benchmarks.rpc_bench import EchoServerProcess

if TYPE_CHECKING:
    from rich.console import Console

    from benchmarks.run import Report

CONCURRENCY = 16
SCAN_METHOD = "/agritrace.query.v1.QueryService/GetOriginInfo"
THROUGHPUT_GOAL = 0.5  # of the echo's requests/s
P99_GOAL = 2.0  # × the echo's p99
TRACE_GOAL_MS = 100.0
LAG_GOAL_S = 1.0
TRACE_DEPTH = 10
SCAN_BATCHES = 3000
HOT_CODES = 2000
WARMUP = 1000
ROUNDS = 10
GRAPH_DAYS = 150  # the generated graph's records happened over the last 150 days
# The lag load's producers (one batch each; shipments go round-robin over them).
LAG_PRODUCER_COUNTIES = ("370783", "410102", "130102", "320102", "330106", "440103", "510104",
                         "420102")
LAG_BATCHES = len(LAG_PRODUCER_COUNTIES)
LAG_DRAIN_SECONDS = 45.0  # after the load, how long the shipments may take to become visible
LOG_LOCK_NOTE = "pg_advisory_xact_lock + tail read + COPY of the batch, one transaction"
PROVINCES = ("37", "41", "13", "32", "33", "44", "51", "42", "11", "31")  # producing first
PRODUCING = PROVINCES[:8]
_CHINA = timedelta(hours=8)
# Subjects of each role, per province, in the generated graph.
POOLS = {"producer": 300, "market": 20, "wholesaler": 50, "distributor": 300,
         "subdistributor": 1000, "supermarket": 2000, "store": 5000, "restaurant": 4000,
         "kitchen": 800}
KINDS = {"producer": "COOPERATIVE", "market": "WHOLESALE_MARKET", "wholesaler": "ENTERPRISE",
         "distributor": "ENTERPRISE", "subdistributor": "TRADER", "supermarket": "RETAILER",
         "store": "RETAILER", "restaurant": "ENTERPRISE", "kitchen": "ENTERPRISE"}
PRODUCTS = (("010403001", "寿光番茄", "PLANT/VEGETABLE/SOLANACEOUS"),
            ("010101001", "五常大米", "PLANT/GRAIN/RICE"),
            ("010501002", "烟台苹果", "PLANT/FRUIT/POME"),
            ("020101001", "生猪", "ANIMAL/LIVESTOCK/PIG"))
CERTIFICATE = {"producer_name": "寿光市绿源蔬菜专业合作社", "contact_phone_masked": "138****1234",
               "commitment": "不使用禁限用农药兽药、停用兽药和非法添加物，常规农药兽药残留不超标",
               "basis": "PROCESS_CONTROL", "test_result": ""}


# -- shared helpers ---------------------------------------------------------------------------


class Ids:
    """Unique ids as long as the services' (kind letter + province + 13 characters = 16), from
    a seeded bijection of a serial so they do not sort like a counter."""

    def __init__(self, seed: int) -> None:
        self._next = 0
        self._salt = seed * 2654435761 % 2**52

    def new(self, kind: str, province: str) -> str:
        self._next += 1
        return f"{kind}{province}{(self._next * 0x9E3779B97F4A7C15 + self._salt) % 2**52:013X}"


def _copy(conn: psycopg.Connection[Any], table: str, columns: tuple[str, ...],
          rows: list[tuple[Any, ...]], block: int = 20_000) -> None:
    """COPY rows (tuples of str/None) into query.<table>, in text format."""
    def cell(value: Any) -> str:
        if value is None:
            return "\\N"
        return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")

    statement = f"COPY query.{table} ({', '.join(columns)}) FROM STDIN"
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for start in range(0, len(rows), block):
            copy.write("".join("\t".join(cell(v) for v in row) + "\n"
                               for row in rows[start:start + block]).encode())


def _counties(catalog: DivisionCatalog) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for division in catalog:
        if division.level == "county":
            found.setdefault(division.code[:2], []).append(division.code)
    return found


SUBJECT_COLUMNS = ("subject_id", "kind", "name", "division_code", "province", "status",
                   "version", "registered_at", "registered_division")
BATCH_COLUMNS = ("batch_id", "subject_id", "subject_division", "product_code", "product_name",
                 "category", "quantity", "unit", "production_date", "origin_division",
                 "certificate", "parent_batch_ids", "flags", "flags_at", "inspections_passed",
                 "inspections_failed", "last_inspection_at", "last_inspection_result",
                 "created_at")


def _subject_row(subject_id: str, kind: str, name: str, county: str, at: datetime
                 ) -> tuple[Any, ...]:
    return (subject_id, kind, name, county, county[:2], "APPROVED", 1, at.isoformat(), county)


def _batch_row(rng: random.Random, batch_id: str, subject_id: str, county: str,
               product: tuple[str, str, str], produced: date, at: datetime, *,
               certificate: bool) -> tuple[Any, ...]:
    cert = json.dumps({"certificate_id": "C" + batch_id[1:], **CERTIFICATE,
                       "issue_date": produced.isoformat()}, ensure_ascii=False) \
        if certificate else ""
    passed = rng.randrange(0, 4)
    flags = "PRE_HARVEST_INTERVAL" if rng.random() < 0.02 else ""
    return (batch_id, subject_id, county, product[0], product[1], product[2],
            str(rng.randrange(200, 20_000)), "KG", produced.isoformat(), county, cert, "",
            flags, at.isoformat() if flags else None, passed, 0,
            at.isoformat() if passed else None,
            "PASSED: 有机磷和氨基甲酸酯类农药残留速测 阴性" if passed else "", at.isoformat())


def _run_dict(run: ConcurrentRun) -> dict[str, Any]:
    return asdict(run.latency) | {
        "calls_per_second": round(run.calls_per_second, 1), "errors": run.errors,
        "server_cpu_us_per_call": round(run.server_cpu_us_per_call, 1)}


def _py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class PySpy:
    """py-spy sampling a process without pausing it (raw collapsed stacks, thread ids)."""

    def __init__(self, pid: int, output: Path, rate: int = 100) -> None:
        binary = _py_spy()
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None
        if binary is None:
            return
        output.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "record", "--pid", str(pid), "--threads", "--nonblocking", "--rate",
             str(rate), "--format", "raw", "--output", str(output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached before the measured calls

    def stop(self) -> bool:
        process, self.process = self.process, None
        if process is None:
            return False
        process.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            return False
        return self.output.exists()


def _shares(path: Path, match: str, parts: tuple[tuple[str, str], ...]) -> dict[str, float]:
    """Of the py-spy samples whose stack contains `match`: the share containing each part."""
    _, matched, inclusive, _ = stacks.summarise(path, match)
    found: dict[str, float] = {}
    for name, frame in parts:
        count = max((n for function, n in inclusive.items()
                     if function.startswith(frame) or f".{frame}" in function), default=0)
        found[name] = count / matched if matched else 0.0
    return found


# -- 11. GetOriginInfo ------------------------------------------------------------------------


@dataclass
class ScanSeed:
    new_codes: list[str]  # never scanned before the measured "new" rounds
    hot_codes: list[str]  # warmed up, scanned again in the "again" rounds
    warmup_codes: list[str]
    product_of: dict[str, str]  # code -> product name of its batch
    batches: int


def seed_scan_model(conn: psycopg.Connection[Any], rng: random.Random, ids: Ids,
                    catalog: DivisionCatalog, codes_needed: int) -> ScanSeed:
    """Producers, batches and ACTIVE codes bound to them, COPYed into the read model."""
    counties = _counties(catalog)
    now = datetime.now(UTC)
    subjects, batch_rows, code_rows = [], [], []
    producers: list[tuple[str, str]] = []
    for number in range(300):
        province = PRODUCING[number % len(PRODUCING)]
        county = rng.choice(counties[province])
        subject_id = ids.new("S", province)
        subjects.append(_subject_row(subject_id, "COOPERATIVE", f"绿源蔬菜专业合作社{number}",
                                     county, now - timedelta(days=400)))
        producers.append((subject_id, county))
    per_batch = -(-codes_needed // SCAN_BATCHES)
    product_of: dict[str, str] = {}
    codes: list[str] = []
    for _ in range(SCAN_BATCHES):
        subject_id, county = rng.choice(producers)
        product = rng.choice(PRODUCTS)
        at = now - timedelta(days=rng.randrange(1, 60))
        batch_id = ids.new("B", county[:2])
        batch_rows.append(_batch_row(rng, batch_id, subject_id, county, product,
                                     (at - timedelta(days=1)).date(), at, certificate=True))
        for code in code_format.new_codes(county[:2], per_batch):
            code_rows.append((code, str(rng.randrange(10**15)), county[:2], subject_id,
                              "ACTIVE", batch_id, at.isoformat()))
            product_of[code] = product[1]
            codes.append(code)
    with conn.transaction():
        _copy(conn, "subjects", SUBJECT_COLUMNS, subjects)
        _copy(conn, "batches", BATCH_COLUMNS, batch_rows)
        _copy(conn, "codes", ("code", "issuance_id", "province", "subject_id", "state",
                              "batch_id", "updated_at"), code_rows)
    conn.execute("ANALYZE query.subjects, query.batches, query.codes")
    rng.shuffle(codes)
    hot, warm = codes[:HOT_CODES], codes[HOT_CODES:HOT_CODES + WARMUP]
    return ScanSeed(codes[HOT_CODES + WARMUP:], hot, warm, product_of, SCAN_BATCHES)


def _query_log_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM query.query_log").fetchone()
    return int(row[0]) if row else 0


def _settled_log_count(conn: psycopg.Connection[Any], expected: int, timeout: float = 10.0
                       ) -> int:
    """The query log's size once the writer caught up (it flushes every 50 ms)."""
    deadline = time.monotonic() + timeout
    count = _query_log_count(conn)
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        count = _query_log_count(conn)
    return count


@dataclass(frozen=True)
class ScanRuns:
    runs: dict[str, ConcurrentRun]  # by mode: new, again, echo, chain
    checks: dict[str, int]  # answers right and wrong
    # Per scan mode, the query server's CPU seconds by thread group ({} without py-spy to
    # name the threads).
    by_thread: dict[str, dict[str, float]]
    round_rates: dict[str, list[float]]  # by mode, calls/s in each round

    def round_ratios(self, mode: str) -> list[float]:
        """`mode`'s rate over the echo's, round by round: how far the whole run's ratio
        could move with the machine's moods (the modes alternate within each round)."""
        return [rate / echo for rate, echo in zip(self.round_rates[mode],
                                                  self.round_rates["echo"], strict=True)
                if echo]


def scans_vs_echo(address: str, pid: int, seed: ScanSeed, calls: int) -> ScanRuns:
    """`calls` scans per mode (new, again), as many bare echo calls and as many echo calls
    through the kernel's server chain (create_server: tracing, metrics, logging, errors; no
    token, as a consumer sends none), CONCURRENCY client threads, the modes alternating in
    ROUNDS slices."""
    echo_server = EchoServerProcess("bare")
    chain_server = EchoServerProcess("tracing")
    scan_channel = grpc.insecure_channel(address)
    echo_channel = grpc.insecure_channel(f"127.0.0.1:{echo_server.port}")
    chain_channel = grpc.insecure_channel(f"127.0.0.1:{chain_server.port}")
    lock = threading.Lock()
    checks = {"genuine_active": 0, "wrong_answer": 0}
    errors = {"new": 0, "again": 0, "echo": 0, "chain": 0}
    payload = bytes(range(64))
    encoded = {code: qpb.GetOriginInfoRequest(code=code).SerializeToString()
               for code in seed.new_codes[:calls] + seed.hot_codes + seed.warmup_codes}
    try:
        scan: grpc.UnaryUnaryMultiCallable[bytes, bytes] = scan_channel.unary_unary(SCAN_METHOD)
        echoes: dict[str, grpc.UnaryUnaryMultiCallable[bytes, bytes]] = {
            "echo": echo_channel.unary_unary(ECHO_METHOD),
            "chain": chain_channel.unary_unary(ECHO_METHOD)}

        def one_scan(mode: str, code: str) -> float:
            started = time.perf_counter()
            try:
                raw = scan(encoded[code], timeout=10)
            except grpc.RpcError:
                with lock:
                    errors[mode] += 1
                return time.perf_counter() - started
            elapsed = time.perf_counter() - started
            reply = qpb.GetOriginInfoResponse.FromString(raw)
            good = (reply.status == qpb.ORIGIN_STATUS_GENUINE_ACTIVE
                    and reply.origin.product_name == seed.product_of[code])
            with lock:
                checks["genuine_active" if good else "wrong_answer"] += 1
            return elapsed

        def one_echo(mode: str) -> float:
            started = time.perf_counter()
            try:
                if echoes[mode](payload, timeout=10) != payload:
                    raise RuntimeError("the echo server returned something else")
            except grpc.RpcError:
                with lock:
                    errors[mode] += 1
            return time.perf_counter() - started

        rng = random.Random(len(seed.hot_codes))
        work: dict[str, list[str]] = {
            "new": seed.new_codes[:calls],
            "again": [rng.choice(seed.hot_codes) for _ in range(calls)],
            "echo": ["echo"] * calls, "chain": ["chain"] * calls}
        run_one: dict[str, Callable[[str], float]] = {
            "new": lambda code: one_scan("new", code), "again": lambda code: one_scan(
                "again", code), "echo": one_echo, "chain": one_echo}
        pids = {"new": pid, "again": pid, "echo": echo_server.process.pid,
                "chain": chain_server.process.pid}
        samples: dict[str, list[float]] = {mode: [] for mode in work}
        round_rates: dict[str, list[float]] = {mode: [] for mode in work}
        seconds = dict.fromkeys(work, 0.0)
        cpu = dict.fromkeys(work, 0.0)
        modes = list(work)
        per_round = calls // ROUNDS
        with ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="client") as pool:
            # Warm-up, not counted: connections, the hot codes' views into the cache.
            list(pool.map(lambda code: one_scan("again", code), seed.warmup_codes))
            list(pool.map(lambda code: one_scan("again", code), seed.hot_codes))
            list(pool.map(one_echo, ["echo", "chain"] * (WARMUP // 2)))
            errors.update(new=0, again=0, echo=0, chain=0)
            checks.update(genuine_active=0, wrong_answer=0)
            # After the warm-up: every thread the server runs is up by now.
            names = thread_names(pid)
            by_thread: dict[str, dict[str, float]] = {"new": {}, "again": {}} if names else {}
            for number in range(ROUNDS):
                log(f"[query] scans: round {number + 1}/{ROUNDS}")
                for mode in modes[number % len(modes):] + modes[:number % len(modes)]:
                    chunk = work[mode][number * per_round:(number + 1) * per_round]
                    threads_before = thread_cpu_seconds(pid) if mode in by_thread else {}
                    before = process_cpu_seconds(pids[mode])
                    started = time.perf_counter()
                    samples[mode].extend(pool.map(run_one[mode], chunk))
                    elapsed = time.perf_counter() - started
                    seconds[mode] += elapsed
                    round_rates[mode].append(len(chunk) / elapsed if elapsed else 0.0)
                    cpu[mode] += process_cpu_seconds(pids[mode]) - before
                    if mode in by_thread:
                        used = cpu_by_group(threads_before, thread_cpu_seconds(pid), names)
                        for group, spent in used.items():
                            by_thread[mode][group] = by_thread[mode].get(group, 0.0) + spent
    finally:
        for channel in (scan_channel, echo_channel, chain_channel):
            channel.close()
        echo_server.stop()
        chain_server.stop()
    labels = {"new": "GetOriginInfo, codes never scanned before (code view not cached)",
              "again": "GetOriginInfo, codes scanned before (views in the near cache)",
              "echo": "bare grpcio echo (no interceptors)",
              "chain": "echo through the kernel's server chain (tracing, metrics, logs)"}
    return ScanRuns({mode: ConcurrentRun(labels[mode], len(samples[mode]), seconds[mode],
                                         summarise(labels[mode], samples[mode]), errors[mode],
                                         cpu[mode]) for mode in modes},
                    checks, by_thread, round_rates)


@dataclass(frozen=True)
class WriterCost:
    entries: int
    seconds: float
    thread_cpu_seconds: float

    @property
    def wall_us(self) -> float:
        return self.seconds / self.entries * 1e6 if self.entries else 0.0

    @property
    def cpu_us(self) -> float:
        return self.thread_cpu_seconds / self.entries * 1e6 if self.entries else 0.0


def log_writer_cost(db: ThrowawayDatabase, entries: int) -> WriterCost:
    """`entries` GetOriginInfo-like entries chained and written by the service's own
    QueryLogWriter (batches of 500, one transaction each, advisory lock) into the same log,
    in this thread: wall and CPU time."""
    from sqlalchemy.orm import sessionmaker

    from agritrace_kernel import db as kernel_db
    from agritrace_kernel.config import DatabaseTarget
    from agritrace_query.adapters.query_log_writer import QueryLogWriter
    from agritrace_query.adapters.query_unit_of_work import log_units_of_work
    from agritrace_query.domain.query_log import QueryRecord

    target = DatabaseTarget(url=db.sqlalchemy_url, schema="query")
    engine = kernel_db.create_engine(target, pool_size=2)
    autocommit = kernel_db.create_engine(target, pool_size=2, pre_ping=False, autocommit=True)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    writer = QueryLogWriter(log_units_of_work(sessions, autocommit))  # as the server wires it
    rng = random.Random(entries)
    try:
        for _ in range(entries):
            writer.append(QueryRecord(
                logged_at=datetime.now(UTC), asker=f"anon:{rng.getrandbits(64):016x}",
                role="CONSUMER", asker_jurisdiction="", rpc="GetOriginInfo",
                target=f"37{rng.getrandbits(64):014X}"[:16], target_division="370783",
                scope="ORIGIN_ONLY", outcome="OK", place="ip:127.0.0.0/24"))
        cpu_before = time.thread_time()
        started = time.perf_counter()
        written = writer.flush()
        seconds = time.perf_counter() - started
        cpu = time.thread_time() - cpu_before
    finally:
        autocommit.dispose()
        engine.dispose()
    return WriterCost(written, seconds, cpu)


# The query server's threads as the scan figures group them, by thread name (py-spy dump):
# the first group whose test a name passes; threads py-spy does not list are grpc's C core's.
THREAD_GROUPS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("RPC threads", lambda name: name.startswith("grpc_")),
    ("grpc's poller", lambda name: name.endswith("(_serve)")),
    ("query-log writer", lambda name: name == "query-log-writer"),
    ("near-cache listener", lambda name: name == "origin-cache-invalidations"),
    ("other Python threads", lambda name: True),
)
C_THREADS = "grpc's C threads"


def thread_names(pid: int) -> dict[int, str]:
    """The Python threads of a process by thread id, as `py-spy dump` lists them ({} without
    py-spy)."""
    binary = _py_spy()
    if binary is None:
        return {}
    try:
        dump = subprocess.run([binary, "dump", "--pid", str(pid)], capture_output=True,
                              text=True, timeout=60, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {int(tid): name for tid, name in
            re.findall(r'^Thread (\d+) \([^)]*\): "([^"]*)"', dump, re.MULTILINE)}


def thread_group(name: str | None) -> str:
    if name is None:
        return C_THREADS
    return next(group for group, test in THREAD_GROUPS if test(name))


def cpu_by_group(before: dict[int, float], after: dict[int, float],
                 names: dict[int, str]) -> dict[str, float]:
    """CPU seconds each thread group used between two thread_cpu_seconds readings."""
    used: dict[str, float] = {}
    for tid, seconds in after.items():
        group = thread_group(names.get(tid))
        used[group] = used.get(group, 0.0) + seconds - before.get(tid, 0.0)
    return used


def _scan_phase(report: Report, console: Console, db: ThrowawayDatabase,
                platform: Microservices, calls: int, seed: int) -> None:
    rng = random.Random(seed)
    needed = calls + HOT_CODES + WARMUP
    log(f"[query] seeding the read model: {SCAN_BATCHES:,} batches, {needed:,}+ ACTIVE codes "
        "(COPY)")
    with psycopg.connect(db.conninfo, autocommit=True) as conn:
        started = time.perf_counter()
        scan_seed = seed_scan_model(conn, rng, Ids(seed), DivisionCatalog.bundled(), needed)
        log(f"[query] seeded in {time.perf_counter() - started:.1f} s")
        log_before = _query_log_count(conn)
    pid = platform.pid("query")
    log(f"[query] GetOriginInfo vs bare echo at concurrency {CONCURRENCY}: {calls:,} calls per "
        "mode (new codes, codes again, echo)")
    measured = scans_vs_echo(platform.address("query"), pid, scan_seed, calls)
    runs, checks, by_thread = measured.runs, measured.checks, measured.by_thread
    scans_made = (runs["new"].calls + runs["again"].calls + len(scan_seed.warmup_codes)
                  + len(scan_seed.hot_codes))
    with psycopg.connect(db.conninfo, autocommit=True) as conn:
        logged = _settled_log_count(conn, log_before + scans_made) - log_before
    echo, chain = runs["echo"], runs["chain"]
    figures: dict[str, Any] = {"process": "query server (microservices), PostgreSQL, Redis",
                               "chain_echo": _run_dict(chain),
                               "codes_seeded": len(scan_seed.product_of),
                               "batches_seeded": scan_seed.batches, "checks": checks,
                               "query_log_entries_added": logged,
                               "scans_made": scans_made, "echo": _run_dict(echo)}
    console.print(f"  {echo.label}, {CONCURRENCY} at once: [bold]{echo.calls_per_second:,.0f}"
                  f" calls/s[/], p50 {echo.latency.p50_us:,.0f} µs, p99 "
                  f"{echo.latency.p99_us:,.0f} µs; server CPU "
                  f"{echo.server_cpu_us_per_call:,.0f} µs per call")
    console.print(f"  {chain.label}, {CONCURRENCY} at once: {chain.calls_per_second:,.0f} "
                  f"calls/s, p50 {chain.latency.p50_us:,.0f} µs, p99 {chain.latency.p99_us:,.0f} "
                  f"µs; server CPU {chain.server_cpu_us_per_call:,.0f} µs per call")
    for mode in ("new", "again"):
        run = runs[mode]
        ratio = run.calls_per_second / echo.calls_per_second if echo.calls_per_second else 0.0
        p99_ratio = run.latency.p99_us / echo.latency.p99_us if echo.latency.p99_us else 0.0
        met_rate, met_p99 = ratio >= THROUGHPUT_GOAL, p99_ratio <= P99_GOAL
        by_round = measured.round_ratios(mode)
        per_round = sorted(by_round)
        console.print(
            f"  {run.label}, {CONCURRENCY} at once: [bold]{run.calls_per_second:,.0f} calls/s"
            f"[/], p50 {run.latency.p50_us:,.0f} µs, p99 {run.latency.p99_us:,.0f} µs; server "
            f"CPU {run.server_cpu_us_per_call:,.0f} µs per call\n"
            f"    vs echo: throughput {ratio:.2f}× (goal ≥ {THROUGHPUT_GOAL}: "
            f"{_verdict(met_rate)}), p99 {p99_ratio:.1f}× (goal ≤ {P99_GOAL:.0f}×: "
            f"{_verdict(met_p99)}); round by round {per_round[0]:.2f}-{per_round[-1]:.2f}×, "
            f"median {statistics.median(per_round):.2f}×")
        figures[f"scan_{mode}"] = _run_dict(run) | {
            "throughput_ratio": round(ratio, 3), "p99_ratio": round(p99_ratio, 2),
            "throughput_ratio_by_round": [round(r, 3) for r in by_round],
            "goal_throughput_met": met_rate, "goal_p99_met": met_p99}
        report.rows.append((
            f"11. GetOriginInfo ({mode} codes), concurrency {CONCURRENCY}, logging on",
            f"{run.calls_per_second:,.0f} calls/s, p50 {run.latency.p50_us:,.0f} µs, p99 "
            f"{run.latency.p99_us:,.0f} µs",
            f"bare grpcio echo: {echo.calls_per_second:,.0f} calls/s, p50 "
            f"{echo.latency.p50_us:,.0f} µs, p99 {echo.latency.p99_us:,.0f} µs",
            f"{ratio:.2f}× echo rate (goal ≥ 0.5: {_plain(met_rate)}); p99 {p99_ratio:.1f}× "
            f"(goal ≤ 2: {_plain(met_p99)})"))
    console.print(f"    answers: {checks}; query log grew by {logged:,} entries for "
                  f"{scans_made:,} scans (warm-up included)")
    if checks["wrong_answer"] or any(run.errors for run in runs.values()):
        report.mismatch(f"query scans: {checks['wrong_answer']:,} wrong answers, errors "
                        f"{ {m: r.errors for m, r in runs.items()} }")
    if logged != scans_made:
        report.mismatch(f"query log: {logged:,} entries added for {scans_made:,} scans")

    log(f"[query] the log writer alone: {calls:,} entries chained and written in this process")
    cost = log_writer_cost(db, calls)
    per_scan = runs["new"].server_cpu_us_per_call
    share = cost.cpu_us / per_scan if per_scan else 0.0
    console.print(
        f"  query-log writer alone ({LOG_LOCK_NOTE}, batches of 500): {cost.entries:,} entries "
        f"in {cost.seconds * 1000:,.0f} ms = {cost.wall_us:,.1f} µs wall, {cost.cpu_us:,.1f} "
        f"µs Python CPU per entry ({share:.1%} of the server's CPU per new-code scan)")
    figures["log_writer"] = {"entries": cost.entries, "seconds": round(cost.seconds, 4),
                             "wall_us_per_entry": round(cost.wall_us, 2),
                             "cpu_us_per_entry": round(cost.cpu_us, 2),
                             "share_of_scan_server_cpu": round(share, 4)}
    writer_share = _print_threads(console, runs, by_thread, figures)
    report.rows.append((
        "   query-log cost during scans",
        f"writer thread {writer_share:.1%} of the server's CPU per new-code scan" if by_thread
        else "(threads not named: py-spy not found)",
        f"writer alone: {cost.cpu_us:,.0f} µs CPU/entry; a new-code scan {per_scan:,.0f} µs "
        "server CPU", f"{share:.1%} of a scan's CPU (writer alone)"))
    report.figures.setdefault("query", {})["origin_concurrency_16"] = figures


def _print_threads(console: Console, runs: dict[str, ConcurrentRun],
                   by_thread: dict[str, dict[str, float]], figures: dict[str, Any]) -> float:
    """Prints the query server's CPU per scan by thread group; returns the query-log
    writer's share of it for new codes (0 when the threads could not be named)."""
    if not by_thread:
        console.print("  (py-spy not found: the query server's CPU by thread is not measured)")
        return 0.0
    writer_share = 0.0
    for mode, used in by_thread.items():
        run = runs[mode]
        total = sum(used.values())
        parts = {group: seconds * 1e6 / run.calls for group, seconds in used.items()}
        share = used.get("query-log writer", 0.0) / total if total else 0.0
        if mode == "new":
            writer_share = share
        order = [group for group, _ in THREAD_GROUPS] + [C_THREADS]
        console.print(
            f"  query server CPU per scan by thread ({mode} codes, the measured rounds): "
            + ", ".join(f"{group} {parts[group]:,.0f} µs" for group in order if group in parts)
            + f"; the query-log writer {share:.1%} of it")
        figures[f"scan_{mode}"]["server_cpu_us_by_thread"] = {
            group: round(us, 1) for group, us in parts.items()}
        figures[f"scan_{mode}"]["query_log_writer_share"] = round(share, 4)
    return writer_share


# -- 12. TraceForward over 1,000,000 records ---------------------------------------------------


@dataclass
class Tree:
    """One producer batch's downstream, as generated."""

    batch_id: str
    producer: str
    province: str
    nodes: set[tuple[str, str]] = field(default_factory=set)
    edges: int = 0
    depth: int = 0

    def reach(self, node: tuple[str, str], level: int) -> None:
        """An edge of the tree, `level` edges from its root, leads to `node`."""
        self.nodes.add(node)
        self.edges += 1
        self.depth = max(self.depth, level)


@dataclass
class Graph:
    trees: list[Tree]
    subjects: int
    batches: int
    shipments: int
    transformations: int

    @property
    def records(self) -> int:
        return self.shipments + self.transformations


def build_graph(conn: psycopg.Connection[Any], rng: random.Random, ids: Ids,
                catalog: DivisionCatalog, records: int) -> Graph:
    """Generates trees until `records` shipment + transformation rows, then COPYs them.
    Times are whole minutes over GRAPH_DAYS (their text made once per minute) and the COPY
    lines are written as the rows are made: a million rows in seconds, not minutes."""
    counties = _counties(catalog)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    origin = now - timedelta(days=GRAPH_DAYS)
    minutes = [(origin + timedelta(minutes=m)).isoformat()
               for m in range(GRAPH_DAYS * 24 * 60 + 1)]
    last_minute = len(minutes) - 1
    pools: dict[tuple[str, str], list[str]] = {}
    division: dict[str, str] = {}
    subject_rows: list[tuple[Any, ...]] = []
    for province in PROVINCES:
        for role, size in POOLS.items():
            if role == "producer" and province not in PRODUCING:
                continue
            members = []
            for number in range(size):
                county = rng.choice(counties[province])
                subject_id = ids.new("S", province)
                division[subject_id] = county
                subject_rows.append(_subject_row(subject_id, KINDS[role], f"{role}-{number}",
                                                 county, now - timedelta(days=500)))
                members.append(subject_id)
            pools[(province, role)] = members
    others = {province: [p for p in PROVINCES if p != province] for province in PROVINCES}
    batch_rows: list[tuple[Any, ...]] = []
    shipments: list[tuple[int, str]] = []  # (minute, COPY line)
    transformations: list[tuple[int, str]] = []
    trees: list[Tree] = []
    total = 0
    randrange, choice, random_ = rng.randrange, rng.choice, rng.random
    new_id = ids.new

    def pick(province: str, role: str, elsewhere: float = 0.0) -> str:
        if elsewhere and random_() < elsewhere:
            province = choice(others[province])
        return choice(pools[(province, role)])

    def later(minute: int, hours: int) -> int:
        return min(minute + randrange(60, hours * 60), last_minute)

    def ship(tree: Tree, batch_id: str, seller: str, buyer: str, minute: int,
             level: int) -> None:
        at = minutes[minute]
        shipments.append((minute, f"{new_id('H', seller[1:3])}\t{batch_id}\t{seller}\t{buyer}"
                                  f"\t{seller[1:3]}\t{buyer[1:3]}\t{randrange(10, 500)}\tKG\t0"
                                  f"\t{at}\t{at}\n"))
        tree.reach((batch_id, buyer), level)

    def repack(tree: Tree, batch_id: str, holder: str, product: tuple[str, str, str],
               minute: int, level: int) -> str:
        output = new_id("B", holder[1:3])
        at = origin + timedelta(minutes=minute)
        batch_rows.append(_batch_row(rng, output, holder, division[holder], product,
                                     at.date(), at, certificate=False))
        transformations.append((minute, f"{new_id('T', holder[1:3])}\t{batch_id}\t{output}"
                                        f"\t{holder}\tREPACK\t{randrange(50, 500)}\tKG"
                                        f"\t{minutes[minute]}\n"))
        tree.reach((output, holder), level)
        return output

    while total < records:
        province = choice(PRODUCING)
        producer = choice(pools[(province, "producer")])
        product = choice(PRODUCTS)
        t0 = randrange((GRAPH_DAYS - 30) * 24 * 60)
        b0 = new_id("B", province)
        at0 = origin + timedelta(minutes=t0)
        batch_rows.append(_batch_row(rng, b0, producer, division[producer], product,
                                     at0.date(), at0, certificate=True))
        tree = Tree(b0, producer, province, {(b0, producer)})
        market = pick(province, "market")
        t1 = later(t0, 12)
        ship(tree, b0, producer, market, t1, 1)
        for _ in range(randrange(2, 4)):
            wholesaler = pick(province, "wholesaler", elsewhere=0.5)
            t2 = later(t1, 24)
            ship(tree, b0, market, wholesaler, t2, 2)
            t3 = later(t2, 12)
            b1 = repack(tree, b0, wholesaler, product, t3, 3)
            region = wholesaler[1:3]
            for _ in range(randrange(2, 5)):
                distributor = pick(region, "distributor", elsewhere=0.1)
                t4 = later(t3, 24)
                ship(tree, b1, wholesaler, distributor, t4, 4)
                local = distributor[1:3]
                for _ in range(randrange(1, 4)):
                    sub = pick(local, "subdistributor")
                    t5 = later(t4, 24)
                    ship(tree, b1, distributor, sub, t5, 5)
                    t6 = later(t5, 12)
                    b2 = repack(tree, b1, sub, product, t6, 6)
                    for _ in range(randrange(2, 4)):
                        market2 = pick(local, "supermarket")
                        t7 = later(t6, 24)
                        ship(tree, b2, sub, market2, t7, 7)
                        for _ in range(randrange(1, 4)):
                            store = pick(local, "store")
                            t8 = later(t7, 24)
                            ship(tree, b2, market2, store, t8, 8)
                            for _ in range(randrange(1, 3)):
                                restaurant = pick(local, "restaurant")
                                t9 = later(t8, 24)
                                ship(tree, b2, store, restaurant, t9, 9)
                                if random_() < 0.5:
                                    ship(tree, b2, restaurant, pick(local, "kitchen"),
                                         later(t9, 12), 10)
        trees.append(tree)
        total += tree.edges
        if len(trees) % 1000 == 0:
            log(f"[query] graph: {len(trees):,} producer batches, {total:,} records generated")
    log(f"[query] graph: {total:,} records; sorting them by time, COPY into the read model")
    shipments.sort(key=lambda row: row[0])
    transformations.sort(key=lambda row: row[0])
    started = time.perf_counter()
    tables = ["subjects", "batches", "shipments", "transformation_inputs"]
    # A bulk load: secondary indexes are dropped and built again after the COPY (faster than
    # maintaining them row by row); primary keys stay.
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'query' AND "
        "tablename = ANY(%s) AND indexname NOT LIKE '%%pkey'", (tables,)).fetchall()
    with conn.transaction():
        conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
        for name, _ in indexes:
            conn.execute(f'DROP INDEX query."{name}"')
        _copy(conn, "subjects", SUBJECT_COLUMNS, subject_rows)
        _copy(conn, "batches", BATCH_COLUMNS, batch_rows)
        _copy_lines(conn, "shipments", (
            "shipment_id", "batch_id", "seller_subject_id", "buyer_subject_id",
            "seller_province", "buyer_province", "quantity", "unit", "code_count", "ship_time",
            "received_at"), shipments)
        _copy_lines(conn, "transformation_inputs", (
            "transformation_id", "input_batch_id", "output_batch_id", "subject_id", "kind",
            "quantity", "unit", "occurred_at"), transformations)
        for _, definition in indexes:
            conn.execute(definition)
    log(f"[query] graph COPYed (and {len(indexes)} indexes built) in "
        f"{time.perf_counter() - started:.1f} s; ANALYZE")
    conn.execute("ANALYZE query.subjects, query.batches, query.shipments, "
                 "query.transformation_inputs, query.codes, query.code_lineage")
    return Graph(trees, len(subject_rows), len(batch_rows), len(shipments),
                 len(transformations))


def _copy_lines(conn: psycopg.Connection[Any], table: str, columns: tuple[str, ...],
                rows: list[tuple[int, str]], block: int = 50_000) -> None:
    statement = f"COPY query.{table} ({', '.join(columns)}) FROM STDIN"
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for start in range(0, len(rows), block):
            copy.write("".join(line for _, line in rows[start:start + block]).encode())


# The service's statements (adapters/read_store.py), for the baseline.
_SQL_SHIPMENTS = ("SELECT shipment_id, batch_id, seller_subject_id, buyer_subject_id, quantity, "
                  "unit, ship_time, received_at FROM query.shipments WHERE batch_id = ANY(%s)")
_SQL_OUTPUTS = ("SELECT transformation_id, input_batch_id, output_batch_id, subject_id, "
                "quantity, unit, occurred_at FROM query.transformation_inputs "
                "WHERE input_batch_id = ANY(%s)")
_SQL_LINEAGE = ("SELECT DISTINCT parent.batch_id, child.batch_id FROM query.code_lineage "
                "JOIN query.codes AS parent ON parent.code = code_lineage.parent_code "
                "JOIN query.codes AS child ON child.code = code_lineage.child_code "
                "WHERE child.batch_id != '' AND parent.batch_id = ANY(%s)")
_SQL_BATCHES = ("SELECT batch_id, subject_id, subject_division, product_code, product_name, "
                "category, quantity, unit, production_date, origin_division, flags "
                "FROM query.batches WHERE batch_id = ANY(%s)")
_SQL_SUBJECTS = ("SELECT subject_id, name, kind, division_code FROM query.subjects "
                 "WHERE subject_id = ANY(%s)")


def sql_trace_forward(conn: psycopg.Connection[Any], batch_id: str, producer: str,
                      depth: int) -> tuple[int, int]:
    """The traversal's SQL alone, level by level, in one transaction: (nodes, edges)."""
    with conn.transaction():
        conn.execute(_SQL_BATCHES, ([batch_id],)).fetchall()
        depths = {(batch_id, producer): 0}
        frontier = [(batch_id, producer)]
        loaded: set[str] = set()
        shipments: dict[str, list[tuple[Any, ...]]] = {}
        outputs: dict[str, list[tuple[Any, ...]]] = {}
        edges = 0
        for level in range(1, depth + 1):
            new = sorted({batch for batch, _ in frontier} - loaded)
            if new:
                loaded.update(new)
                for row in conn.execute(_SQL_SHIPMENTS, (new,)):
                    shipments.setdefault(row[1], []).append(row)
                for row in conn.execute(_SQL_OUTPUTS, (new,)):
                    outputs.setdefault(row[1], []).append(row)
                conn.execute(_SQL_LINEAGE, (new,)).fetchall()
            following = []
            for batch, holder in frontier:
                reached = [(batch, row[3]) for row in shipments.get(batch, ())
                           if row[2] == holder]
                reached += [(row[2], holder) for row in outputs.get(batch, ())
                            if row[3] == holder]
                for node in reached:
                    edges += 1
                    if node not in depths:
                        depths[node] = level
                        following.append(node)
            frontier = following
            if not frontier:
                break
        missing = sorted({batch for batch, _ in depths} - {batch_id})
        conn.execute(_SQL_BATCHES, (missing,)).fetchall()
        conn.execute(_SQL_SUBJECTS, (sorted({holder for _, holder in depths}),)).fetchall()
    return len(depths), edges


def _time_calls(call: Callable[[], Any], calls: int, warmup: int = 3
                ) -> tuple[list[float], Any]:
    last = None
    for _ in range(warmup):
        last = call()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        last = call()
        samples.append(time.perf_counter() - started)
    return samples, last


def _ms(samples: list[float]) -> dict[str, float]:
    values = [s * 1000 for s in samples]
    return {"p50_ms": round(percentile(values, 50), 2), "p99_ms": round(percentile(values, 99), 2),
            "mean_ms": round(sum(values) / len(values), 2), "calls": len(values)}


TRACE_PARTS = (("SQL statements (psycopg)", "KeyedSelect.rows ("),
               ("of which lineage look-ups", "SqlAlchemyReadStore._lineage ("),
               ("rows to link objects", "SqlAlchemyReadStore.shipments_of.<locals>.<listcomp> ("),
               ("traversal bookkeeping", "_Links.downstream ("),
               ("reading nodes' batches and subjects + redaction", "_present ("),
               ("answer to protobuf", "trace_to_proto ("))


def _trace_phase(report: Report, console: Console, db: ThrowawayDatabase,
                 platform: Microservices, records: int, calls: int, seed: int,
                 profile: bool) -> None:
    rng = random.Random(seed + 1)
    log(f"[query] generating a supply-chain graph of {records:,} shipment + transformation "
        "records")
    started = time.perf_counter()
    with psycopg.connect(db.conninfo, autocommit=True) as conn:
        graph = build_graph(conn, rng, Ids(seed + 1), DivisionCatalog.bundled(), records)
    build_seconds = time.perf_counter() - started
    console.print(
        f"  graph: {graph.records:,} records ({graph.shipments:,} shipments, "
        f"{graph.transformations:,} transformation inputs), {graph.batches:,} batches, "
        f"{graph.subjects:,} subjects, {len(graph.trees):,} producer batches; generated and "
        f"COPYed in {build_seconds:.0f} s")
    deep = sorted((tree for tree in graph.trees if tree.depth == TRACE_DEPTH),
                  key=lambda tree: tree.edges)
    if not deep:
        report.mismatch("query trace: no generated producer batch reaches depth 10")
        return
    starts = {"median": deep[len(deep) // 2], "largest": deep[-1]}
    national = platform.new_account(f"bench-reg-nation-{uuid.uuid4().hex[:6]}",
                                    sso_pb2.ACCOUNT_KIND_REGULATOR, "",
                                    (sso_pb2.REGULATOR_ROLE_INSPECTOR,))
    figures: dict[str, Any] = {"records": graph.records, "shipments": graph.shipments,
                               "transformation_inputs": graph.transformations,
                               "batches": graph.batches, "subjects": graph.subjects,
                               "producer_batches": len(graph.trees),
                               "build_seconds": round(build_seconds, 1), "depth": TRACE_DEPTH}
    with grpc.insecure_channel(platform.address("query"), options=CHANNEL_OPTIONS) as channel, \
            psycopg.connect(db.conninfo) as conn:
        stub = query_pb2_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]
        for which, tree in starts.items():
            provincial = platform.new_account(
                f"bench-reg-{tree.province}-{uuid.uuid4().hex[:6]}",
                sso_pb2.ACCOUNT_KIND_REGULATOR, tree.province,
                (sso_pb2.REGULATOR_ROLE_INSPECTOR,))
            request = qpb.TraceForwardRequest(batch_id=tree.batch_id, depth=TRACE_DEPTH)
            results: dict[str, Any] = {"batch_id": tree.batch_id, "province": tree.province,
                                       "expected_nodes": len(tree.nodes),
                                       "expected_edges": tree.edges}
            for label, credentials in (("national", national),
                                       (f"province {tree.province}", provincial)):
                log(f"[query] TraceForward from the {which} producer batch ({tree.edges} "
                    f"edges), as the {label} regulator: {calls} calls")
                def forward(request: qpb.TraceForwardRequest = request,
                            credentials: tuple[tuple[str, str], ...] = credentials
                            ) -> qpb.TraceForwardResponse:
                    answer: qpb.TraceForwardResponse = stub.TraceForward(
                        request, metadata=credentials, timeout=60)
                    return answer

                cpu_before = process_cpu_seconds(platform.pid("query"))
                samples, answer = _time_calls(forward, calls)
                cpu_ms = (process_cpu_seconds(platform.pid("query")) - cpu_before) * 1000 / (
                    calls + 3)
                graph_answer = answer.graph
                redacted = sum(1 for node in graph_answer.nodes if node.redacted)
                timing = _ms(samples)
                met = timing["p99_ms"] <= TRACE_GOAL_MS
                console.print(
                    f"  TraceForward depth {TRACE_DEPTH}, {which} start ({tree.batch_id}), "
                    f"{label} regulator: [bold]p50 {timing['p50_ms']:,.1f} ms, p99 "
                    f"{timing['p99_ms']:,.1f} ms[/] over {calls} calls; answer "
                    f"{len(graph_answer.nodes):,} nodes ({redacted:,} redacted), "
                    f"{len(graph_answer.edges):,} edges, {answer.ByteSize():,} bytes; server "
                    f"CPU {cpu_ms:,.1f} ms per call; goal ≤ {TRACE_GOAL_MS:.0f} ms: "
                    f"{_verdict(met)}")
                results[label.split()[0]] = timing | {
                    "nodes": len(graph_answer.nodes), "redacted_nodes": redacted,
                    "edges": len(graph_answer.edges), "bytes": answer.ByteSize(),
                    "truncated": graph_answer.truncated, "goal_met": met,
                    "server_cpu_ms_per_call": round(cpu_ms, 2)}
                if profile and which == "median" and label == "national":
                    spy = PySpy(platform.pid("query"), RESULTS_DIR / "query-trace.collapsed")
                    _time_calls(forward, max(10, calls // 4), warmup=0)
                    if spy.stop():
                        shares = _shares(RESULTS_DIR / "query-trace.collapsed",
                                         "TraceForward", TRACE_PARTS)
                        console.print("    py-spy of the server during more such calls (share "
                                      "of TraceForward's samples): " + ", ".join(
                                          f"{name} {share:.0%}" for name, share in shares.items())
                                      + " (stacks: bench-results/query-trace.collapsed)")
                        results["profile"] = {k: round(v, 3) for k, v in shares.items()}
                if (len(graph_answer.nodes), len(graph_answer.edges)) != (len(tree.nodes),
                                                                          tree.edges):
                    report.mismatch(
                        f"query trace ({which}, {label}): {len(graph_answer.nodes)} nodes, "
                        f"{len(graph_answer.edges)} edges; generated {len(tree.nodes)} nodes, "
                        f"{tree.edges} edges")
            log(f"[query] the same traversal's SQL alone (psycopg): {calls} calls")

            def traversal(tree: Tree = tree) -> tuple[int, int]:
                return sql_trace_forward(conn, tree.batch_id, tree.producer, TRACE_DEPTH)

            cpu_before = time.thread_time()
            samples, counted = _time_calls(traversal, calls)
            sql = _ms(samples) | {"client_cpu_ms_per_call": round(
                (time.thread_time() - cpu_before) * 1000 / (calls + 3), 2)}
            console.print(f"  same traversal, SQL alone (psycopg, level by level): p50 "
                          f"{sql['p50_ms']:,.1f} ms, p99 {sql['p99_ms']:,.1f} ms "
                          f"({counted[0]:,} nodes, {counted[1]:,} edges); client CPU "
                          f"{sql['client_cpu_ms_per_call']:,.1f} ms per traversal")
            results["sql_baseline"] = sql | {"nodes": counted[0], "edges": counted[1]}
            figures[which] = results
            whole = results["national"]
            report.rows.append((
                f"12. TraceForward depth 10, {which} start, {graph.records:,} records "
                "(national / provincial regulator)",
                f"p50 {whole['p50_ms']:,.1f} / {results['province']['p50_ms']:,.1f} ms, p99 "
                f"{whole['p99_ms']:,.1f} / {results['province']['p99_ms']:,.1f} ms; "
                f"{whole['nodes']:,} nodes, {whole['edges']:,} edges",
                f"SQL alone: p50 {sql['p50_ms']:,.1f} ms, p99 {sql['p99_ms']:,.1f} ms",
                f"{whole['p50_ms'] / sql['p50_ms']:.1f}× SQL; goal ≤ 100 ms: "
                f"{_plain(whole['goal_met'] and results['province']['goal_met'])}"))
    report.figures.setdefault("query", {})["trace_forward"] = figures


# -- 13. read-model lag ------------------------------------------------------------------------


_BUCKET = re.compile(r'^agritrace_query_read_model_lag_seconds_bucket\{(?P<labels>[^}]*)\} '
                     r'(?P<value>\S+)$')


def lag_buckets(text: str, source: str) -> dict[float, float]:
    """Cumulative bucket counts of the lag histogram for `source` (le → count)."""
    found: dict[float, float] = {}
    for line in text.splitlines():
        match = _BUCKET.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if labels.get("source") == source:
            found[float(labels["le"])] = float(match["value"])
    return found


def bucket_quantile(buckets: dict[float, float], q: float) -> float:
    """histogram_quantile: linear interpolation within the bucket holding the q-quantile."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return float("nan")
    rank = q * buckets[bounds[-1]]  # (+Inf when the quantile lies past the last bound)
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return bound
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return bounds[-1]


class VisibilityPoller:
    """Polls query.shipments every `interval` s for shipment ids not seen yet; records when
    each first appears (perf_counter)."""

    def __init__(self, conninfo: str, interval: float = 0.01) -> None:
        self.conninfo, self.interval = conninfo, interval
        self.pending: set[str] = set()
        self.seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="visibility", daemon=True)

    def watch(self, shipment_id: str) -> None:
        with self._lock:
            if shipment_id not in self.seen:
                self.pending.add(shipment_id)

    def __enter__(self) -> VisibilityPoller:
        self._thread.start()
        return self

    def _run(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            while not self._stop.wait(self.interval):
                with self._lock:
                    pending = sorted(self.pending)
                if not pending:
                    continue
                rows = conn.execute("SELECT shipment_id FROM query.shipments "
                                    "WHERE shipment_id = ANY(%s) AND ship_time IS NOT NULL",
                                    (pending,)).fetchall()
                now = time.perf_counter()
                with self._lock:
                    for (shipment_id,) in rows:
                        self.seen.setdefault(shipment_id, now)
                        self.pending.discard(shipment_id)

    def wait_all(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self.pending:
                    return True
            time.sleep(0.05)
        return False

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _wait_row(conninfo: str, query: str, value: str, timeout: float) -> float:
    started = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        while time.perf_counter() - started < timeout:
            if conn.execute(query, (value,)).fetchone():
                return time.perf_counter() - started
            time.sleep(0.05)
    raise TimeoutError(f"{value} not in the read model after {timeout:.0f} s")


def _stamp(moment: datetime) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _lag_phase(report: Report, console: Console, db: ThrowawayDatabase,
               platform: Microservices, seconds: float, rate: float, profile: bool) -> None:
    log(f"[query] lag: registering {LAG_BATCHES} producers and two buyers, a batch each")
    # Several producers in several counties, as a real write load comes from many subjects
    # (one producer would serialise the worker on that subject's counters).
    producers = [platform.register_subject(county, f"绿源蔬菜专业合作社{county}(基准)")
                 for county in LAG_PRODUCER_COUNTIES]
    buyers = [platform.register_subject("110106", "北京新发地农产品批发市场(基准)"),
              platform.register_subject("310115", "上海浦东农产品批发市场(基准)")]
    admin = platform.credentials
    with grpc.insecure_channel(platform.address("flow")) as channel:
        flow = flow_pb2_grpc.FlowServiceStub(channel)  # type: ignore[no-untyped-call]
        today = datetime.now(UTC).date()
        batch_ids = [flow.CreateBatch(fpb.CreateBatchRequest(
            request_id=f"bench-{uuid.uuid4().hex}", batch=fpb.Batch(
                subject_id=producer, product_code=PRODUCTS[0][0], product_name=PRODUCTS[0][1],
                quantity=fpb.Quantity(amount="1000000", unit="KG"),
                production_date=_date(today), origin_division=county)),
            metadata=admin, timeout=30).batch.batch_id
            for producer, county in zip(producers, LAG_PRODUCER_COUNTIES, strict=True)]
        waited = _wait_row(db.conninfo, "SELECT 1 FROM query.batches WHERE batch_id = %s "
                           "AND created_at IS NOT NULL", batch_ids[-1], 90.0)
        with psycopg.connect(db.conninfo, autocommit=True) as conn:
            load_from = last_outbox_id(conn, "flow")  # the load's events come after it
        log(f"[query] lag: batches in the read model after {waited:.2f} s; "
            f"load: {rate:g} shipments/s + {rate / 2:g} inspection records/s for "
            f"{seconds:g} s")
        metrics_port = platform.metrics_port("query-worker")
        before = lag_buckets(scrape_metrics(metrics_port), "flow")
        worker_pid, flow_pid = platform.pid("query-worker"), platform.pid("flow")
        cpu_before = (process_cpu_seconds(worker_pid), process_cpu_seconds(flow_pid))
        spy = PySpy(worker_pid, RESULTS_DIR / "query-worker-lag.collapsed") if profile \
            else None
        ticks = int(seconds * rate)
        answered: dict[str, tuple[float, float]] = {}  # shipment id -> (sent, answered)
        errors: list[str] = []
        retries = [0]
        lock = threading.Lock()

        def call(method: Callable[..., Any], request: Any) -> Any:
            """Flow answers ALREADY_EXISTS when concurrent requests collide on one batch and
            says to retry: the same request again (its id makes it idempotent)."""
            for attempt in range(5):
                try:
                    return method(request, metadata=admin, timeout=30)
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.ALREADY_EXISTS or attempt == 4:
                        raise
                    with lock:
                        retries[0] += 1
                    time.sleep(0.05 * (attempt + 1))
            raise AssertionError("unreachable")

        def tick(number: int, due: float, poller: VisibilityPoller) -> None:
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            producer, batch_id = producers[number % LAG_BATCHES], batch_ids[number % LAG_BATCHES]
            try:
                shipment = call(flow.RecordShipment, fpb.RecordShipmentRequest(
                    request_id=f"bench-{uuid.uuid4().hex}", shipment=fpb.Shipment(
                        batch_id=batch_id, seller_subject_id=producer,
                        buyer_subject_id=buyers[number % 2],
                        quantity=fpb.Quantity(amount="1", unit="KG"),
                        transport_document=f"BENCH-{number}"))).shipment
                done = time.perf_counter()
                poller.watch(shipment.shipment_id)
                with lock:
                    answered[shipment.shipment_id] = (sent, done)
                if number % 2 == 0:
                    call(flow.RecordInternalTrace, fpb.RecordInternalTraceRequest(
                        record=fpb.InternalTraceRecord(
                            source_province=LAG_PRODUCER_COUNTIES[number % LAG_BATCHES][:2],
                            source_record_id=f"bench-{uuid.uuid4().hex}",
                            batch_id=batch_id, occur_time=_stamp(datetime.now(UTC)),
                            inspection=fpb.Inspection(item="农残速测", passed=True,
                                                      result="阴性", inspector="寿光市检测站"))))
            except grpc.RpcError as error:
                with lock:
                    errors.append(f"{error.code()}: {error.details()}")

        with VisibilityPoller(db.conninfo) as poller, \
                ThreadPoolExecutor(8, thread_name_prefix="load") as pool:
            started = time.perf_counter()
            futures = [pool.submit(tick, number, started + number / rate, poller)
                       for number in range(ticks)]
            for number, future in enumerate(futures):
                future.result()
                if number and number % int(rate * 10) == 0:
                    log(f"[query] lag: {number:,}/{ticks:,} ticks sent, "
                        f"{len(poller.seen):,} shipments visible")
            load_seconds = time.perf_counter() - started
            complete = poller.wait_all(LAG_DRAIN_SECONDS)
            time.sleep(1.0)  # the inspection records' events after the last shipment
            seen = dict(poller.seen)
            drained = time.perf_counter() - started
        after = lag_buckets(scrape_metrics(metrics_port), "flow")
        worker_cpu = process_cpu_seconds(worker_pid) - cpu_before[0]
        flow_cpu = process_cpu_seconds(flow_pid) - cpu_before[1]
        profiled = spy.stop() if spy is not None else False
    log("[query] lag: the load's events again, through the query's handlers in this process")
    with psycopg.connect(db.conninfo, autocommit=True) as conn:
        priming = outbox_events(conn, "registry") + outbox_events(conn, "flow",
                                                                 through=load_from)
        load_events = outbox_events(conn, "flow", after=load_from)
    alone = handlers_alone(load_events, priming, platform.servers["query"].pii_key)
    delta = {bound: after.get(bound, 0.0) - before.get(bound, 0.0) for bound in after}
    events = max(delta.values()) if delta else 0.0
    p50, p99 = bucket_quantile(delta, 0.50), bucket_quantile(delta, 0.99)
    visible = sorted(seen[s] - done for s, (_, done) in answered.items() if s in seen)
    from_sent = sorted(seen[s] - sent for s, (sent, _) in answered.items() if s in seen)
    rpc = sorted(done - sent for sent, done in answered.values())
    met = p99 <= LAG_GOAL_S and (not visible or percentile(visible, 99) <= LAG_GOAL_S)
    cpu_per_event = worker_cpu / events * 1000 if events else 0.0
    console.print(
        f"  load: {len(answered):,} RecordShipment (+ {ticks // 2:,} inspection records) in "
        f"{load_seconds:.1f} s = {len(answered) / load_seconds:,.1f} shipments/s; "
        f"RecordShipment p50 {percentile(rpc, 50) * 1000:,.0f} ms, p99 "
        f"{percentile(rpc, 99) * 1000:,.0f} ms; {retries[0]} retries after ALREADY_EXISTS, "
        f"{len(errors)} errors\n"
        f"  query worker: {events:,.0f} events projected in {drained:.1f} s (load + drain) = "
        f"{events / drained:,.1f} events/s offered {events / load_seconds:,.1f}/s; worker CPU "
        f"{worker_cpu:.1f} s = {cpu_per_event:,.1f} ms per event (at most "
        f"{1000 / cpu_per_event if cpu_per_event else 0:,.0f} events/s on one free core); flow "
        f"server CPU {flow_cpu:.1f} s\n"
        f"  the load's {alone.events:,} events again through the query's handlers called in this "
        f"process (a read model of their own; no nameko, kombu or eventlet): "
        f"{alone.cpu_us:,.0f} µs of CPU per event ({alone.wall_us:,.0f} µs wall); the worker "
        f"spends {cpu_per_event * 1000 / alone.cpu_us if alone.cpu_us else 0:.1f}× that")
    if profiled:
        shares = _shares(RESULTS_DIR / "query-worker-lag.collapsed", "ProjectionHandler", (
            ("inbox claim", "EventStore.claim ("),
            ("daily counts", "SqlProjectionStore.add_counts ("),
            ("subject look-ups", "SqlProjectionStore.subject_divisions ("),
            ("put_shipment", "SqlProjectionStore.put_shipment ("),
            ("commit", "SqlAlchemyUnitOfWork.commit ("),
            ("pool checkout ping", "do_ping ("),
            ("waiting on PostgreSQL", "Connection.wait (")))
        console.print("    py-spy of the worker during the load (share of the samples "
                      "projecting an event): " + ", ".join(
                          f"{name} {share:.0%}" for name, share in shares.items())
                      + " (stacks: bench-results/query-worker-lag.collapsed)")
    console.print(
        f"  worker histogram agritrace_query_read_model_lag_seconds{{source=\"flow\"}} over the "
        f"load: {events:,.0f} events, [bold]p50 ≈ {_lag_ms(p50)}, p99 ≈ "
        f"{_lag_ms(p99)}[/] (interpolated in buckets)")
    if visible:
        console.print(
            f"  visible in query.shipments after RecordShipment answered ({len(visible):,} of "
            f"{len(answered):,}, polled every 10 ms): p50 {percentile(visible, 50) * 1000:,.0f} "
            f"ms, p99 {percentile(visible, 99) * 1000:,.0f} ms, max {visible[-1] * 1000:,.0f} "
            f"ms (from the request sent: p99 {percentile(from_sent, 99) * 1000:,.0f} ms); goal "
            f"p99 ≤ {LAG_GOAL_S:.0f} s: {_verdict(met)}")
    if errors:
        report.mismatch(f"query lag: {len(errors)} write calls failed, e.g. {errors[0]}")
    if not complete:
        console.print(f"    [bold red]{len(answered) - len(seen):,} shipments still not visible "
                      f"{LAG_DRAIN_SECONDS:.0f} s after the load ended[/] (the worker fell "
                      "behind: the percentiles above cover only those seen)")
    report.figures.setdefault("query", {})["read_model_lag"] = {
        "rate_per_second": rate, "seconds": seconds, "shipments": len(answered),
        "inspection_records": ticks // 2, "errors": len(errors),
        "not_visible_after_drain": len(answered) - len(seen),
        "histogram_events": events, "histogram_p50_s": _finite(p50),
        "retries_already_exists": retries[0], "drain_seconds": round(drained, 2),
        "worker_cpu_seconds": round(worker_cpu, 2),
        "worker_cpu_ms_per_event": round(cpu_per_event, 2),
        "handlers_alone": {"events": alone.events, "cpu_us_per_event": round(alone.cpu_us, 1),
                           "wall_us_per_event": round(alone.wall_us, 1)},
        "flow_cpu_seconds": round(flow_cpu, 2),
        "histogram_p99_s": _finite(p99), "histogram_buckets_delta": {
            str(k): v for k, v in sorted(delta.items())},
        "visible_after_answer": {
            "count": len(visible),
            "p50_s": round(percentile(visible, 50), 4) if visible else None,
            "p99_s": round(percentile(visible, 99), 4) if visible else None,
            "max_s": round(visible[-1], 4) if visible else None},
        "record_shipment_p50_s": round(percentile(rpc, 50), 4) if rpc else None,
        "goal_p99_s": LAG_GOAL_S, "goal_met": met}
    report.rows.append((
        f"13. Read-model lag, {rate:g} shipments/s + {rate / 2:g} inspections/s for "
        f"{seconds:g} s",
        f"histogram p50 ≈ {_lag_ms(p50)}, p99 ≈ {_lag_ms(p99)} ({events:,.0f} "
        "events)",
        (f"seen from outside: p50 {percentile(visible, 50) * 1000:,.0f} ms, p99 "
         f"{percentile(visible, 99) * 1000:,.0f} ms") if visible else "-",
        f"goal p99 ≤ 1 s: {_plain(met)}"))


@dataclass(frozen=True)
class HandlersAlone:
    """The query service's event handlers called in one thread, without nameko."""

    events: int
    cpu_us: float  # per event, this thread's CPU (the handlers and their driver calls)
    wall_us: float


def outbox_events(conn: psycopg.Connection[Any], schema: str, *, after: int = 0,
                  through: int | None = None) -> list[Event]:
    """The events in `schema`'s outbox from row `after` (excluded) to row `through`, in the
    order they were written."""
    rows = conn.execute(
        f"SELECT event_id, source, name, payload, trace_context, occurred_at "
        f"FROM {schema}.event_outbox WHERE id > %s AND (%s::bigint IS NULL OR id <= %s) "
        "ORDER BY id", (after, through, through)).fetchall()
    return [Event(source, name, json.loads(payload), event_id, occurred_at, json.loads(trace))
            for event_id, source, name, payload, trace, occurred_at in rows]


def last_outbox_id(conn: psycopg.Connection[Any], schema: str) -> int:
    row = conn.execute(f"SELECT coalesce(max(id), 0) FROM {schema}.event_outbox").fetchone()
    return int(row[0]) if row else 0


def handlers_alone(load: list[Event], priming: list[Event], pii_key: str) -> HandlersAlone:
    """`load` through the query service's event handlers called in this thread - the
    worker's work without nameko, kombu and eventlet - on a read model of their own (a
    throwaway database), primed first with `priming` (the subjects and batches the load
    refers to), not timed. Per event of the timed nine tenths."""
    db = ThrowawayDatabase(suffix="_handlers")
    db.create()
    try:
        RegistryServer(db.sqlalchemy_url, RESULTS_DIR / "query-handlers.log",
                       module="agritrace_query", pii_key=pii_key).migrate()
        # The benchmark's Redis, as the worker's: handlers invalidate the views they touch.
        app = query_bootstrap(load_settings(database_url=db.sqlalchemy_url, pii_key=pii_key,
                                            redis_url=REDIS_URL, event_bus="inprocess"))
        try:
            handlers = {(s.source, s.name): s.handle for s in app.subscriptions}
            for event in priming:
                if (handle := handlers.get((event.source, event.name))) is not None:
                    handle(event)
            calls = [(handlers[event.source, event.name], event) for event in load
                     if (event.source, event.name) in handlers]
            # The first tenth warms up (statements compiled, prepared) and is not timed: the
            # worker met its own first events during the priming's and the load's start.
            warm = len(calls) // 10
            for handle, event in calls[:warm]:
                handle(event)
            timed = calls[warm:]
            cpu, started = time.thread_time(), time.perf_counter()
            for handle, event in timed:
                handle(event)
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - started
        finally:
            app.close()
    finally:
        db.drop()
    count = len(timed)
    return HandlersAlone(count, cpu / count * 1e6 if count else 0.0,
                         wall / count * 1e6 if count else 0.0)


def _lag_ms(seconds: float) -> str:
    return "> 30 s (past the last bucket)" if seconds == float("inf") else \
        f"{seconds * 1000:,.0f} ms"


def _finite(seconds: float) -> float | None:
    return None if seconds in (float("inf"), float("nan")) or seconds != seconds \
        else round(seconds, 4)


def _date(value: date) -> Any:
    from google.type import date_pb2

    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


# -- the phase ---------------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    return "[bold green]MET[/]" if met else "[bold red]NOT MET[/]"


def _plain(met: bool) -> str:
    return "MET" if met else "NOT MET"


def _clear_redis(url: str) -> None:
    """Drops the query cache's keys in the benchmark's Redis database (before and after)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match="agritrace:query:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.unlink(*keys[start:start + 1000])
    finally:
        client.close()


def _verify_log(report: Report, console: Console, platform: Microservices) -> None:
    with grpc.insecure_channel(platform.address("query")) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]
        started = time.perf_counter()
        answer = stub.VerifyQueryLog(qpb.VerifyQueryLogRequest(), metadata=platform.credentials,
                                     timeout=300)
        seconds = time.perf_counter() - started
    console.print(f"  VerifyQueryLog over the whole log: ok={answer.ok}, "
                  f"{answer.entries_checked:,} entries checked in {seconds:.2f} s")
    report.figures.setdefault("query", {})["verify_query_log"] = {
        "ok": answer.ok, "entries_checked": answer.entries_checked,
        "seconds": round(seconds, 3)}
    if not answer.ok:
        report.mismatch(f"query log chain broken at seq {answer.first_broken_seq}: "
                        f"{answer.problem}")


def run_query_phase(report: Report, console: Console, *, scan_calls: int, trace_records: int,
                    trace_calls: int, lag_seconds: float, lag_rate: float, seed: int,
                    profile: bool) -> None:
    db = ThrowawayDatabase(suffix="_query")
    vhost = RabbitVhost(AMQP_URI, "agritrace_bench", log)
    platform: Microservices | None = None
    try:
        db.create()
        amqp_uri = vhost.create()
        _clear_redis(REDIS_URL)
        log(f"[query] throwaway database {db.name}, RabbitMQ {amqp_uri.rsplit('@', 1)[-1]}, "
            f"Redis {REDIS_URL}; starting sso, registry, flow, query server and worker")
        platform = start_microservices(db, ("registry", "flow", "query"), amqp_uri=amqp_uri,
                                       redis_url=REDIS_URL, label="query")
        console.print(
            f"  query runs in microservices mode: query server pid {platform.pid('query')}, "
            f"worker pid {platform.pid('query-worker')}, PostgreSQL, Redis, RabbitMQ (logs: "
            f"{(RESULTS_DIR / 'query-*.log').relative_to(ROOT)})")
        _scan_phase(report, console, db, platform, scan_calls, seed)
        _trace_phase(report, console, db, platform, trace_records, trace_calls, seed, profile)
        _lag_phase(report, console, db, platform, lag_seconds, lag_rate, profile)
        _verify_log(report, console, platform)
    finally:
        if platform is not None:
            platform.stop()
        vhost.drop()
        try:
            _clear_redis(REDIS_URL)
        except Exception as error:  # the cache is the benchmark's own; leftovers expire
            log(f"warning: could not clear the benchmark's Redis keys: {error}")
        db.drop()
