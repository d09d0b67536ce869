"""Real processes for cross-service tests.

`platform` is parametrised over both run modes, so every scenario runs twice:
- microservices: `python -m agritrace_registry migrate`, then `serve` and `worker` processes
  against PostgreSQL (a throwaway database), Redis and RabbitMQ at 127.0.0.1;
- all_in_one: `python -m agritrace_platform` with its embedded defaults in a temp dir.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from agritrace.sso.v1 import sso_pb2, sso_pb2_grpc
from agritrace_kernel.ports import free_port
from agritrace_testing.platform_client import (  # noqa: F401 - tests read them from here
    USER_PASSWORD,
    PlatformClient,
    credit_code,
    wait_serving,
)
from agritrace_testing.postgres import throwaway_database
from agritrace_testing.rabbit import RabbitVhost

pytestmark = pytest.mark.integration

AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_URL = "redis://127.0.0.1:6379/0"
ROOT = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "integration-admin-password"
SERVICE_PASSWORD = "integration-service-password"


@dataclass(kw_only=True)
class Platform(PlatformClient):
    """A running platform: where to call it (PlatformClient) and the processes behind it."""

    mode: str
    metrics_port: int
    admin_password: str = ADMIN_PASSWORD
    coding_metrics_port: int = 0  # 0: the platform's metrics_port (all-in-one)
    query_metrics_port: int = 0  # 0: the platform's metrics_port (all-in-one)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    # Environment of a service's processes, to restart one (e.g. after killing it).
    commands: dict[str, tuple[list[str], dict[str, str], Path]] = field(default_factory=dict)

    def restart(self, name: str, address: str) -> None:
        """Starts a stopped (or killed) process again as it was first started."""
        args, env, log_dir = self.commands[name]
        self.logs[f"{name}-before-restart"] = self.logs[name]
        start(name, args, env, log_dir, self, log_name=f"{name}-restarted")
        wait_serving(address, self.processes[name])

    def stop(self) -> dict[str, int]:
        """SIGTERM every process and return their exit codes (graceful stop gives 0)."""
        self.close_channels()
        codes: dict[str, int] = {}
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                codes[name] = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
        return codes


def start(name: str, args: list[str], env: dict[str, str], log_dir: Path,
          platform: Platform, log_name: str = "") -> subprocess.Popen[bytes]:
    log_path = log_dir / f"{log_name or name}.log"
    process = subprocess.Popen(
        [sys.executable, *args], env=env, cwd=ROOT,
        stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
    )
    platform.processes[name] = process
    platform.logs[name] = log_path
    platform.commands[name] = (args, env, log_dir)
    return process


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    """A throwaway database, dropped afterwards; each service makes its schema in it."""
    with throwaway_database("agritrace_it") as url:
        yield url


def _microservices(tmp: Path, database_url: str, amqp_uri: str) -> Platform:
    """sso first (migrate, first administrator, server), service accounts for the registry,
    coding, flow and query, then the registry (migrate, server, worker), coding and flow
    (migrate, server) and query (migrate, server, worker) authenticating callers against
    sso."""
    sso_port, port, coding_port, flow_port = free_port(), free_port(), free_port(), free_port()
    query_port = free_port()
    common = {
        **os.environ,
        "AGRITRACE_DATABASE_URL": database_url,
        "AGRITRACE_PII_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "AGRITRACE_EVENT_BUS": "rabbitmq",
        "AGRITRACE_AMQP_URI": amqp_uri,
        "AGRITRACE_REDIS_URL": REDIS_URL,
        "AGRITRACE_LOG_FORMAT": "json",
        "AGRITRACE_OUTBOX_POLL_SECONDS": "0.1",
        "AGRITRACE_SSO_ADDRESS": f"127.0.0.1:{sso_port}",
    }
    sso_env = {**common, "AGRITRACE_GRPC_ADDRESS": f"127.0.0.1:{sso_port}",
               "AGRITRACE_METRICS_PORT": str(free_port()),
               "AGRITRACE_ADMIN_PASSWORD": ADMIN_PASSWORD}
    env = {**common, "AGRITRACE_GRPC_ADDRESS": f"127.0.0.1:{port}",
           "AGRITRACE_SERVICE_USERNAME": "svc-registry",
           "AGRITRACE_SERVICE_PASSWORD": SERVICE_PASSWORD}
    metrics_port, worker_metrics = free_port(), free_port()
    coding_metrics = free_port()
    coding_env = {**env, "AGRITRACE_GRPC_ADDRESS": f"127.0.0.1:{coding_port}",
                  "AGRITRACE_SERVICE_USERNAME": "svc-coding",
                  "AGRITRACE_REGISTRY_ADDRESS": f"127.0.0.1:{port}",
                  "AGRITRACE_METRICS_PORT": str(coding_metrics)}
    flow_env = {**env, "AGRITRACE_GRPC_ADDRESS": f"127.0.0.1:{flow_port}",
                "AGRITRACE_SERVICE_USERNAME": "svc-flow",
                "AGRITRACE_REGISTRY_ADDRESS": f"127.0.0.1:{port}",
                "AGRITRACE_CODING_ADDRESS": f"127.0.0.1:{coding_port}",
                "AGRITRACE_METRICS_PORT": str(free_port())}
    query_metrics = free_port()
    query_env = {**env, "AGRITRACE_GRPC_ADDRESS": f"127.0.0.1:{query_port}",
                 "AGRITRACE_SERVICE_USERNAME": "svc-query",
                 "AGRITRACE_REGISTRY_ADDRESS": f"127.0.0.1:{port}",
                 "AGRITRACE_CODING_ADDRESS": f"127.0.0.1:{coding_port}",
                 "AGRITRACE_FLOW_ADDRESS": f"127.0.0.1:{flow_port}",
                 "AGRITRACE_METRICS_PORT": str(query_metrics)}
    platform = Platform(mode="microservices", address=f"127.0.0.1:{port}",
                        metrics_port=metrics_port, env=env,
                        sso_address=f"127.0.0.1:{sso_port}",
                        coding_address=f"127.0.0.1:{coding_port}",
                        flow_address=f"127.0.0.1:{flow_port}",
                        query_address=f"127.0.0.1:{query_port}",
                        coding_metrics_port=coding_metrics,
                        query_metrics_port=query_metrics)
    for command in (["agritrace_sso", "migrate"], ["agritrace_sso", "bootstrap-admin"],
                    ["agritrace_registry", "migrate"], ["agritrace_coding", "migrate"],
                    ["agritrace_flow", "migrate"], ["agritrace_query", "migrate"]):
        subprocess.run([sys.executable, "-m", *command], env=sso_env, cwd=ROOT, check=True,
                       capture_output=True)
    sso = start("sso-server", ["-m", "agritrace_sso", "serve"], sso_env, tmp, platform)
    start("sso-worker", ["-m", "agritrace_sso", "worker"],
          {**sso_env, "AGRITRACE_METRICS_PORT": str(free_port())}, tmp, platform)
    wait_serving(platform.sso_address, sso)
    with grpc.insecure_channel(platform.sso_address) as channel:
        stub = sso_pb2_grpc.SsoServiceStub(channel)
        admin = stub.Login(sso_pb2.LoginRequest(username="admin", password=ADMIN_PASSWORD))
        for service in ("registry", "coding", "flow", "query"):
            stub.CreateAccount(sso_pb2.CreateAccountRequest(
                request_id=f"svc-{service}", password=SERVICE_PASSWORD,
                account=sso_pb2.Account(username=f"svc-{service}",
                                        display_name=f"{service} service",
                                        kind=sso_pb2.ACCOUNT_KIND_SERVICE)),
                metadata=(("authorization", f"Bearer {admin.tokens.access_token}"),))
    start("registry-server", ["-m", "agritrace_registry", "serve"],
          {**env, "AGRITRACE_METRICS_PORT": str(metrics_port)}, tmp, platform)
    start("registry-worker", ["-m", "agritrace_registry", "worker"],
          {**env, "AGRITRACE_METRICS_PORT": str(worker_metrics)}, tmp, platform)
    start("coding-server", ["-m", "agritrace_coding", "serve"], coding_env, tmp, platform)
    start("flow-server", ["-m", "agritrace_flow", "serve"], flow_env, tmp, platform)
    start("query-server", ["-m", "agritrace_query", "serve"], query_env, tmp, platform)
    start("query-worker", ["-m", "agritrace_query", "worker"],
          {**query_env, "AGRITRACE_METRICS_PORT": str(free_port())}, tmp, platform)
    return platform


def _all_in_one(tmp: Path) -> Platform:
    port, metrics_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AGRITRACE_")},
        "AGRITRACE_DATA_DIR": str(tmp / "var"),
        "AGRITRACE_GRPC_ADDRESS": f"127.0.0.1:{port}",
        "AGRITRACE_METRICS_PORT": str(metrics_port),
        "AGRITRACE_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    platform = Platform(mode="all_in_one", address=f"127.0.0.1:{port}",
                        metrics_port=metrics_port, env=env,
                        query_address=f"127.0.0.1:{port}")
    start("platform", ["-m", "agritrace_platform"], env, tmp, platform)
    return platform


@pytest.fixture(scope="module", params=["microservices", "all_in_one"])
def platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp(request.param)
    # Workers' queues are durable and named per service: a vhost of the module's own keeps
    # other runs' events out of them (and theirs out of others').
    vhost = RabbitVhost(AMQP_URI, "agritrace_it")
    if request.param == "microservices":
        database = request.getfixturevalue("postgres_database")
        running = _microservices(tmp, database, vhost.create())
    else:
        running = _all_in_one(tmp)
    try:
        server = running.processes.get("registry-server") or running.processes["platform"]
        wait_serving(running.address, server)
        for name, address in (("coding-server", running.coding_address),
                              ("flow-server", running.flow_address),
                              ("query-server", running.query_address)):
            if name in running.processes:
                wait_serving(address, running.processes[name])
        running.connect()
        yield running
    except BaseException:
        running.stop()
        for name, path in running.logs.items():
            sys.stderr.write(f"--- {name} log ---\n{path.read_text(errors='replace')[-4000:]}\n")
        raise
    else:
        codes = running.stop()
        assert all(code == 0 for code in codes.values()), f"unclean stop: {codes}"
    finally:
        vhost.drop()
