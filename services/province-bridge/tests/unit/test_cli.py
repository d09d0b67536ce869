"""`python -m agritrace_bridge simulate` as an operator runs it: prints its URL and key, serves,
takes fault changes from `faults`, and stops cleanly on SIGTERM. One process is started (an
interpreter start costs seconds); the `faults` command and refusals run in this process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from agritrace_bridge.entrypoints.cli import main

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def test_simulate_serves_takes_fault_changes_and_stops_on_sigterm(
        capsys: pytest.CaptureFixture[str]) -> None:
    path = os.pathsep.join([str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")])
    process = subprocess.Popen(
        [sys.executable, "-m", "agritrace_bridge", "simulate", "--province", "37",
         "--subjects", "120", "--seed", "1", "--port", "0", "--shared-with", "11",
         "--shared", "20", "--initial-records", "15", "--latency-ms", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=os.environ | {"PYTHONPATH": path, "AGRITRACE_SIMULATOR_API_KEY": "cli-key"})
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert process.stdout.readline().strip() == "api_key=cli-key"
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer cli-key"}) as http:
            page = http.get("/v1/subjects", params={"page_size": 1000}).json()
            assert page["total_size"] == 120 and len(page["subjects"]) == 120
            assert len(http.get("/v1/trace-records").json()["records"]) == 15
            assert main(["faults", url, "--api-key", "cli-key", "--fail-every", "2"]) == 0
            assert '"fail_every":2' in capsys.readouterr().out.replace(" ", "")
            statuses = [http.get("/v1/health").status_code for _ in range(4)]
            assert statuses == [200, 503, 200, 503]  # API requests 3 to 6
            assert http.get("/admin/faults").json()["latency_ms"] == 1  # kept from the start
        assert main(["faults", url, "--api-key", "wrong", "--down"]) == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_impossible_options_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--province", "37", "--shared", "5"]) == 2
    assert "--shared-with" in capsys.readouterr().err
    assert main(["simulate", "--province", "99"]) == 2
    with pytest.raises(SystemExit):
        main(["simulate", "--province", "37", "--fail-status", "418"])
