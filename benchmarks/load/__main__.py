"""`make load` (python -m benchmarks.load): the stress test the security plan asks for.

    python -m benchmarks.load [--users 50] [--spawn-rate 10] [--duration 60] [--chains 3]
        [--refresh-margin 60] [--address HOST:PORT --admin-password PW [--sso-address ...]
         [--coding-address ...] [--flow-address ...] [--query-address ...]] [--locust PATH]
        [--out DIR]

Without --address it starts the all-in-one platform on its embedded defaults in a temporary
directory; with it, it loads that platform (an address per service in microservices mode).
It seeds supply chains through the APIs (seed.py), then runs locust headless
(locustfile.py: consumers scanning, code checks, a retailer's ±1 view, a regulator's recalls)
for --duration seconds, printing locust's figures as it goes, and ends with a summary per call:
requests, failures (errors and wrong answers), requests/s, p50 and p99, and checks that the
query log holds every query made under load, its hash chain intact. Writes
<out>/load_stats.csv (locust's) and <out>/summary.json. Exits 1 when a call failed, a kind of
call was never made, or the log lacks queries or is broken. Safe to run again: every seeding
request has a fresh id, nothing is duplicated. The signed-in users sign in themselves (a
password made for the run) and renew their tokens --refresh-margin seconds before they expire,
so a run may last as long as needed."""

from __future__ import annotations

import argparse
import csv
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from agritrace.query.v1 import query_pb2 as qpb
from agritrace.query.v1 import query_pb2_grpc
from agritrace_testing.platform_client import PlatformClient, start_all_in_one
from benchmarks.load.seed import seed
from benchmarks.load.signin import DEFAULT_REFRESH_MARGIN

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
DEFAULT_LOCUST = ROOT / ".venv-load" / "bin" / "locust"
# The calls each kind of user makes: every one must have been made, none failed.
CALLS = ("GetOriginInfo", "VerifyCode", "TraceCode", "TraceForward")
# The calls the query log records (every query by anyone); VerifyCode is the coding service's.
LOGGED_CALLS = ("GetOriginInfo", "TraceCode", "TraceForward")
LOG_SETTLE_SECONDS = 15.0  # the log's writer appends in batches, a tick behind the calls
# A retailer and a regulator, and enough others that the 4:1 split of consumers and code
# checks leaves at least one code check (locust rounds the weighted share).
MIN_USERS = 8


def operators(users: int) -> int:
    """Retailers and regulators, each: one per 25 users, at least one."""
    return max(1, users // 25)


@dataclass(frozen=True)
class CallFigures:
    name: str
    requests: int
    failures: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float


def read_stats(path: Path) -> dict[str, CallFigures]:
    """Locust's `<prefix>_stats.csv`, by call name (the Aggregated row left out)."""
    figures: dict[str, CallFigures] = {}
    with path.open(newline="") as stats:
        for row in csv.DictReader(stats):
            if row["Name"] == "Aggregated":
                continue
            figures[row["Name"]] = CallFigures(
                row["Name"], int(row["Request Count"]), int(row["Failure Count"]),
                float(row["Requests/s"]), _number(row["50%"]), _number(row["99%"]))
    return figures


def _number(text: str) -> float:
    return float(text) if text not in ("", "N/A") else 0.0


def problems(figures: dict[str, CallFigures]) -> list[str]:
    """Why the run failed: a kind of call never made, or calls that failed."""
    found = [f"{name}: never called" for name in CALLS
             if name not in figures or figures[name].requests == 0]
    found += [f"{call.name}: {call.failures} of {call.requests} failed"
              for call in figures.values() if call.failures]
    return found


def failure_lines(path: Path, limit: int = 5) -> list[str]:
    """The commonest failures in locust's `<prefix>_failures.csv`: call, count, error."""
    if not path.exists():
        return []
    with path.open(newline="") as failures:
        rows = sorted(csv.DictReader(failures), key=lambda row: -int(row["Occurrences"]))
    return [f"  {row['Name']} x{row['Occurrences']}: {row['Error'][:160]}" for row in rows[:limit]]


class QueryLog:
    """The query log as its administrator sees it: where it ends, and whether it holds. Made
    with a token of the moment: a run outlives the administrator's first one."""

    def __init__(self, client: PlatformClient) -> None:
        token = client.login("admin", client.admin_password)
        channel = client.channel_as(token, client.query_address)
        self._query = query_pb2_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]

    def newest_seq(self) -> int:
        page = self._query.ListQueryLogs(qpb.ListQueryLogsRequest(page_size=1), timeout=30)
        return int(page.entries[0].seq) if page.entries else 0

    def verify_from(self, first_seq: int) -> qpb.VerifyQueryLogResponse:
        answer: qpb.VerifyQueryLogResponse = self._query.VerifyQueryLog(
            qpb.VerifyQueryLogRequest(first_seq=first_seq), timeout=120)
        return answer


def log_problems(log: QueryLog, first_seq: int, made: int) -> tuple[list[str], str]:
    """Every query made under load is in the log and its chain holds from `first_seq` (the
    entries before the run are not checked again); a line saying what was found."""
    deadline = time.monotonic() + LOG_SETTLE_SECONDS
    while True:
        answer = log.verify_from(first_seq)
        if not answer.ok or answer.entries_checked >= made or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    line = (f"query log from entry {first_seq}: {answer.entries_checked:,} entries "
            f"{'chained intact' if answer.ok else 'BROKEN'}, {made:,} queries made under load")
    found = []
    if not answer.ok:
        found.append(f"query log broken at entry {answer.first_broken_seq}: {answer.problem}")
    elif answer.entries_checked < made:
        found.append(f"query log: {answer.entries_checked:,} entries for {made:,} queries")
    return found, line


def summary_lines(figures: dict[str, CallFigures]) -> list[str]:
    lines = [f"{'call':<16}{'requests':>10}{'failures':>10}{'req/s':>10}{'p50 ms':>9}"
             f"{'p99 ms':>9}"]
    for call in sorted(figures.values(), key=lambda c: -c.requests):
        lines.append(f"{call.name:<16}{call.requests:>10,}{call.failures:>10,}"
                     f"{call.requests_per_second:>10,.1f}{call.p50_ms:>9,.0f}"
                     f"{call.p99_ms:>9,.0f}")
    return lines


def run_locust(locust: Path, seed_path: Path, out: Path, args: argparse.Namespace) -> int:
    env = {**os.environ, "AGRITRACE_LOAD_SEED": str(seed_path),
           "AGRITRACE_LOAD_THINK_SECONDS": str(args.think),
           "AGRITRACE_LOAD_OPERATORS": str(operators(args.users)),
           "AGRITRACE_LOAD_REFRESH_MARGIN": str(args.refresh_margin),
           # The generated messages, and the repository for benchmarks.load.signin.
           "PYTHONPATH": os.pathsep.join((str(ROOT / "libs" / "generated"), str(ROOT)))}
    command = [str(locust), "-f", str(LOCUSTFILE), "--headless", "--users", str(args.users),
               "--spawn-rate", str(args.spawn_rate), "--run-time", f"{args.duration}s",
               "--stop-timeout", "10", "--csv", str(out / "load"), "--loglevel", "WARNING"]
    return subprocess.run(command, env=env, cwd=ROOT, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50, help="simulated users at once")
    parser.add_argument("--spawn-rate", type=float, default=10, help="users started a second")
    parser.add_argument("--duration", type=int, default=60, help="seconds of load")
    parser.add_argument("--think", type=float, default=0.05,
                        help="mean seconds a user waits between calls")
    parser.add_argument("--chains", type=int, default=3, help="supply chains to seed")
    parser.add_argument("--refresh-margin", type=float, default=DEFAULT_REFRESH_MARGIN,
                        help="seconds before their access tokens expire that signed-in users "
                             "renew them")
    parser.add_argument("--address", help="the platform to load (default: start one)")
    parser.add_argument("--admin-password", default=os.environ.get("AGRITRACE_ADMIN_PASSWORD"))
    for service in ("sso", "coding", "flow", "query"):
        parser.add_argument(f"--{service}-address", default="",
                            help=f"the {service} service, when not at --address")
    parser.add_argument("--locust", type=Path, default=DEFAULT_LOCUST)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "load")
    args = parser.parse_args(argv)
    if args.duration < 1:
        parser.error("--duration must be at least 1 second")
    if args.refresh_margin < 0:
        parser.error("--refresh-margin must not be negative")
    if args.users < MIN_USERS:
        parser.error(f"--users must be at least {MIN_USERS}: a retailer, a regulator, "
                     "consumers and a code check")
    if args.chains < 1 or args.spawn_rate <= 0:
        parser.error("--chains and --spawn-rate must be positive")
    if args.address and not args.admin_password:
        parser.error("--address needs --admin-password (or AGRITRACE_ADMIN_PASSWORD)")
    if not args.locust.exists():
        parser.error(f"no locust at {args.locust}: `make load` installs it")
    args.out.mkdir(parents=True, exist_ok=True)

    # A previous run's figures must not stand in for this one's.
    for old in args.out.glob("load_*.csv"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="agritrace-load-") as tmp:
        work = Path(tmp)
        platform = None
        if args.address:
            client = PlatformClient(
                address=args.address, admin_password=args.admin_password,
                sso_address=args.sso_address, coding_address=args.coding_address,
                flow_address=args.flow_address, query_address=args.query_address)
        else:
            print("[load] starting the all-in-one platform", flush=True)
            platform, client = start_all_in_one(work)
        # The seeded accounts may live on a real platform: a password of this run's own.
        client.user_password = secrets.token_urlsafe(18)
        try:
            client.connect()
            seeded = seed(client, args.chains)
            # The accounts' password inside: kept in the temporary directory, not the results.
            seed_path = work / "seed.json"
            seeded.write(seed_path)
            first_seq = QueryLog(client).newest_seq() + 1
            print(f"[load] {len(seeded.scannable_codes)} codes to scan; locust: {args.users} "
                  f"users for {args.duration} s", flush=True)
            locust_exit = run_locust(args.locust, seed_path, args.out, args)
            stats = args.out / "load_stats.csv"
            figures = read_stats(stats) if stats.exists() else {}
            made = sum(figures[name].requests for name in LOGGED_CALLS if name in figures)
            found_in_log, log_line = log_problems(QueryLog(client), first_seq, made)
        finally:
            client.close_channels()
            if platform is not None:
                platform.terminate()
                platform.wait(timeout=30)

    if not figures:
        print(f"FAIL locust wrote no figures (it exited with {locust_exit})")
        return 1
    found = problems(figures) + found_in_log
    print("\n".join(["", "AgriTrace load test", *summary_lines(figures), log_line]))
    (args.out / "summary.json").write_text(json.dumps({
        "users": args.users, "duration_seconds": args.duration, "chains": args.chains,
        "calls": {name: vars(call) for name, call in figures.items()}, "query_log": log_line,
        "problems": found}, indent=1))
    for problem in found:
        print(f"FAIL {problem}")
    if found:
        print("\n".join(failure_lines(args.out / "load_failures.csv")))
    print("passed" if not found else f"{len(found)} problem(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
