"""A simulated province for tests and benchmarks: `python -m agritrace_bridge simulate` as a
process, its admin API (/admin: data and faults while it runs), and the province's platform
entered in sso's directory with a platform client account for its bridge."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from agritrace.sso.v1 import sso_pb2, sso_pb2_grpc


@dataclass
class Simulator:
    """`python -m agritrace_bridge simulate` as a process: its URL and bridge key."""

    process: subprocess.Popen[bytes]
    url: str
    api_key: str

    def admin(self, method: str, path: str, body: dict[str, Any]) -> Any:
        """A call of the simulator's /admin API (e.g. POST /admin/trace-records); its JSON."""
        response = httpx.request(method, f"{self.url}{path}", json=body, timeout=10,
                                 headers={"Authorization": f"Bearer {self.api_key}"})
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_simulator(province: str, log: Path, *args: str, cwd: Path | None = None
                    ) -> Simulator:
    """Starts a simulator of `province` on a free port (more `simulate` options in `args`;
    its log in `log`) and reads the URL and key it prints first."""
    process = subprocess.Popen(
        [sys.executable, "-m", "agritrace_bridge", "simulate", "--province", province,
         "--port", "0", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=log.open("wb"))
    assert process.stdout is not None
    url = process.stdout.readline().decode().strip()
    key = process.stdout.readline().decode().strip().removeprefix("api_key=")
    if not url.startswith("http"):
        process.kill()
        process.wait(timeout=5)
        raise RuntimeError(f"the simulator did not start: {log.read_text()[-2000:]}")
    return Simulator(process, url, key)


def register_province(sso: sso_pb2_grpc.SsoServiceStub, admin: tuple[tuple[str, str], ...],
                      province: str, stage: int, password: str) -> tuple[str, str]:
    """The province's platform in sso's directory at `stage`, and a platform client account
    (jurisdiction: the province) for its bridge, called as an administrator: (platform_id,
    username)."""
    platform_id = f"province-{province}"
    sso.RegisterPlatform(sso_pb2.RegisterPlatformRequest(platform=sso_pb2.Platform(
        platform_id=platform_id, province=province, name=f"省级追溯平台 {province}",
        url=f"https://trace{province}.example.gov.cn")), metadata=admin, timeout=30)
    sso.UpdatePlatform(sso_pb2.UpdatePlatformRequest(
        platform=sso_pb2.Platform(platform_id=platform_id, stage=stage),  # type: ignore[arg-type]
        update_mask={"paths": ["stage"]}), metadata=admin, timeout=30)
    username = f"bridge-{province}"
    sso.CreateAccount(sso_pb2.CreateAccountRequest(
        request_id=username, password=password, account=sso_pb2.Account(
            username=username, display_name=f"bridge of {province}",
            kind=sso_pb2.ACCOUNT_KIND_PLATFORM_CLIENT, jurisdiction=province)),
        metadata=admin, timeout=30)
    return platform_id, username
