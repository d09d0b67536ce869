"""The coding service's benchmarks (issue #4), against the all-in-one platform process
(`python -m agritrace_platform`: sso + registry + coding in one process) on a throwaway
PostgreSQL database:

6. IssueCodes: N codes (default 1,000,000) in ONE request (PRE_PRINT), timed from the client,
   next to a raw psycopg COPY of the same kind of rows (code, issuance_id, serial, state), in
   the service's order (sorted by code, serials following), into
   a table `LIKE coding.codes INCLUDING ALL` (same primary key and unique index), measured in
   the same run; once more into a table without indexes, for reference. Goal: the service's
   rate ≥ 1/3 of the indexed COPY's. While the issue runs, pg_stat_progress_copy is polled to
   split its wall time into before the COPY (subject look-up, code generation), the COPY
   stream itself, and after it (commit, answer).
7. ExportCodes: the N codes as CSV, streamed; the server's peak RSS during the export
   (VmHWM after resetting it through /proc/<pid>/clear_refs, with VmRSS sampled every 50 ms
   as a cross-check), goal < 300 MiB; the CSV is checked line by line. The peak RSS during
   the issue is reported too (informational).
8. VerifyCode at concurrency 16 (anonymous, random issued codes plus ~10% well-formed codes
   that were never issued) next to a bare grpcio echo and an echo through the kernel's
   interceptor chain with authentication, driven by the same loop.

Memory figures are of the whole platform process: they include sso and the registry (idle).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import psycopg

from agritrace.coding.v1 import coding_pb2 as pb
from agritrace.coding.v1 import coding_pb2_grpc
from agritrace_coding.domain import codes as code_format
from agritrace_coding.domain.model import CodeState
from agritrace_coding.service_layer.services import new_issuance_id
from benchmarks.cpu import CpuSample, process_cpu_seconds
from benchmarks.echo_server import METHOD as ECHO_METHOD
from benchmarks.import_bench import CHANNEL_OPTIONS, LatencyResult, summarise
from benchmarks.infra import Platform, ThrowawayDatabase, log, start_platform
from benchmarks.rpc_bench import EchoServerProcess

if TYPE_CHECKING:
    from rich.console import Console

    from benchmarks.run import Report

COPY_BLOCK = 50_000  # rows per copy.write, as the repository writes them
ISSUE_TIMEOUT = 600.0
RATE_GOAL = 1 / 3  # of the indexed COPY's rate
MEMORY_GOAL_MIB = 300.0
CONCURRENCY = 16
UNKNOWN_SHARE = 0.10
COUNTY = "330106"  # 杭州市西湖区: the subject's division, so the codes carry province 33
VERIFY_METHOD = "/agritrace.coding.v1.CodingService/VerifyCode"


# -- memory of the server process -------------------------------------------------------------


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


class PeakRss:
    """Peak resident memory of a process over a `with` block: its high-water mark (VmHWM) is
    reset to the current RSS on entry (writing 5 to /proc/<pid>/clear_refs) and read on exit;
    VmRSS is also sampled every `interval` seconds as a cross-check. Figures in MiB."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid, self.interval = pid, interval
        self.reset = False
        self.start_mib = self.hwm_mib = self.sampled_max_mib = self.end_mib = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def __enter__(self) -> PeakRss:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self.reset = True
        except OSError as error:
            log(f"warning: cannot reset the peak RSS of {self.pid} ({error}); VmHWM is then "
                "the peak since the process started")
        self.start_mib = _status_kib(self.pid, "VmRSS") / 1024
        self.sampled_max_mib = self.start_mib
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                rss = _status_kib(self.pid, "VmRSS") / 1024
            except OSError:
                return
            self.samples += 1
            self.sampled_max_mib = max(self.sampled_max_mib, rss)

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.hwm_mib = _status_kib(self.pid, "VmHWM") / 1024
        self.end_mib = _status_kib(self.pid, "VmRSS") / 1024

    def as_dict(self) -> dict[str, Any]:
        return {"peak_rss_mib": round(self.hwm_mib, 1),
                "sampled_max_rss_mib": round(self.sampled_max_mib, 1),
                "rss_at_start_mib": round(self.start_mib, 1),
                "rss_at_end_mib": round(self.end_mib, 1),
                "samples": self.samples, "peak_was_reset": self.reset}


class CopyProgress:
    """Polls pg_stat_progress_copy every `interval` seconds for a COPY into `table`: when it
    was first and last seen (perf_counter) and how many rows it had processed."""

    def __init__(self, conninfo: str, table: str, interval: float = 0.05) -> None:
        self.conninfo, self.table, self.interval = conninfo, table, interval
        self.first_seen: float | None = None
        self.last_seen: float | None = None
        self.rows = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="copy-progress", daemon=True)

    def __enter__(self) -> CopyProgress:
        self._conn = psycopg.connect(self.conninfo, autocommit=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        query = ("SELECT tuples_processed FROM pg_stat_progress_copy "
                 "WHERE relid = %s::regclass AND command = 'COPY FROM'")
        while not self._stop.wait(self.interval):
            row = self._conn.execute(query, (self.table,)).fetchone()
            if row is not None:
                now = time.perf_counter()
                self.first_seen = self.first_seen or now
                self.last_seen = now
                self.rows = max(self.rows, int(row[0]))

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._conn.close()


# -- 6. issue vs COPY ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CopyRun:
    label: str
    rows: int
    seconds: float  # COPY + commit
    copy_seconds: float  # the COPY stream alone
    stored: int

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def copy_blocks(codes: list[str], issuance_id: int) -> list[bytes]:
    """The COPY text the repository writes for an issuance, in blocks of COPY_BLOCK rows."""
    tail = f"\t{issuance_id}\t"
    suffix = f"\t{CodeState.ISSUED.value}\n"
    return ["".join(f"{code}{tail}{serial}{suffix}"
                    for serial, code in enumerate(codes[start:start + COPY_BLOCK],
                                                  start=start + 1)).encode()
            for start in range(0, len(codes), COPY_BLOCK)]


def timed_code_copy(conninfo: str, blocks: list[bytes], rows: int, *,
                    with_indexes: bool) -> CopyRun:
    """COPY the blocks into a fresh table LIKE coding.codes; times COPY + commit."""
    table = "bench_codes_indexed" if with_indexes else "bench_codes_plain"
    like = "INCLUDING ALL" if with_indexes else "INCLUDING DEFAULTS"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS public.{table}")
        conn.execute(f"CREATE TABLE public.{table} (LIKE coding.codes {like})")
        conn.execute("CHECKPOINT")  # every variant starts from the same clean state
        statement = f"COPY public.{table} (code, issuance_id, serial, state) FROM STDIN"
        started = time.perf_counter()
        with conn.transaction():
            with conn.cursor() as cursor, cursor.copy(statement) as copy:
                for block in blocks:
                    copy.write(block)
            copied = time.perf_counter()
        seconds = time.perf_counter() - started
        row = conn.execute(f"SELECT count(*) FROM public.{table}").fetchone()
        conn.execute(f"DROP TABLE public.{table}")
    label = ("COPY -> table LIKE coding.codes INCLUDING ALL (PK + unique index)"
             if with_indexes else "COPY -> table LIKE coding.codes, no indexes")
    return CopyRun(label, rows, seconds, copied - started, int(row[0]) if row else 0)


@dataclass
class IssueRun:
    seconds: float
    issuance_id: str
    quantity: int
    stored: int
    cpu: CpuSample
    memory: PeakRss
    copy_first_seen: float | None  # seconds after the request was sent
    copy_last_seen: float | None
    copy_rows_seen: int

    @property
    def rate(self) -> float:
        return self.quantity / self.seconds if self.seconds else 0.0


def issue(platform: Platform, db: ThrowawayDatabase, quantity: int) -> IssueRun:
    with grpc.insecure_channel(platform.server.address, options=CHANNEL_OPTIONS) as channel:
        stub = coding_pb2_grpc.CodingServiceStub(channel)  # type: ignore[no-untyped-call]
        request = pb.IssueCodesRequest(
            request_id=f"bench-{uuid.uuid4().hex}", subject_id=platform.subject_id,
            mode=pb.ISSUE_MODE_PRE_PRINT, quantity=quantity)
        with psycopg.connect(db.conninfo, autocommit=True) as conn:
            conn.execute("CHECKPOINT")  # as before each baseline COPY
        before = CpuSample.take([platform.pid])
        with PeakRss(platform.pid) as memory, \
                CopyProgress(db.conninfo, "coding.codes") as progress:
            started = time.perf_counter()
            response = stub.IssueCodes(request, metadata=platform.credentials,
                                       timeout=ISSUE_TIMEOUT)
            seconds = time.perf_counter() - started
        cpu = CpuSample.take([platform.pid]) - before
    issuance_id = response.issuance.issuance_id
    stored = db.scalar(f"SELECT count(*) FROM coding.codes WHERE issuance_id = {int(issuance_id)}")
    return IssueRun(
        seconds=seconds, issuance_id=issuance_id, quantity=response.issuance.quantity,
        stored=stored, cpu=cpu, memory=memory,
        copy_first_seen=progress.first_seen - started if progress.first_seen else None,
        copy_last_seen=progress.last_seen - started if progress.last_seen else None,
        copy_rows_seen=progress.rows,
    )


# -- 7. export ----------------------------------------------------------------------------------


@dataclass
class ExportRun:
    seconds: float
    bytes: int
    chunks: int
    memory: PeakRss
    cpu: CpuSample
    lines: int
    distinct_codes: int
    codes: list[str]  # in serial order, for the verify phase
    problems: list[str] = field(default_factory=list)

    @property
    def mib_per_second(self) -> float:
        return self.bytes / 2**20 / self.seconds if self.seconds else 0.0


def export(platform: Platform, issuance_id: str, quantity: int) -> ExportRun:
    chunks: list[bytes] = []
    last: pb.ExportCodesResponse | None = None
    content_type = ""
    with grpc.insecure_channel(platform.server.address, options=CHANNEL_OPTIONS) as channel:
        stub = coding_pb2_grpc.CodingServiceStub(channel)  # type: ignore[no-untyped-call]
        request = pb.ExportCodesRequest(issuance_id=issuance_id, format=pb.EXPORT_FORMAT_CSV)
        before = CpuSample.take([platform.pid])
        with PeakRss(platform.pid) as memory:
            started = time.perf_counter()
            for response in stub.ExportCodes(request, metadata=platform.credentials,
                                             timeout=ISSUE_TIMEOUT):
                chunks.append(response.data)
                content_type = content_type or response.content_type
                last = response
            seconds = time.perf_counter() - started
        cpu = CpuSample.take([platform.pid]) - before
    # Checked after timing, so the client takes as little of the machine as it can meanwhile.
    data = b"".join(chunks)
    problems: list[str] = []
    if not content_type.startswith("text/csv"):
        problems.append(f"content type {content_type!r}, expected text/csv")
    if last is None or last.codes_written != quantity or last.codes_total != quantity:
        problems.append(f"last chunk says {last.codes_written if last else 0:,} of "
                        f"{last.codes_total if last else 0:,} codes written, expected "
                        f"{quantity:,} of {quantity:,}")
    lines = data.count(b"\n")
    rows = data.split(b"\n")
    if rows and rows[-1] == b"":
        rows.pop()
    if not rows or rows[0] != b"serial,code,resolver_url":
        problems.append(f"header {rows[0][:60] if rows else b''!r}")
    codes: list[str] = []
    out_of_order = malformed = 0
    for serial, row in enumerate(rows[1:], start=1):
        parts = row.split(b",")
        if len(parts) != 3 or not parts[2].endswith(b"/tc/" + parts[1]):
            malformed += 1
            continue
        if parts[0] != str(serial).encode():
            out_of_order += 1
        codes.append(parts[1].decode())
    if malformed:
        problems.append(f"{malformed:,} rows are not serial,code,<resolver>/tc/<code>")
    if out_of_order:
        problems.append(f"{out_of_order:,} rows out of serial order")
    distinct = len(set(codes))
    return ExportRun(seconds, len(data), len(chunks), memory, cpu, lines, distinct, codes,
                     problems)


# -- 8. VerifyCode vs echo ----------------------------------------------------------------------


@dataclass(frozen=True)
class ConcurrentRun:
    label: str
    calls: int
    seconds: float
    latency: LatencyResult
    errors: int
    server_cpu_seconds: float  # CPU of the server process over the measured rounds

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def server_cpu_us_per_call(self) -> float:
        return self.server_cpu_seconds / self.calls * 1e6 if self.calls else 0.0


def verify_vs_echo(platform: Platform, issued: list[str], calls: int, seed: int, *,
                   rounds: int = 10, warmup: int = 500
                   ) -> tuple[ConcurrentRun, ConcurrentRun, ConcurrentRun, dict[str, int]]:
    """`calls` VerifyCode calls, as many bare echo calls and as many echo calls through the
    kernel's whole interceptor chain with authentication (what every service RPC pays before
    its own work), from CONCURRENCY client threads, alternating in `rounds` slices (as
    rpc_bench.run_concurrent does)."""
    rng = random.Random(seed)
    total = calls + warmup
    known = set(issued)
    unknown = [c for c in code_format.new_codes(platform.province, int(total * UNKNOWN_SHARE) + 1)
               if c not in known]
    requests: list[tuple[bytes, bool]] = []
    for _ in range(total):
        if unknown and rng.random() < UNKNOWN_SHARE:
            code, exists = rng.choice(unknown), False
        else:
            code, exists = rng.choice(issued), True
        requests.append((pb.VerifyCodeRequest(code=code).SerializeToString(), exists))
    payload = bytes(range(64))
    echo_server = EchoServerProcess("bare")
    chain_server = EchoServerProcess("auth")
    outcomes = {"exists_as_expected": 0, "wrong_exists": 0, "not_well_formed": 0}
    lock = threading.Lock()
    errors = {"verify": 0, "echo": 0, "chain": 0}
    coding_channel = grpc.insecure_channel(platform.server.address)
    echo_channel = grpc.insecure_channel(f"127.0.0.1:{echo_server.port}")
    chain_channel = grpc.insecure_channel(f"127.0.0.1:{chain_server.port}")
    try:
        # bytes in, bytes out: requests serialized beforehand, replies parsed after timing
        verify: grpc.UnaryUnaryMultiCallable[bytes, bytes] = coding_channel.unary_unary(
            VERIFY_METHOD)
        echo: grpc.UnaryUnaryMultiCallable[bytes, bytes] = echo_channel.unary_unary(ECHO_METHOD)
        chain: grpc.UnaryUnaryMultiCallable[bytes, bytes] = chain_channel.unary_unary(
            ECHO_METHOD)

        def one_verify(index: int) -> float:
            body, expected = requests[index]
            started = time.perf_counter()
            try:
                raw = verify(body, timeout=10)
            except grpc.RpcError:
                with lock:
                    errors["verify"] += 1
                return time.perf_counter() - started
            elapsed = time.perf_counter() - started
            reply = pb.VerifyCodeResponse.FromString(raw)
            key = ("not_well_formed" if not (reply.well_formed and reply.check_valid)
                   else "exists_as_expected" if reply.exists == expected else "wrong_exists")
            with lock:
                outcomes[key] += 1
            return elapsed

        def one_echo(_: int) -> float:
            started = time.perf_counter()
            try:
                if echo(payload, timeout=10) != payload:
                    raise RuntimeError("the echo server returned something else")
            except grpc.RpcError:
                with lock:
                    errors["echo"] += 1
            return time.perf_counter() - started

        def one_chain(_: int) -> float:
            started = time.perf_counter()
            try:
                if chain(payload, timeout=10, metadata=chain_server.metadata) != payload:
                    raise RuntimeError("the echo server returned something else")
            except grpc.RpcError:
                with lock:
                    errors["chain"] += 1
            return time.perf_counter() - started

        modes: dict[str, Callable[[int], float]] = {
            "verify": one_verify, "echo": one_echo, "chain": one_chain}
        samples: dict[str, list[float]] = {mode: [] for mode in modes}
        seconds = dict.fromkeys(modes, 0.0)
        server_cpu = dict.fromkeys(modes, 0.0)
        pids = {"verify": platform.pid, "echo": echo_server.process.pid,
                "chain": chain_server.process.pid}
        per_round = calls // rounds
        names = list(modes)
        with ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="client") as pool:
            for mode in names:
                list(pool.map(modes[mode], range(calls, total)))  # warm-up, not counted
            for key in outcomes:
                outcomes[key] = 0
            errors.update(verify=0, echo=0, chain=0)
            for number in range(rounds):
                for mode in names[number % 3:] + names[:number % 3]:
                    indices = range(number * per_round, (number + 1) * per_round)
                    cpu_before = process_cpu_seconds(pids[mode])
                    started = time.perf_counter()
                    samples[mode].extend(pool.map(modes[mode], indices))
                    seconds[mode] += time.perf_counter() - started
                    server_cpu[mode] += process_cpu_seconds(pids[mode]) - cpu_before
    finally:
        coding_channel.close()
        echo_channel.close()
        chain_channel.close()
        echo_server.stop()
        chain_server.stop()
    labels = {"verify": "VerifyCode, anonymous, all-in-one platform",
              "echo": "bare grpcio echo (no interceptors)",
              "chain": "echo through the kernel's chain (tracing, metrics, logs, auth)"}
    results = [ConcurrentRun(labels[m], len(samples[m]), seconds[m],
                             summarise(labels[m], samples[m]), errors[m], server_cpu[m])
               for m in names]
    return results[0], results[1], results[2], outcomes


# -- the phase ----------------------------------------------------------------------------------


def _mib(value: float) -> str:
    return f"{value:,.0f} MiB"


def run_coding_phase(report: Report, console: Console, *, quantity: int, verify_calls: int,
                     seed: int) -> None:
    db = ThrowawayDatabase(suffix="_coding")
    platform: Platform | None = None
    try:
        db.create()
        log(f"[coding] throwaway database {db.name}; starting the all-in-one platform "
            "(sso + registry + coding in one process; it migrates on start-up)")
        platform = start_platform(db, COUNTY, "绿源农业基准测试有限公司", label="coding")
        console.print(
            f"  coding runs in the all-in-one platform process (pid {platform.pid}: sso + "
            "registry + coding, PostgreSQL); sso and the registry are idle, but every memory "
            "figure below is of the whole process")
        _issue_phase(report, console, db, platform, quantity)
        run = report.figures["coding"]["issue"]
        exported = _export_phase(report, console, platform, run["issuance_id"], quantity)
        if exported.codes:
            _verify_phase(report, console, platform, exported.codes, verify_calls, seed)
        else:
            report.mismatch("coding: the export returned no code, VerifyCode not measured")
    finally:
        if platform is not None:
            platform.stop()
        db.drop()


def _issue_phase(report: Report, console: Console, db: ThrowawayDatabase,
                 platform: Platform, quantity: int) -> None:
    log(f"[coding] baseline: generating {quantity:,} codes with codes.new_codes and their COPY "
        "text (untimed)")
    started = time.perf_counter()
    # In the order the service stores them: sorted (serials follow the codes' order).
    generated = sorted(code_format.new_codes(platform.province, quantity))
    generate_seconds = time.perf_counter() - started
    started = time.perf_counter()
    blocks = copy_blocks(generated, new_issuance_id())
    format_seconds = time.perf_counter() - started
    del generated
    console.print(f"  in this process: new_codes({quantity:,}) + sort {generate_seconds:.2f} s, "
                  f"formatting the COPY text {format_seconds:.2f} s "
                  f"({sum(map(len, blocks)) / 2**20:.0f} MiB in {len(blocks)} blocks)")
    copies = []
    for with_indexes in (False, True):
        log(f"[coding] COPY {quantity:,} rows, {'with' if with_indexes else 'no'} indexes")
        copies.append(timed_code_copy(db.conninfo, blocks, quantity,
                                      with_indexes=with_indexes))
        copy = copies[-1]
        console.print(f"  {copy.label}: {copy.rows:,} rows in {copy.seconds:.2f} s (COPY "
                      f"{copy.copy_seconds:.2f} s + commit {copy.seconds - copy.copy_seconds:.2f}"
                      f" s) = [bold]{copy.rows_per_second:,.0f} rows/s[/]")
        if copy.stored != quantity:
            report.mismatch(f"coding baseline: {copy.stored:,} rows copied, expected "
                            f"{quantity:,}")
    del blocks
    plain, indexed = copies

    log(f"[coding] IssueCodes: {quantity:,} codes, mode PRE_PRINT, one request")
    run = issue(platform, db, quantity)
    cpu = run.cpu
    ratio = run.rate / indexed.rows_per_second if indexed.rows_per_second else 0.0
    met = ratio >= RATE_GOAL
    verdict = "[bold green]MET[/]" if met else "[bold red]NOT MET[/]"
    console.print(
        f"  IssueCodes {quantity:,} codes (PRE_PRINT, one request): {run.seconds:.2f} s = "
        f"[bold]{run.rate:,.0f} codes/s[/]; {run.stored:,} rows stored\n"
        f"    CPU during the issue: platform {cpu.server:.1f} s, PostgreSQL {cpu.postgres:.1f} s"
        f", benchmark client {cpu.client:.1f} s (wall {run.seconds:.1f} s)")
    if run.copy_first_seen is not None and run.copy_last_seen is not None:
        console.print(
            f"    timeline (pg_stat_progress_copy every 50 ms): COPY first seen after "
            f"{run.copy_first_seen:.2f} s (subject look-up, code generation), last seen at "
            f"{run.copy_last_seen:.2f} s ({run.copy_rows_seen:,} rows), answer at "
            f"{run.seconds:.2f} s (commit + answer ≈ {run.seconds - run.copy_last_seen:.2f} s)")
    else:
        console.print("    timeline: the COPY was never seen in pg_stat_progress_copy")
    console.print(
        f"    rate vs COPY with the same indexes: {ratio:.2f} (goal ≥ 1/3: {verdict}); vs "
        f"COPY without indexes: {run.rate / plain.rows_per_second:.2f}\n"
        f"    platform RSS during the issue: peak {_mib(run.memory.hwm_mib)} (VmHWM; "
        f"sampled max {_mib(run.memory.sampled_max_mib)}, at start "
        f"{_mib(run.memory.start_mib)}, after {_mib(run.memory.end_mib)})")
    if run.quantity != quantity:
        report.mismatch(f"coding: the issuance says {run.quantity:,} codes, asked {quantity:,}")
    if run.stored != quantity:
        report.mismatch(f"coding: {run.stored:,} rows in coding.codes for the issuance, "
                        f"expected {quantity:,}")
    report.figures["coding"] = {
        "process": "all-in-one platform (sso + registry + coding), PostgreSQL",
        "codes": quantity,
        "client_new_codes_seconds": round(generate_seconds, 3),
        "client_copy_text_seconds": round(format_seconds, 3),
        "copy_baseline": [{"label": c.label, "rows": c.rows, "seconds": round(c.seconds, 3),
                           "copy_seconds": round(c.copy_seconds, 3),
                           "rows_per_second": round(c.rows_per_second, 1)} for c in copies],
        "issue": {
            "issuance_id": run.issuance_id, "mode": "PRE_PRINT", "seconds": round(run.seconds, 3),
            "codes_per_second": round(run.rate, 1), "rows_stored": run.stored,
            "copy_first_seen_s": round(run.copy_first_seen, 3) if run.copy_first_seen else None,
            "copy_last_seen_s": round(run.copy_last_seen, 3) if run.copy_last_seen else None,
            "cpu_seconds": {k: round(v, 2) for k, v in asdict(cpu).items()},
            "memory": run.memory.as_dict(),
            "ratio_to_indexed_copy": round(ratio, 3),
            "ratio_to_plain_copy": round(run.rate / plain.rows_per_second, 3),
            "goal_ratio": round(RATE_GOAL, 3), "goal_met": met,
        },
    }
    report.rows.append((
        f"6. IssueCodes {quantity:,} codes in one request (PRE_PRINT)",
        f"{run.seconds:.2f} s, {run.rate:,.0f} codes/s",
        f"COPY same rows, PK + unique index: {indexed.seconds:.2f} s, "
        f"{indexed.rows_per_second:,.0f} rows/s (no indexes: {plain.rows_per_second:,.0f} "
        "rows/s)",
        f"{ratio:.2f} of COPY (goal ≥ 0.33: {'MET' if met else 'NOT MET'})",
    ))


def _export_phase(report: Report, console: Console, platform: Platform, issuance_id: str,
                  quantity: int) -> ExportRun:
    log(f"[coding] ExportCodes: {quantity:,} codes as CSV, streamed")
    run = export(platform, issuance_id, quantity)
    memory = run.memory
    met = memory.hwm_mib < MEMORY_GOAL_MIB
    verdict = "[bold green]MET[/]" if met else "[bold red]NOT MET[/]"
    console.print(
        f"  ExportCodes CSV: {run.bytes / 2**20:,.1f} MiB in {run.chunks:,} chunks, "
        f"{run.seconds:.2f} s = {run.mib_per_second:,.1f} MiB/s "
        f"({quantity / run.seconds:,.0f} codes/s); {run.lines:,} lines, "
        f"{run.distinct_codes:,} distinct codes\n"
        f"    platform RSS during the export: [bold]peak {_mib(memory.hwm_mib)}[/] (VmHWM after "
        f"reset{'' if memory.reset else ' FAILED'}; sampled max {_mib(memory.sampled_max_mib)}"
        f" over {memory.samples} samples), at start {_mib(memory.start_mib)}, after "
        f"{_mib(memory.end_mib)}; goal < {MEMORY_GOAL_MIB:.0f} MiB: {verdict}\n"
        f"    CPU during the export: platform {run.cpu.server:.1f} s, PostgreSQL "
        f"{run.cpu.postgres:.1f} s, benchmark client {run.cpu.client:.1f} s "
        f"(wall {run.seconds:.1f} s)")
    if run.lines != quantity + 1:
        report.mismatch(f"coding export: {run.lines:,} CSV lines, expected {quantity + 1:,}")
    if run.distinct_codes != quantity:
        report.mismatch(f"coding export: {run.distinct_codes:,} distinct codes, expected "
                        f"{quantity:,}")
    for problem in run.problems:
        report.mismatch(f"coding export: {problem}")
    issue_peak = report.figures["coding"]["issue"]["memory"]["peak_rss_mib"]
    report.figures["coding"]["export"] = {
        "format": "CSV", "seconds": round(run.seconds, 3), "bytes": run.bytes,
        "chunks": run.chunks, "mib_per_second": round(run.mib_per_second, 2),
        "codes_per_second": round(quantity / run.seconds, 1) if run.seconds else None,
        "lines": run.lines, "distinct_codes": run.distinct_codes,
        "memory": memory.as_dict(), "goal_peak_rss_mib": MEMORY_GOAL_MIB, "goal_met": met,
        "cpu_seconds": {k: round(v, 2) for k, v in asdict(run.cpu).items()},
    }
    report.rows.append((
        f"7. ExportCodes CSV {quantity:,} codes: platform peak RSS",
        f"peak {_mib(memory.hwm_mib)}; {run.seconds:.2f} s, {run.mib_per_second:,.1f} MiB/s",
        f"RSS at export start {_mib(memory.start_mib)}; peak during the issue "
        f"{_mib(issue_peak)}",
        f"goal < {MEMORY_GOAL_MIB:.0f} MiB: {'MET' if met else 'NOT MET'}",
    ))
    return run


def _verify_phase(report: Report, console: Console, platform: Platform, issued: list[str],
                  calls: int, seed: int) -> None:
    log(f"[coding] VerifyCode vs bare echo at concurrency {CONCURRENCY}: {calls:,} calls each")
    verify, echo, chain, outcomes = verify_vs_echo(platform, issued, calls, seed)
    for run in (verify, echo, chain):
        console.print(f"  {run.label}, {CONCURRENCY} at once: [bold]{run.calls_per_second:,.0f}"
                      f" calls/s[/], p50 {run.latency.p50_us:,.0f} µs, p99 "
                      f"{run.latency.p99_us:,.0f} µs, mean {run.latency.mean_us:,.0f} µs; "
                      f"server CPU {run.server_cpu_us_per_call:,.0f} µs per call")
    ratio = verify.calls_per_second / echo.calls_per_second if echo.calls_per_second else 0.0
    console.print(f"    VerifyCode answers: {outcomes}; throughput {ratio:.2f}× the bare echo")
    if verify.errors or echo.errors or chain.errors:
        report.mismatch(f"coding verify: {verify.errors:,} VerifyCode, {echo.errors:,} echo and "
                        f"{chain.errors:,} chain echo calls failed")
    if outcomes["wrong_exists"] or outcomes["not_well_formed"]:
        report.mismatch(f"coding verify: {outcomes['wrong_exists']:,} answers said exists "
                        f"wrongly, {outcomes['not_well_formed']:,} called a good code malformed")
    report.figures["coding"]["verify_concurrency_16"] = {
        "calls": verify.calls, "unknown_share": UNKNOWN_SHARE, "outcomes": outcomes,
        "verify": asdict(verify.latency) | {
            "calls_per_second": round(verify.calls_per_second, 1), "errors": verify.errors,
            "server_cpu_us_per_call": round(verify.server_cpu_us_per_call, 1)},
        "bare_echo": asdict(echo.latency) | {
            "calls_per_second": round(echo.calls_per_second, 1), "errors": echo.errors,
            "server_cpu_us_per_call": round(echo.server_cpu_us_per_call, 1)},
        "chain_echo": asdict(chain.latency) | {
            "calls_per_second": round(chain.calls_per_second, 1), "errors": chain.errors,
            "server_cpu_us_per_call": round(chain.server_cpu_us_per_call, 1)},
        "throughput_ratio": round(ratio, 3),
    }
    report.rows.append((
        f"8. VerifyCode, concurrency {CONCURRENCY} (anonymous, ~10% unknown)",
        f"{verify.calls_per_second:,.0f} calls/s, p50 {verify.latency.p50_us:,.0f} µs, "
        f"p99 {verify.latency.p99_us:,.0f} µs",
        f"bare grpcio echo: {echo.calls_per_second:,.0f} calls/s, p50 "
        f"{echo.latency.p50_us:,.0f} µs, p99 {echo.latency.p99_us:,.0f} µs",
        f"{ratio:.2f}× echo throughput, {verify.latency.p50_us / echo.latency.p50_us:.1f}× "
        "echo p50" if echo.latency.p50_us else "-",
    ))
    report.rows.append((
        "   echo through the kernel's chain + auth, same loop",
        f"{chain.calls_per_second:,.0f} calls/s, p50 {chain.latency.p50_us:,.0f} µs; server "
        f"CPU {chain.server_cpu_us_per_call:,.0f} µs/call",
        f"VerifyCode server CPU {verify.server_cpu_us_per_call:,.0f} µs/call",
        f"VerifyCode {verify.calls_per_second / chain.calls_per_second:.2f}× the chain echo"
        if chain.calls_per_second else "-",
    ))
