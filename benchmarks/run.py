"""`make bench`: the registry's import throughput, gRPC per-call costs, the coding
service's bulk issue, export and verification, the flow service's bulk capture and batch
history, the query service, and the province bridge's import and internal trace, each figure
next to a baseline measured in the same run. Prints progress on stderr,
the figures and a summary table on stdout, and writes the summary to
bench-results/latest.json.

    python -m benchmarks.run [--subjects N] [--only import|rpc|coding|flow|query|bridge]
                             [--batch-size B] [--codes N] [--verify-calls N]
                             [--flow-records N] [--history-calls N]
                             [--flow-layout interleaved|grouped] [--no-flow-profile]
                             [--scan-calls N] [--trace-records N] [--trace-calls N]
                             [--lag-seconds S] [--lag-rate R] [--no-query-profile]
                             [--bridge-subjects N] [--bridge-trace-backlog N]
                             [--bridge-trace-seconds S] [--bridge-trace-rate R]

1. Import: N generated subjects (default 607,100, the national registry's size; ~5% duplicate
   keys, ~0.4% invalid rows), one ImportSubjects stream per province, to a real registry server
   process on a throwaway PostgreSQL database. Baseline: COPY of the same subject rows.
2. Re-import of the same data (idempotency): nothing new may be written.
3. gRPC: echo calls through a bare grpcio server vs the kernel's interceptor chain, with and
   without tracing; GetSubject latency against the registry after the import.
4. Coding (benchmarks.coding_bench), on the all-in-one platform process and a database of its
   own: IssueCodes of --codes codes in one request vs a COPY of the same rows; the server's
   peak RSS while ExportCodes streams them as CSV; VerifyCode at concurrency 16 vs a bare
   grpcio echo.
5. Flow (benchmarks.flow_bench), on the all-in-one platform process and a database of its
   own: CaptureRecords of --flow-records mixed records (1% CreateBatch, 1% RecordShipment,
   98% RecordInternalTrace) vs a COPY of the rows the service stores for them (goal ≥ 10,000
   records/s); ListBatchHistory of a batch with 1,000 entries in one page vs a psycopg SELECT
   of the same rows.
6. Query (benchmarks.query_bench), in microservices mode (sso, registry, flow, query server
   and worker processes, PostgreSQL, RabbitMQ, Redis), query logging on: GetOriginInfo at
   concurrency 16 vs a bare grpcio echo, with the query-log writer's cost isolated;
   TraceForward at depth 10 over a generated graph of --trace-records flow records vs the
   same traversal's SQL alone; the read-model lag under a steady write load (items 11-13).
7. Bridge (benchmarks.bridge_bench), in microservices mode (sso, registry, flow, a simulated
   province and its bridge, PostgreSQL, RabbitMQ): the historical import of
   --bridge-subjects subjects through the bridge vs the registry's ImportSubjects of the same
   pages sent directly; internal-trace records from the simulator through the bridge into
   flow's CaptureRecords, a backlog vs CaptureRecords directly, and the lag of a steady
   stream (items 14-15).

Nothing here asserts on timing; mismatching counts are printed as MISMATCH lines.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
from rich.console import Console
from rich.table import Table

from agritrace.sso.v1 import sso_pb2, sso_pb2_grpc
from benchmarks import data
from benchmarks.bridge_bench import run_bridge_phase
from benchmarks.coding_bench import run_coding_phase
from benchmarks.copy_baseline import CopyResult, subject_rows, timed_copy
from benchmarks.cpu import CpuSample
from benchmarks.flow_bench import run_flow_phase
from benchmarks.import_bench import (
    ImportRunResult,
    LatencyResult,
    Metadata,
    get_subject_latency,
    raw_select_latency,
    stream_import,
)
from benchmarks.infra import RegistryServer, ThrowawayDatabase, log
from benchmarks.query_bench import run_query_phase
from benchmarks.rpc_bench import EchoResult, paired_cost_us, run_concurrent, run_echo_modes

NATIONAL_REGISTRY_SIZE = 607_100
GOAL_SECONDS = 60.0
GOAL_RATE = NATIONAL_REGISTRY_SIZE / GOAL_SECONDS
DEFAULT_BATCH = 5000  # the most records a message may carry: fewest transactions per import
ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench-results"

console = Console(highlight=False, soft_wrap=True, width=150)


@dataclass
class Report:
    """Everything measured, for the table and the JSON file."""

    started_at: str
    settings: dict[str, Any]
    machine: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)

    def mismatch(self, text: str) -> None:
        self.mismatches.append(text)
        console.print(f"[bold red]MISMATCH[/]: {text}")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=None,
                        help=f"records to import (default {NATIONAL_REGISTRY_SIZE:,}; with "
                        "--only rpc 20,000, just to have subjects for GetSubject)")
    parser.add_argument("--only", choices=("import", "rpc", "coding", "flow", "query",
                                           "bridge"),
                        default=None,
                        help="import: items 1-2 (COPY baseline, import, re-import); "
                        "rpc: echo chain costs and GetSubject latency; coding: item 4 "
                        "(IssueCodes vs COPY, ExportCodes memory, VerifyCode vs echo); flow: "
                        "item 5 (CaptureRecords vs COPY, ListBatchHistory vs SELECT); query: "
                        "item 6 (GetOriginInfo vs echo, TraceForward, read-model lag); "
                        "bridge: item 7 (import and internal trace through the bridge vs "
                        "direct)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                        help=f"records per ImportSubjectsRequest (1-5000, default {DEFAULT_BATCH})")
    parser.add_argument("--replicas", type=int, default=2,
                        help="registry server processes on the same database, as replicas of "
                        "a Deployment (default 2, as the Helm chart deploys the server); "
                        "provinces are spread over them round-robin")
    parser.add_argument("--streams", type=int, default=None,
                        help="provinces imported concurrently (default: one per replica; "
                        "above 1, duplicates stay within their province, see the docs)")
    parser.add_argument("--rpc-calls", type=int, default=5000,
                        help="sequential echo calls per server mode (default 5,000)")
    parser.add_argument("--get-calls", type=int, default=2000,
                        help="sequential GetSubject calls (default 2,000)")
    parser.add_argument("--codes", type=int, default=1_000_000,
                        help="codes issued in one IssueCodes request (1-1,000,000, default "
                        "1,000,000), then exported")
    parser.add_argument("--verify-calls", type=int, default=20_000,
                        help="VerifyCode calls (and as many bare echo calls) at concurrency "
                        "16 (default 20,000)")
    parser.add_argument("--flow-records", type=int, default=200_000,
                        help="records streamed through CaptureRecords, in messages of 5,000 "
                        "(at least 100; default 200,000)")
    parser.add_argument("--history-calls", type=int, default=2000,
                        help="sequential ListBatchHistory calls (and as many SELECTs) on a "
                        "batch with 1,000 history entries (default 2,000)")
    parser.add_argument("--flow-layout", choices=("interleaved", "grouped"),
                        default="interleaved",
                        help="order of the records within a CaptureRecords message: "
                        "interleaved (default: as they happened, kinds mixed) or grouped "
                        "(batches, then shipments, then production records)")
    parser.add_argument("--no-flow-profile", action="store_true",
                        help="do not attach py-spy to the platform during the CaptureRecords "
                        "stream (it splits the server's time by record kind)")
    parser.add_argument("--scan-calls", type=int, default=6000,
                        help="GetOriginInfo calls per scan mode (new codes, codes again) and as "
                        "many bare and chain echo calls, at concurrency 16 (default 6,000)")
    parser.add_argument("--trace-records", type=int, default=1_000_000,
                        help="shipment + transformation rows of the generated graph TraceForward "
                        "runs over (default 1,000,000)")
    parser.add_argument("--trace-calls", type=int, default=50,
                        help="sequential TraceForward calls per start batch and regulator, and "
                        "as many SQL-alone traversals (default 50)")
    parser.add_argument("--lag-seconds", type=float, default=40.0,
                        help="duration of the steady write load for the read-model lag "
                        "(default 40)")
    parser.add_argument("--lag-rate", type=float, default=20.0,
                        help="RecordShipment calls per second during the lag load, plus half as "
                        "many inspection records (default 20)")
    parser.add_argument("--no-query-profile", action="store_true",
                        help="do not sample the query server's traces and the query worker "
                        "with py-spy (where their time goes)")
    parser.add_argument("--bridge-subjects", type=int, default=20_000,
                        help="subjects of the simulated province imported through the bridge "
                        "(and as many directly; default 20,000)")
    parser.add_argument("--bridge-trace-backlog", type=int, default=10_000,
                        help="internal-trace records made at once for the bridge to deliver "
                        "(and as many sent to flow directly; default 10,000)")
    parser.add_argument("--bridge-trace-seconds", type=float, default=60.0,
                        help="duration of the steady internal-trace stream (default 60)")
    parser.add_argument("--bridge-trace-rate", type=float, default=100.0,
                        help="internal-trace records per second of the stream (default 100)")
    parser.add_argument("--seed", type=int, default=20261129, help="data generator seed")
    parser.add_argument("--no-reimport", action="store_true", help="skip the re-import")
    parser.add_argument("--profile-server", metavar="PY_SPY",
                        help="attach `PY_SPY record` (path of a py-spy binary) to the registry "
                        "server during the import and the re-import; raw collapsed stacks go "
                        "to bench-results/registry-{import,reimport}.collapsed")
    args = parser.parse_args(argv)
    if args.subjects is None:
        args.subjects = 20_000 if args.only == "rpc" else NATIONAL_REGISTRY_SIZE
    if not 1 <= args.batch_size <= 5000:
        parser.error("--batch-size must be 1-5000")
    if not 1 <= args.replicas <= 4:
        parser.error("--replicas must be 1-4")
    if args.streams is None:
        args.streams = args.replicas
    if not 1 <= args.streams <= 31:
        parser.error("--streams must be 1-31")
    if args.subjects < 1:
        parser.error("--subjects must be positive")
    if not 1 <= args.codes <= 1_000_000:
        parser.error("--codes must be 1-1,000,000 (the most one IssueCodes request may ask)")
    if args.verify_calls < 10:
        parser.error("--verify-calls must be at least 10")
    if args.flow_records < 100:
        parser.error("--flow-records must be at least 100 (1% of them are batches)")
    if args.history_calls < 10:
        parser.error("--history-calls must be at least 10")
    if args.scan_calls < 100:
        parser.error("--scan-calls must be at least 100")
    if args.trace_records < 1000:
        parser.error("--trace-records must be at least 1,000")
    if args.trace_calls < 2:
        parser.error("--trace-calls must be at least 2")
    if args.lag_seconds <= 0 or args.lag_rate <= 0:
        parser.error("--lag-seconds and --lag-rate must be positive")
    if args.bridge_subjects < 1 or args.bridge_trace_backlog < 1:
        parser.error("--bridge-subjects and --bridge-trace-backlog must be positive")
    if args.bridge_trace_seconds <= 0 or args.bridge_trace_rate <= 0:
        parser.error("--bridge-trace-seconds and --bridge-trace-rate must be positive")
    return args


def _code_state() -> dict[str, Any]:
    """Which registry code was measured: the commit, and production files changed in the
    work tree (read-only git commands; others may be editing while the benchmark runs)."""
    def git(*command: str) -> str:
        try:
            return subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10, check=False).stdout.rstrip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=all", "--",
                                        "libs/agritrace_kernel",
                                        "libs/agritrace_platform", "services").splitlines()
               if line[3:].endswith(".py") and "/tests/" not in line]
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted_production_files": changed}


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: server and database go


def _rate(count: float, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s" if seconds > 0 else "-"


def _latency(result: LatencyResult) -> str:
    return f"p50 {result.p50_us:,.0f} µs, mean {result.mean_us:,.0f} µs"


def _import_dict(result: ImportRunResult, cpu: CpuSample) -> dict[str, Any]:
    times = sorted(seconds for _, _, seconds in result.batch_seconds)
    slowest = sorted(result.batch_seconds, key=lambda item: -item[2])[:5]
    return {
        "seconds": round(result.seconds, 3),
        "records": result.records,
        "records_per_second": round(result.records_per_second, 1),
        "batches": result.batches,
        "counts": result.counts,
        "summary_counts": result.summary_counts,
        "unexpected_outcomes": {f"{e}->{g}": n for (e, g), n in result.unexpected.items()},
        "batch_seconds_p50": round(times[len(times) // 2], 4) if times else None,
        "batch_seconds_max": round(times[-1], 4) if times else None,
        "slowest_answers": [{"province": p, "answer": n, "seconds": round(t, 3)}
                            for p, n, t in slowest],
        "cpu_seconds": {k: round(v, 2) for k, v in asdict(cpu).items()},
    }


def _print_import(result: ImportRunResult, cpu: CpuSample) -> None:
    c = result.counts
    console.print(
        f"  {result.label}: {result.records:,} records in {result.seconds:.1f} s = "
        f"[bold]{result.records_per_second:,.0f} records/s[/] ({result.batches} batches)\n"
        f"    outcomes: created {c['CREATED']:,}, merged {c['MERGED']:,}, "
        f"conflict {c['CONFLICT']:,}, rejected {c['REJECTED']:,}\n"
        f"    CPU during the phase: registry server {cpu.server:.1f} s, PostgreSQL "
        f"{cpu.postgres:.1f} s, benchmark client {cpu.client:.1f} s "
        f"(wall {result.seconds:.1f} s, 2 cores = {2 * result.seconds:.0f} CPU-s)"
    )


def _check_import(report: Report, result: ImportRunResult, dataset: data.Dataset,
                  distinct_keys: int, *, replay: bool) -> None:
    c = result.counts
    total = sum(c.values())
    if total != dataset.total:
        report.mismatch(f"{result.label}: created+merged+conflict+rejected = {total:,}, "
                        f"expected {dataset.total:,}")
    if c != result.summary_counts:
        report.mismatch(f"{result.label}: per-record outcomes {c} != final summaries "
                        f"{result.summary_counts}")
    if c["CREATED"] != distinct_keys:
        what = "replayed CREATED" if replay else "created"
        report.mismatch(f"{result.label}: {what} {c['CREATED']:,} != distinct valid keys "
                        f"{distinct_keys:,}")
    if result.unexpected:
        detail = ", ".join(f"{e}->{g}: {n:,}" for (e, g), n in result.unexpected.most_common())
        report.mismatch(f"{result.label}: records with another outcome than expected: {detail}")
    for example in result.examples:
        console.print(f"    e.g. {example}")


def run_import_phase(args: argparse.Namespace, report: Report, db: ThrowawayDatabase,
                     servers: list[RegistryServer], dataset: data.Dataset, distinct_keys: int,
                     *, full: bool) -> list[str]:
    """COPY baseline (full only), import, re-import (full only). Returns created subject ids."""
    expected = dataset.expected_counts()
    server = servers[0]
    copies: list[CopyResult] = []
    if full:
        log("[copy] building the subject rows of the baseline (untimed)")
        started = time.perf_counter()
        rows = subject_rows(dataset.originals, server.pii_key)
        log(f"[copy] {len(rows):,} rows built in {time.perf_counter() - started:.1f} s")
        for with_indexes in (False, True):
            copies.append(timed_copy(db.conninfo, rows, with_indexes=with_indexes))
            result = copies[-1]
            console.print(f"  {result.label}: {result.rows:,} rows in {result.seconds:.2f} s = "
                          f"[bold]{result.rows_per_second:,.0f} rows/s[/]")
        del rows
        report.figures["copy_baseline"] = [
            {"label": c.label, "rows": c.rows, "seconds": round(c.seconds, 3),
             "rows_per_second": round(c.rows_per_second, 1)} for c in copies]

    for replica in servers:
        replica.start()
    for replica in servers:
        waited = replica.wait_serving()
        log(f"[server] registry SERVING on {replica.address} after {waited:.1f} s "
            f"(log: {replica.log_path.relative_to(ROOT)})")
    pid = server.process.pid if server.process else None
    pids = [r.process.pid for r in servers if r.process is not None]
    addresses = [r.address for r in servers]

    label = "import" if full else "populate"
    log(f"[{label}] {dataset.total:,} records, {len(dataset.imports)} provinces "
        f"({args.streams} at a time, {len(servers)} registry replica(s)), "
        f"batches of {args.batch_size}")
    profiler = _Profiler(args.profile_server, label)
    profiler.start(pid)
    before = CpuSample.take(pids)
    first = stream_import(addresses, dataset, label, streams=args.streams,
                          metadata=args.credentials)
    cpu = CpuSample.take(pids) - before
    profiler.stop()
    _print_import(first, cpu)
    _check_import(report, first, dataset, distinct_keys, replay=False)
    stored = db.scalar("SELECT count(*) FROM registry.subjects")
    if stored != distinct_keys:
        report.mismatch(f"{label}: {stored:,} rows in registry.subjects, expected "
                        f"{distinct_keys:,} (distinct valid keys)")
    console.print(f"    expected outcomes: created {expected['CREATED']:,}, merged "
                  f"{expected['MERGED']:,}, conflict {expected['CONFLICT']:,}, rejected "
                  f"{expected['REJECTED']:,}; subjects stored: {stored:,}")
    if not full:
        report.figures["populate"] = _import_dict(first, cpu)
        return first.created_ids

    goal_met = first.records_per_second >= GOAL_RATE
    scaled = "" if dataset.total == NATIONAL_REGISTRY_SIZE else \
        f" (scaled to {dataset.total:,} records: ≤ {dataset.total / GOAL_RATE:.1f} s)"
    verdict = "[bold green]MET[/]" if goal_met else "[bold red]NOT MET[/]"
    at_full = NATIONAL_REGISTRY_SIZE / first.records_per_second if first.records_per_second else 0
    console.print(f"  goal: {NATIONAL_REGISTRY_SIZE:,} records ≤ {GOAL_SECONDS:.0f} s, i.e. ≥ "
                  f"{GOAL_RATE:,.0f} records/s{scaled}: {verdict} "
                  f"({first.records_per_second:,.0f} records/s, {at_full:.0f} s at full size)")
    report.figures["import"] = _import_dict(first, cpu) | {
        "expected_counts": expected, "distinct_valid_keys": distinct_keys,
        "subjects_stored": stored, "goal_seconds": GOAL_SECONDS, "goal_met": goal_met,
    }
    plain = copies[0]
    ratio = first.seconds / plain.seconds if plain.seconds else 0.0
    report.rows.append((
        f"1. Import {dataset.total:,} subjects ({len(dataset.imports)} provinces, "
        f"{len(servers)} replica(s), {args.streams} stream(s))",
        f"{first.seconds:.1f} s, {first.records_per_second:,.0f} rec/s",
        f"COPY {plain.rows:,} rows: {plain.seconds:.2f} s, {plain.rows_per_second:,.0f} rows/s",
        f"import {ratio:.1f}× slower",
    ))
    indexed = copies[1]
    report.rows.append((
        "   COPY with the subjects table's indexes",
        f"{indexed.seconds:.2f} s, {indexed.rows_per_second:,.0f} rows/s",
        f"plain COPY {plain.seconds:.2f} s",
        f"{indexed.seconds / plain.seconds:.1f}×" if plain.seconds else "-",
    ))
    report.rows.append((
        f"   Goal ≤ {GOAL_SECONDS:.0f} s for {NATIONAL_REGISTRY_SIZE:,}",
        "MET" if goal_met else "NOT MET",
        f"needs ≥ {GOAL_RATE:,.0f} rec/s",
        f"{first.records_per_second / GOAL_RATE:.2f}× of goal rate",
    ))
    c = first.counts
    report.rows.append((
        "   outcomes (created/merged/conflict/rejected)",
        f"{c['CREATED']:,} / {c['MERGED']:,} / {c['CONFLICT']:,} / {c['REJECTED']:,}",
        f"distinct valid keys {distinct_keys:,}",
        "OK" if not report.mismatches else "MISMATCH",
    ))

    if not args.no_reimport:
        provenance = db.scalar("SELECT count(*) FROM registry.subject_provenance")
        conflicts = db.scalar("SELECT count(*) FROM registry.import_conflicts")
        log("[re-import] the same records again, same import ids")
        profiler = _Profiler(args.profile_server, "reimport")
        profiler.start(pid)
        before = CpuSample.take(pids)
        again = stream_import(addresses, dataset, "re-import", streams=args.streams,
                              metadata=args.credentials)
        cpu = CpuSample.take(pids) - before
        profiler.stop()
        _print_import(again, cpu)
        _check_import(report, again, dataset, distinct_keys, replay=True)
        new_subjects = db.scalar("SELECT count(*) FROM registry.subjects") - stored
        new_provenance = db.scalar("SELECT count(*) FROM registry.subject_provenance") \
            - provenance
        new_conflicts = db.scalar("SELECT count(*) FROM registry.import_conflicts") - conflicts
        console.print(f"    newly written: {new_subjects:,} subjects, {new_provenance:,} "
                      f"provenance rows, {new_conflicts:,} conflict rows (all must be 0); "
                      "CREATED/MERGED/CONFLICT above are the first run's outcomes, replayed")
        if new_subjects or new_provenance or new_conflicts:
            report.mismatch(f"re-import wrote {new_subjects} subjects, {new_provenance} "
                            f"provenance rows, {new_conflicts} conflict rows; expected none")
        report.figures["reimport"] = _import_dict(again, cpu) | {
            "new_subjects": new_subjects, "new_provenance_rows": new_provenance,
            "new_conflict_rows": new_conflicts,
        }
        report.rows.append((
            f"2. Re-import (idempotent) {dataset.total:,}",
            f"{again.seconds:.1f} s, {again.records_per_second:,.0f} rec/s",
            f"first import {first.seconds:.1f} s",
            f"new subjects {new_subjects}; {again.seconds / first.seconds:.2f}× first",
        ))
    return first.created_ids


class _Profiler:
    """py-spy attached to the registry server during an import (--profile-server): raw
    collapsed stacks of every thread go to bench-results/registry-<phase>.collapsed
    (summarise them with `python -m benchmarks.stacks FILE`)."""

    def __init__(self, py_spy: str | None, phase: str) -> None:
        self.py_spy = py_spy
        self.process: subprocess.Popen[bytes] | None = None
        self.output = RESULTS_DIR / f"registry-{phase}.collapsed"

    def start(self, pid: int | None) -> None:
        if not self.py_spy or pid is None:
            return
        RESULTS_DIR.mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            [self.py_spy, "record", "--pid", str(pid), "--threads", "--rate", "100",
             "--format", "raw", "--output", str(self.output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        atexit.register(self.stop)
        time.sleep(1.0)  # let it attach before the measured phase

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
            log(f"[profile] py-spy stacks of the import: {self.output.relative_to(ROOT)}")


def run_rpc_phase(args: argparse.Namespace, report: Report) -> None:
    log(f"[rpc] echo servers, {args.rpc_calls:,} sequential unary calls per mode")
    echo: dict[str, EchoResult] = run_echo_modes(args.rpc_calls)
    for result in echo.values():
        latency = result.latency
        console.print(f"  {latency.label}: p50 {latency.p50_us:,.1f} µs, mean "
                      f"{latency.mean_us:,.1f} µs, p99 {latency.p99_us:,.1f} µs")
    bare, plain, noop, traced = (echo[m] for m in ("bare", "no-tracing", "noop-tracing",
                                                   "tracing"))
    chain = paired_cost_us(traced, bare)
    untraced_chain = paired_cost_us(plain, bare)
    noop_chain = paired_cost_us(noop, bare)
    tracing = paired_cost_us(traced, plain)
    span = paired_cost_us(traced, noop)
    console.print(
        "  per-RPC cost (median of per-round differences of medians; interquartile range in "
        "brackets):\n"
        f"    whole chain with tracing vs bare grpcio: {chain[0]:+,.1f} µs "
        f"[{chain[1]:+,.0f}, {chain[2]:+,.0f}]\n"
        f"    chain without tracing vs bare grpcio:    {untraced_chain[0]:+,.1f} µs "
        f"[{untraced_chain[1]:+,.0f}, {untraced_chain[2]:+,.0f}]\n"
        f"    tracing (traced chain vs chain without): {tracing[0]:+,.1f} µs "
        f"[{tracing[1]:+,.0f}, {tracing[2]:+,.0f}]\n"
        f"    of which recording spans (configured vs no-op provider): {span[0]:+,.1f} µs "
        f"[{span[1]:+,.0f}, {span[2]:+,.0f}]")

    def cost(values: tuple[float, float, float]) -> dict[str, float]:
        return {"median": round(values[0], 1), "q1": round(values[1], 1),
                "q3": round(values[2], 1)}

    report.figures["echo"] = {
        mode: asdict(result.latency) for mode, result in echo.items()
    } | {"calls_per_mode": args.rpc_calls,
         "chain_overhead_us": cost(chain), "chain_without_tracing_overhead_us":
         cost(untraced_chain), "noop_tracing_chain_overhead_us": cost(noop_chain),
         "tracing_cost_us": cost(tracing), "span_recording_cost_us": cost(span)}
    b = bare.latency
    report.rows.append((
        "3. Echo via create_server chain, tracing on",
        _latency(traced.latency), f"bare grpcio: {_latency(b)}",
        f"{chain[0]:+,.0f} µs per RPC [IQR {chain[1]:+,.0f}, {chain[2]:+,.0f}]",
    ))
    report.rows.append((
        "   Echo via chain without tracing",
        _latency(plain.latency), f"bare grpcio: {_latency(b)}",
        f"{untraced_chain[0]:+,.0f} µs per RPC [IQR {untraced_chain[1]:+,.0f}, "
        f"{untraced_chain[2]:+,.0f}]",
    ))
    report.rows.append((
        "   Echo via full chain, tracer not configured",
        _latency(noop.latency), f"bare grpcio: {_latency(b)}",
        f"{noop_chain[0]:+,.0f} µs per RPC [IQR {noop_chain[1]:+,.0f}, {noop_chain[2]:+,.0f}]",
    ))
    report.rows.append((
        "   Tracing cost per RPC",
        f"{tracing[0]:+,.1f} µs [IQR {tracing[1]:+,.0f}, {tracing[2]:+,.0f}]",
        "traced chain − chain without tracing",
        f"{tracing[0] / traced.latency.p50_us:.0%} of a traced echo (p50)"
        if traced.latency.p50_us else "-",
    ))

    log(f"[rpc] authentication at concurrency 16: {args.rpc_calls:,} calls per mode")
    concurrent = run_concurrent(args.rpc_calls)
    plain_16, auth_16 = concurrent["tracing"], concurrent["auth"]
    for at_once in (plain_16, auth_16):
        console.print(f"  {at_once.latency.label}, 16 at once: p50 {at_once.latency.p50_us:,.0f} "
                      f"µs, mean {at_once.latency.mean_us:,.0f} µs, "
                      f"{at_once.calls_per_second:,.0f} calls/s")
    added = auth_16.latency.mean_us / plain_16.latency.mean_us - 1 \
        if plain_16.latency.mean_us else 0.0
    verdict = "MET" if added < 0.10 else "NOT MET"
    console.print(f"  authentication adds {added:+.1%} mean latency at concurrency 16 "
                  f"(goal < 10%: {verdict})")
    report.figures["auth_concurrency_16"] = {
        mode: asdict(r.latency) | {"calls_per_second": round(r.calls_per_second, 1)}
        for mode, r in concurrent.items()
    } | {"added_mean_latency": round(added, 4), "goal_met": added < 0.10}
    report.rows.append((
        "5. Authenticated echo, concurrency 16",
        f"mean {auth_16.latency.mean_us:,.0f} µs, {auth_16.calls_per_second:,.0f} calls/s",
        f"same chain without auth: mean {plain_16.latency.mean_us:,.0f} µs",
        f"{added:+.1%} latency (goal < 10%: {verdict})",
    ))


def run_get_subject(args: argparse.Namespace, report: Report, server: RegistryServer,
                    db: ThrowawayDatabase, subject_ids: list[str], stored: int
                    ) -> LatencyResult | None:
    if not subject_ids:
        report.mismatch("no subject was created, GetSubject cannot be measured")
        return None
    log(f"[rpc] {args.get_calls:,} sequential GetSubject calls against the registry")
    result = get_subject_latency(server.address, subject_ids, args.get_calls,
                                 metadata=args.credentials)
    raw = raw_select_latency(db.conninfo, subject_ids, args.get_calls)
    for measured in (result, raw):
        console.print(f"  {measured.label}: p50 {measured.p50_us:,.0f} µs, p99 "
                      f"{measured.p99_us:,.0f} µs, mean {measured.mean_us:,.0f} µs "
                      f"({stored:,} subjects stored)")
    report.figures["get_subject"] = asdict(result) | {"subjects_stored": stored}
    report.figures["raw_select_by_pk"] = asdict(raw)
    return result


def add_get_subject_row(args: argparse.Namespace, report: Report, result: LatencyResult,
                        stored: int) -> None:
    echo = report.figures.get("echo", {}).get("tracing")
    raw = report.figures.get("raw_select_by_pk")
    report.rows.append((
        f"4. GetSubject latency ({args.get_calls:,} calls, {stored:,} subjects)",
        f"p50 {result.p50_us:,.0f} µs, p99 {result.p99_us:,.0f} µs",
        f"traced echo: p50 {echo['p50_us']:,.0f} µs, p99 {echo['p99_us']:,.0f} µs"
        if echo else "-",
        f"{result.p50_us / echo['p50_us']:.1f}× echo p50" if echo else "-",
    ))
    if raw:
        report.rows.append((
            "   same subjects, psycopg SELECT by PK",
            f"p50 {raw['p50_us']:,.0f} µs, p99 {raw['p99_us']:,.0f} µs",
            f"GetSubject p50 {result.p50_us:,.0f} µs",
            f"GetSubject {result.p50_us / raw['p50_us']:.0f}× one round trip",
        ))


def print_summary(report: Report) -> None:
    table = Table(title="AgriTrace benchmark summary", show_lines=False)
    for column in ("measure", "result", "baseline (same run)", "ratio / cost"):
        table.add_column(column, overflow="fold")
    for row in report.rows:
        table.add_row(*row)
    console.print()
    console.print(table)
    if report.mismatches:
        for text in report.mismatches:
            console.print(f"[bold red]MISMATCH[/]: {text}")
    else:
        console.print("all outcome checks passed (no MISMATCH)")


def write_json(report: Report) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / "latest.json"
    payload = {
        "started_at": report.started_at,
        "settings": report.settings,
        "machine": report.machine,
        "summary": [dict(zip(("measure", "result", "baseline", "ratio"), row, strict=True))
                    for row in report.rows],
        "figures": report.figures,
        "mismatches": report.mismatches,
    }
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return path


def start_sso(db: ThrowawayDatabase) -> tuple[RegistryServer, dict[str, str], Metadata]:
    """The sso service the registry authenticates callers against: migrated, with its first
    administrator, and a service account for the registry. Returns the server, the registry's
    extra environment, and the administrator's credentials the benchmark calls with (an
    administrator may import every province)."""
    admin_password, service_password = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    sso = RegistryServer(db.sqlalchemy_url, RESULTS_DIR / "sso-server.log",
                         module="agritrace_sso",
                         extra_env={"AGRITRACE_ADMIN_PASSWORD": admin_password})
    sso.migrate()
    sso.run("bootstrap-admin")
    sso.start()
    sso.wait_serving()
    with grpc.insecure_channel(sso.address) as channel:
        stub = sso_pb2_grpc.SsoServiceStub(channel)  # type: ignore[no-untyped-call]
        admin = stub.Login(sso_pb2.LoginRequest(username="admin", password=admin_password))
        credentials = (("authorization", f"Bearer {admin.tokens.access_token}"),)
        stub.CreateAccount(sso_pb2.CreateAccountRequest(
            request_id="svc-registry", password=service_password,
            account=sso_pb2.Account(username="svc-registry", display_name="registry",
                                    kind=sso_pb2.ACCOUNT_KIND_SERVICE)), metadata=credentials)
    registry_env = {"AGRITRACE_SSO_ADDRESS": sso.address,
                    "AGRITRACE_SERVICE_USERNAME": "svc-registry",
                    "AGRITRACE_SERVICE_PASSWORD": service_password}
    return sso, registry_env, credentials


def run_registry_phases(args: argparse.Namespace, report: Report, phases: set[str]) -> None:
    """Items 1-3: the registry (and sso) on a throwaway database, removed at the end."""
    db = ThrowawayDatabase()
    server: RegistryServer | None = None
    replicas: list[RegistryServer] = []
    sso: RegistryServer | None = None
    try:
        log(f"[data] generating {args.subjects:,} subjects (seed {args.seed})")
        t0 = time.perf_counter()
        dataset = data.generate(args.subjects, args.seed, f"{os.getpid()}",
                                cross_province=args.streams == 1)
        distinct_keys = data.distinct_valid_keys(dataset)
        dataset.build_messages(args.batch_size)
        expected = dataset.expected_counts()
        log(f"[data] {dataset.total:,} records in {time.perf_counter() - t0:.1f} s: "
            f"{len(dataset.imports)} provinces (largest {dataset.imports[0].province_name} "
            f"{len(dataset.imports[0].records):,}), expected created {expected['CREATED']:,}, "
            f"merged {expected['MERGED']:,}, conflict {expected['CONFLICT']:,}, rejected "
            f"{expected['REJECTED']:,}; {dataset.message_bytes() / 1e6:.0f} MB of messages")
        if distinct_keys != len(dataset.originals):
            report.mismatch(f"generator: {distinct_keys} distinct keys but "
                            f"{len(dataset.originals)} originals")
        db.create()
        log(f"[db] throwaway database {db.name}; migrating; starting sso")
        sso, registry_env, args.credentials = start_sso(db)
        replicas = [
            RegistryServer(db.sqlalchemy_url, RESULTS_DIR / (
                "registry-server.log" if n == 1 else f"registry-server-{n}.log"),
                pii_key=sso.pii_key, extra_env=registry_env)
            for n in range(1, args.replicas + 1)
        ]
        server = replicas[0]
        server.migrate()
        created_ids = run_import_phase(args, report, db, replicas, dataset, distinct_keys,
                                       full="import" in phases)
        for replica in replicas[1:]:
            replica.stop()
        del dataset
        if "rpc" in phases:
            stored = db.scalar("SELECT count(*) FROM registry.subjects")
            get_subject = run_get_subject(args, report, server, db, created_ids, stored)
            server.stop()  # the echo servers get the machine to themselves
            run_rpc_phase(args, report)
            if get_subject is not None:
                add_get_subject_row(args, report, get_subject, stored)
    finally:
        for replica in replicas:
            replica.stop()
        if sso is not None:
            sso.stop()
        db.drop()


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    signal.signal(signal.SIGTERM, _terminate)
    phases = {args.only} if args.only else {"import", "rpc", "coding", "flow", "query",
                                            "bridge"}
    report = Report(
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        settings={"subjects": args.subjects if phases & {"import", "rpc"} else None,
                  "phases": sorted(phases),
                  "batch_size": args.batch_size, "streams": args.streams,
                  "replicas": args.replicas,
                  "rpc_calls": args.rpc_calls, "get_calls": args.get_calls,
                  "codes": args.codes if "coding" in phases else None,
                  "verify_calls": args.verify_calls if "coding" in phases else None,
                  "flow_records": args.flow_records if "flow" in phases else None,
                  "history_calls": args.history_calls if "flow" in phases else None,
                  "flow_layout": args.flow_layout if "flow" in phases else None,
                  "scan_calls": args.scan_calls if "query" in phases else None,
                  "trace_records": args.trace_records if "query" in phases else None,
                  "trace_calls": args.trace_calls if "query" in phases else None,
                  "lag_seconds": args.lag_seconds if "query" in phases else None,
                  "lag_rate": args.lag_rate if "query" in phases else None,
                  "bridge_subjects": args.bridge_subjects if "bridge" in phases else None,
                  "bridge_trace_backlog": args.bridge_trace_backlog
                  if "bridge" in phases else None,
                  "bridge_trace_seconds": args.bridge_trace_seconds
                  if "bridge" in phases else None,
                  "bridge_trace_rate": args.bridge_trace_rate if "bridge" in phases else None,
                  "seed": args.seed},
        machine={"cpus": os.cpu_count(), "python": platform.python_version(),
                 "platform": platform.platform(), "loadavg_at_start": os.getloadavg()},
    )
    report.settings["code"] = code = _code_state()
    log(f"[bench] code: commit {code['commit']}"
        + (f" + uncommitted changes in {', '.join(code['uncommitted_production_files'])}"
           if code["uncommitted_production_files"] else ""))
    log(f"[bench] load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
        "(other processes on this machine skew every figure)")
    started = time.perf_counter()
    if phases & {"import", "rpc"}:
        run_registry_phases(args, report, phases)
    if "coding" in phases:
        coding_started = time.perf_counter()
        run_coding_phase(report, console, quantity=args.codes, verify_calls=args.verify_calls,
                         seed=args.seed)
        report.figures.setdefault("coding", {})["phase_seconds"] = round(
            time.perf_counter() - coding_started, 1)
    if "flow" in phases:
        flow_started = time.perf_counter()
        run_flow_phase(report, console, records=args.flow_records,
                       history_calls=args.history_calls, seed=args.seed,
                       layout=args.flow_layout, profile=not args.no_flow_profile)
        report.figures.setdefault("flow", {})["phase_seconds"] = round(
            time.perf_counter() - flow_started, 1)
    if "query" in phases:
        query_started = time.perf_counter()
        run_query_phase(report, console, scan_calls=args.scan_calls,
                        trace_records=args.trace_records, trace_calls=args.trace_calls,
                        lag_seconds=args.lag_seconds, lag_rate=args.lag_rate, seed=args.seed,
                        profile=not args.no_query_profile)
        report.figures.setdefault("query", {})["phase_seconds"] = round(
            time.perf_counter() - query_started, 1)
    if "bridge" in phases:
        bridge_started = time.perf_counter()
        run_bridge_phase(report, console, subjects=args.bridge_subjects,
                         trace_backlog=args.bridge_trace_backlog,
                         trace_rate=args.bridge_trace_rate,
                         trace_seconds=args.bridge_trace_seconds, seed=args.seed)
        report.figures.setdefault("bridge", {})["phase_seconds"] = round(
            time.perf_counter() - bridge_started, 1)
    report.figures["total_seconds"] = round(time.perf_counter() - started, 1)
    report.machine["loadavg_at_end"] = os.getloadavg()
    print_summary(report)
    path = write_json(report)
    console.print(f"total {time.perf_counter() - started:.0f} s; summary written to "
                  f"{path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
