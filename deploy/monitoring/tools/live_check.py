"""The rules against the real thing: a real Prometheus scraping a real all-in-one platform.

    python live_check.py --prometheus PATH [--keep-logs DIR]

Starts the platform (`python -m agritrace_platform`, embedded defaults, a temporary data
directory) and Prometheus with rules/*.rules.yml, scraping the platform's /metrics every second
as the job `agritrace-query` (the all-in-one process exports every service's metrics). Then
scans unknown codes as consumers would - from a declared county and from no declared place -
until the query service signals counterfeits, and requires of Prometheus that:

  * every rule evaluates without error (a rule can parse and still fail at run time, e.g. on
    many-to-many matches);
  * the recording rules yield the consumer scans' call rate and p99;
  * AgriTraceCounterfeitSuspected fires for the county's province and
    AgriTraceCounterfeitSuspectedNetwork for the network, from the series the service creates;
  * no other alert fires.

Prints one line per check; exits 1 if any fails. validate.sh runs it."""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import yaml

from agritrace.query.v1 import query_pb2, query_pb2_grpc
from agritrace_kernel.ports import free_port
from agritrace_testing.platform_client import start_all_in_one

MONITORING = Path(__file__).resolve().parents[1]
JOB = "agritrace-query"
COUNTY = "370102"  # 济南市历下区: its province is 37
# query's counterfeit threshold (DEFAULT_COUNTERFEIT_THRESHOLD): unknown scans from one place
# in its window; one more for good measure.
UNKNOWN_SCANS = 6


def wait_for(what: str, probe: Callable[[], Any], timeout: float) -> Any:
    """probe()'s first truthy answer within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = probe()
        except (OSError, grpc.RpcError, ValueError):
            answer = None
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.5)


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=5) as answer:
            return json.load(answer)

    def vector(self, expr: str) -> list[dict[str, Any]]:
        body = self.get("/api/v1/query", query=expr)
        return list(body["data"]["result"])

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
            return bool(answer.status == 200)


def scan_unknown_codes(address: str) -> None:
    """Consumers scanning codes the platform never issued: from a declared county, and from
    no declared place (their network)."""
    with grpc.insecure_channel(address) as channel:
        query = query_pb2_grpc.QueryServiceStub(channel)
        for number in range(UNKNOWN_SCANS):
            request = query_pb2.GetOriginInfoRequest(code=f"37FAKE{number:04d}")
            query.GetOriginInfo(request, metadata=(("x-scan-division", COUNTY),), timeout=10)
            query.GetOriginInfo(request, timeout=10)


class SteadyScans:
    """A consumer scanning a code every 50 ms while the checks run, so that the scans' counters
    move between scrapes (a counter first seen at its final value has no rate)."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with grpc.insecure_channel(self._address) as channel:
            query = query_pb2_grpc.QueryServiceStub(channel)
            while not self._stop.wait(0.05):
                query.GetOriginInfo(query_pb2.GetOriginInfoRequest(code="not a code"), timeout=10)

    def __enter__(self) -> SteadyScans:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def run(prometheus_binary: str, work: Path) -> list[tuple[str, bool, str]]:
    metrics_port, prometheus_port = free_port(), free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in sorted((MONITORING / "rules").glob("*.yml"))],
        "scrape_configs": [{"job_name": JOB,
                            "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
    }
    (work / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    processes: list[subprocess.Popen[bytes]] = []
    try:
        platform, client = start_all_in_one(work, metrics_port=metrics_port)
        processes.append(platform)
        grpc_address = client.address
        processes.append(subprocess.Popen(
            [prometheus_binary, f"--config.file={work / 'prometheus.yml'}",
             f"--storage.tsdb.path={work / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prometheus_port}"],
            stdout=(work / "prometheus.log").open("wb"), stderr=subprocess.STDOUT))
        server = Prometheus(f"http://127.0.0.1:{prometheus_port}")
        wait_for("Prometheus ready", server.ready, 60)
        wait_for("Prometheus scraping the platform",
                 lambda: server.vector(f'up{{job="{JOB}"}} == 1'), 60)
        with SteadyScans(grpc_address):
            scan_unknown_codes(grpc_address)
            return checks(server)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def checks(server: Prometheus) -> list[tuple[str, bool, str]]:
    results: list[tuple[str, bool, str]] = []

    def firing() -> list[dict[str, str]]:
        return [series["metric"] for series in server.vector('ALERTS{alertstate="firing"}')]

    def counterfeit_alerts() -> list[dict[str, str]]:
        found = firing()
        names = {alert["alertname"] for alert in found}
        wanted = {"AgriTraceCounterfeitSuspected", "AgriTraceCounterfeitSuspectedNetwork"}
        return found if wanted <= names else []

    try:
        alerts = wait_for("both counterfeit alerts firing", counterfeit_alerts, 60)
    except TimeoutError as error:
        alerts = firing()
        results.append(("counterfeit alerts fire", False, f"{error}; firing: {alerts}"))
    else:
        by_name = {alert["alertname"]: alert for alert in alerts}
        county = by_name["AgriTraceCounterfeitSuspected"]
        results.append((
            "AgriTraceCounterfeitSuspected fires for the county's province",
            county.get("place") == COUNTY and county.get("province") == COUNTY[:2]
            and county.get("tier") == "provincial", str(county)))
        network = by_name["AgriTraceCounterfeitSuspectedNetwork"]
        results.append(("AgriTraceCounterfeitSuspectedNetwork fires for the network",
                        network.get("place") == "network" and network.get("tier") == "national",
                        str(network)))
    others = sorted({alert["alertname"] for alert in alerts} - {
        "AgriTraceCounterfeitSuspected", "AgriTraceCounterfeitSuspectedNetwork"})
    results.append(("no other alert fires", not others, ", ".join(others)))

    scans = '{grpc_service="agritrace.query.v1.QueryService", grpc_method="GetOriginInfo"}'
    for name, expr in (
            ("consumer scans per second", f"sum(agritrace:grpc_server_handled:rate5m{scans}) > 0"),
            ("consumer scan p99", f"agritrace:grpc_server_handling_seconds:p99_5m{scans} > 0")):
        try:
            found = wait_for(f"recording rule: {name}", functools.partial(server.vector, expr),
                             30)
            results.append((f"recording rule: {name}", True, str(found)))
        except TimeoutError as error:
            results.append((f"recording rule: {name}", False, str(error)))

    groups = server.get("/api/v1/rules")["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    broken = [f"{rule['name']}: {rule.get('lastError')}" for rule in rules
              if rule.get("health") != "ok"]
    loaded = len(rules)
    expected = sum(len(group["rules"]) for path in (MONITORING / "rules").glob("*.yml")
                   for group in _groups(path))
    results.append((f"every rule loaded and evaluates without error ({loaded})",
                    not broken and loaded == expected, "; ".join(broken)))
    return results


def _groups(path: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load(path.read_text())["groups"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", required=True, help="the prometheus binary")
    parser.add_argument("--keep-logs", type=Path, help="copy the processes' logs here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agritrace-live-") as tmp:
        work = Path(tmp)
        try:
            results = run(args.prometheus, work)
        except (TimeoutError, RuntimeError) as error:
            results = [("the platform and Prometheus start", False, str(error))]
        if args.keep_logs:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for log in work.glob("*.log"):
                shutil.copy(log, args.keep_logs / log.name)
        failed = [result for result in results if not result[1]]
        for name, ok, detail in results:
            print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"))
        if failed and not args.keep_logs:
            for log in sorted(work.glob("*.log")):
                print(f"--- {log.name} (last lines) ---")
                print("\n".join(log.read_text(errors="replace").splitlines()[-15:]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
