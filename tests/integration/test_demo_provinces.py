"""`make run PROVINCES="37 11"`: the launcher (`python -m agritrace_platform.provinces`) starts
the all-in-one platform, a simulated platform and a bridge per province, onboarded in sso as a
real province is; each bridge imports its province's subjects into the registry; SIGTERM
stops every child, and a second start on the same data directory finds its bridge's data."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from agritrace.bridge.v1 import bridge_pb2 as bpb
from agritrace.bridge.v1 import bridge_pb2_grpc
from agritrace.registry.v1 import registry_pb2 as rpb
from agritrace.registry.v1 import registry_pb2_grpc
from agritrace.sso.v1 import sso_pb2, sso_pb2_grpc
from agritrace_kernel.auth.sso_client import bearer_metadata
from tests.integration.conftest import ADMIN_PASSWORD, ROOT, free_port, wait_serving

pytestmark = pytest.mark.integration

_PROVINCE_BLOCK = re.compile(
    r"^  province (\d{2})\n    simulator  (\S+) .*\n    bridge     (\S+) ", re.MULTILINE)


@dataclass
class Launch:
    """A running `python -m agritrace_platform.provinces`, its output read as it comes."""

    process: subprocess.Popen[bytes]
    platform_address: str
    stderr: Path
    lines: list[str] = field(default_factory=list)

    def read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.append(raw.decode(errors="replace"))

    def ready(self, timeout: float = 120) -> dict[str, tuple[str, str]]:
        """Waits for the launcher's "Provinces ready" line: {province: (simulator URL, bridge
        address)}."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = "".join(self.lines)
            if "Provinces ready:" in text:
                return {m[1]: (m[2], m[3]) for m in _PROVINCE_BLOCK.finditer(text)}
            assert self.process.poll() is None, self.output()
            time.sleep(0.2)
        raise TimeoutError(f"the provinces were not ready within {timeout}s\n{self.output()}")

    def children(self) -> dict[int, tuple[str, str]]:
        """The launcher's child processes: {pid: (command line, start time)}."""
        found = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and _parent(entry) == self.process.pid:
                found[int(entry.name)] = (_command_line(entry), _start_time(entry))
        return found

    def output(self) -> str:
        logs = sorted((self.stderr.parent / "var" / "logs").glob("*.log"))
        return "".join(self.lines) + self.stderr.read_text(errors="replace")[-4000:] + "".join(
            f"--- {log.name} ---\n{log.read_text(errors='replace')[-3000:]}" for log in logs)


def _stat_fields(entry: Path) -> list[str]:
    # The command name (field 2) may hold spaces; the fields after it are plain.
    return (entry / "stat").read_text().rpartition(")")[2].split()


def _parent(entry: Path) -> int:
    try:
        return int(_stat_fields(entry)[1])
    except (FileNotFoundError, ProcessLookupError):
        return 0


def _start_time(entry: Path) -> str:
    try:
        return _stat_fields(entry)[19]
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _command_line(entry: Path) -> str:
    try:
        return (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


@contextmanager
def launched(tmp: Path, *args: str) -> Iterator[Launch]:
    """The launcher as `make run PROVINCES=...` starts it, on free ports and a data directory
    under `tmp`; SIGTERM when done (the test asserts on the stop itself)."""
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AGRITRACE_")},
           "AGRITRACE_DATA_DIR": str(tmp / "var"),
           "AGRITRACE_GRPC_ADDRESS": f"127.0.0.1:{port}",
           "AGRITRACE_METRICS_PORT": str(free_port()),
           "AGRITRACE_ADMIN_PASSWORD": ADMIN_PASSWORD}
    stderr = tmp / f"launcher-{time.monotonic_ns()}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "agritrace_platform.provinces", *args], env=env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=stderr.open("wb"))
    launch = Launch(process, f"127.0.0.1:{port}", stderr)
    reader = threading.Thread(target=launch.read, daemon=True)
    reader.start()
    try:
        yield launch
    except BaseException:
        sys.stderr.write(launch.output())
        raise
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(timeout=5)


def _stop_and_check(launch: Launch) -> None:
    """SIGTERM to the launcher: it exits cleanly (0: every child stopped with 0) and none of
    its children is left running."""
    children = launch.children()
    launch.process.send_signal(signal.SIGTERM)
    assert launch.process.wait(timeout=90) == 0, launch.output()
    left = [(pid, command) for pid, (command, started) in children.items()
            if _start_time(Path(f"/proc/{pid}")) == started]
    assert not left, left


def _admin(address: str) -> tuple[tuple[str, str], ...]:
    with grpc.insecure_channel(address) as channel:
        login = sso_pb2_grpc.SsoServiceStub(channel).Login(  # type: ignore[no-untyped-call]
            sso_pb2.LoginRequest(username="admin", password=ADMIN_PASSWORD))
    return bearer_metadata(login.tokens.access_token)


def _bridge(address: str) -> Any:
    return bridge_pb2_grpc.ProvinceBridgeServiceStub(  # type: ignore[no-untyped-call]
        grpc.insecure_channel(address))


def _imported(bridge: Any, admin: tuple[tuple[str, str], ...], request_id: str) -> Any:
    """Starts the bridge's historical import and waits for the run to complete."""
    run = bridge.StartImport(bpb.StartImportRequest(request_id=request_id), metadata=admin).run
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        latest = bridge.GetStatus(bpb.GetStatusRequest(), metadata=admin).latest_import
        assert latest.import_id == run.import_id
        assert latest.state != bpb.IMPORT_STATE_FAILED, latest.last_error
        if latest.state == bpb.IMPORT_STATE_COMPLETED:
            return latest
        time.sleep(0.2)
    raise TimeoutError(f"import {run.import_id} did not complete")


def _subjects_in(address: str, admin: tuple[tuple[str, str], ...], prefix: str) -> int:
    count, token = 0, ""
    with grpc.insecure_channel(address) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)  # type: ignore[no-untyped-call]
        while True:
            page = registry.ListSubjects(rpb.ListSubjectsRequest(
                division_prefix=prefix, page_size=1000, page_token=token), metadata=admin)
            count += len(page.subjects)
            token = page.next_page_token
            if not token:
                return count


def test_simulated_provinces_import_through_their_bridges_and_stop_with_the_launcher(
        tmp_path: Path) -> None:
    # 40 subjects a province, of which 5 both hold: they lie in counties of 11 (the lower
    # code of the pair), so the registry ends with 35 in 37 and 35 + 5 in 11.
    with launched(tmp_path, "37", "11", "--subjects", "40", "--shared", "5") as launch:
        provinces = launch.ready()
        assert set(provinces) == {"37", "11"}
        commands = [command for command, _ in launch.children().values()]
        assert sum("agritrace_platform" in c for c in commands) == 1, commands
        for code in provinces:
            assert sum(f"simulate --province {code}" in c for c in commands) == 1, commands
        assert sum("agritrace_bridge serve" in c for c in commands) == 2, commands
        wait_serving(launch.platform_address, launch.process)
        admin = _admin(launch.platform_address)
        bridges = {code: _bridge(address) for code, (_, address) in provinces.items()}
        for code, bridge in bridges.items():
            wait_serving(provinces[code][1], launch.process)
            status = bridge.GetStatus(bpb.GetStatusRequest(), metadata=admin)
            assert (status.province, status.adapter, status.onboarding_stage) == (
                code, "rest", "TESTING")

        first = _imported(bridges["37"], admin, "demo-37")
        second = _imported(bridges["11"], admin, "demo-11")

        assert (first.total_size, first.created, first.rejected) == (40, 40, 0)
        assert (second.total_size, second.created, second.merged) == (40, 35, 5)
        assert _subjects_in(launch.platform_address, admin, "37") == 35
        assert _subjects_in(launch.platform_address, admin, "11") == 40
        _stop_and_check(launch)

    # Started again on the same data: onboarding is repeated (the account gets a new
    # password the bridge signs in with) and the bridge finds its own database.
    with launched(tmp_path, "37", "--subjects", "40") as launch:
        bridge = _bridge(launch.ready()["37"][1])
        admin = _admin(launch.platform_address)
        status = bridge.GetStatus(bpb.GetStatusRequest(), metadata=admin)
        assert status.onboarding_stage == "TESTING"
        assert status.latest_import.import_id == first.import_id
        again = _imported(bridge, admin, "demo-37-again")
        # The registry answers records it has seen with their first outcome, changing nothing.
        assert (again.import_id != first.import_id, again.created) == (True, 40)
        assert _subjects_in(launch.platform_address, admin, "37") == 35
        _stop_and_check(launch)
