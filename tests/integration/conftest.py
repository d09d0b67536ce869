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
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agritrace.coding.v1 import coding_pb2_grpc
from agritrace.registry.v1 import registry_pb2 as rpb
from agritrace.registry.v1 import registry_pb2_grpc
from agritrace.sso.v1 import sso_pb2, sso_pb2_grpc
from agritrace_kernel.auth.sso_client import BearerTokenClientInterceptor, bearer_metadata
from agritrace_kernel.ports import free_port
from agritrace_registry.domain import identifiers
from agritrace_testing.polling import eventually
from agritrace_testing.postgres import throwaway_database
from agritrace_testing.rabbit import RabbitVhost

pytestmark = pytest.mark.integration

AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_URL = "redis://127.0.0.1:6379/0"
ROOT = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "integration-admin-password"
SERVICE_PASSWORD = "integration-service-password"
USER_PASSWORD = "a long enough password"


def credit_code(county: str) -> str:
    """A valid unified social credit code of an organisation registered in `county`."""
    body = "92" + county + "".join(
        c if c in identifiers.CREDIT_CODE_ALPHABET else "1"
        for c in uuid.uuid4().hex[:9].upper())
    return body + identifiers.credit_code_check_char(body)


@dataclass(frozen=True)
class Account:
    """A signed-in subject operator and the subject it registered (and is bound to)."""

    subject_id: str
    token: str


@dataclass(frozen=True)
class StaticToken:
    value: str

    def token(self) -> str:
        return self.value


def wait_serving(address: str, process: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"process exited early with {process.returncode}")
            try:
                status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if status.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"{address} not SERVING within {timeout}s")


@dataclass
class Platform:
    """A running platform: where to call it and the processes behind it."""

    mode: str
    address: str
    metrics_port: int
    sso_address: str = ""
    coding_address: str = ""
    flow_address: str = ""
    query_address: str = ""
    coding_metrics_port: int = 0  # 0: the platform's metrics_port (all-in-one)
    query_metrics_port: int = 0  # 0: the platform's metrics_port (all-in-one)
    admin_password: str = ADMIN_PASSWORD
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    # Environment of a service's processes, to restart one (e.g. after killing it).
    commands: dict[str, tuple[list[str], dict[str, str], Path]] = field(default_factory=dict)
    channel: grpc.Channel | None = None  # no credentials
    sso_channel: grpc.Channel | None = None
    admin_channel: grpc.Channel | None = None  # every call as the administrator
    admin_token: str = ""
    _extra_channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def registry(self) -> registry_pb2_grpc.RegistryServiceStub:
        """The registry, called as the first administrator."""
        assert self.admin_channel is not None
        return registry_pb2_grpc.RegistryServiceStub(self.admin_channel)

    @property
    def coding(self) -> coding_pb2_grpc.CodingServiceStub:
        """The coding service, called as the first administrator."""
        return coding_pb2_grpc.CodingServiceStub(self.coding_channel_as(self.admin_token))

    def coding_channel_as(self, token: str | None) -> grpc.Channel:
        """A channel to the coding service carrying `token` (None: anonymous)."""
        return self.channel_as(token, self.coding_address)

    def channel_as(self, token: str | None, address: str = "") -> grpc.Channel:
        """A channel to `address` (default: the platform's) carrying `token` (None:
        anonymous); closed when the platform stops."""
        channel = grpc.insecure_channel(address or self.address)
        self._extra_channels.append(channel)
        if token is None:
            return channel
        return grpc.intercept_channel(channel, BearerTokenClientInterceptor(StaticToken(token)))

    def new_operator(self, county: str = "330106", name: str = "",
                     kind: int = rpb.SUBJECT_KIND_ENTERPRISE) -> Account:
        """An operator account that registers its own subject in `county` (sso binds the
        account to it) and signs in again to carry the binding in its token."""
        sso = sso_pb2_grpc.SsoServiceStub(self.sso_channel)
        suffix = uuid.uuid4().hex[:8]
        account = sso.CreateAccount(sso_pb2.CreateAccountRequest(
            request_id=f"op-{suffix}", password=USER_PASSWORD,
            account=sso_pb2.Account(username=f"op-{suffix}", display_name="operator",
                                    kind=sso_pb2.ACCOUNT_KIND_SUBJECT_OPERATOR,
                                    jurisdiction=county)),
            metadata=bearer_metadata(self.admin_token)).account
        login = sso.Login(sso_pb2.LoginRequest(username=f"op-{suffix}", password=USER_PASSWORD))
        registry = registry_pb2_grpc.RegistryServiceStub(self.channel)
        subject = registry.RegisterSubject(rpb.RegisterSubjectRequest(
            request_id=f"reg-{suffix}", registration=rpb.SubjectRegistration(
                kind=kind, name=name or f"绿源农业{suffix}",  # type: ignore[arg-type]
                division_code=county, credit_code=credit_code(county))),
            metadata=bearer_metadata(login.tokens.access_token)).subject
        eventually(lambda: sso.GetAccount(sso_pb2.GetAccountRequest(
            account_id=account.account_id), metadata=bearer_metadata(self.admin_token)
        ).account.subject_id, timeout=30, interval=0.1, what="sso bound the operator")
        token = sso.Refresh(sso_pb2.RefreshRequest(
            refresh_token=login.tokens.refresh_token)).tokens.access_token
        return Account(subject.subject_id, token)

    def new_regulator(self, jurisdiction: str) -> str:
        """A regulator (inspector) of `jurisdiction`, signed in: its access token."""
        sso = sso_pb2_grpc.SsoServiceStub(self.sso_channel)
        username = f"reg-{jurisdiction}-{uuid.uuid4().hex[:6]}"
        sso.CreateAccount(sso_pb2.CreateAccountRequest(
            request_id=username, password=USER_PASSWORD,
            account=sso_pb2.Account(username=username, display_name="inspector",
                                    kind=sso_pb2.ACCOUNT_KIND_REGULATOR,
                                    jurisdiction=jurisdiction,
                                    roles=[sso_pb2.REGULATOR_ROLE_INSPECTOR])),
            metadata=bearer_metadata(self.admin_token))
        return self.login(username, USER_PASSWORD)

    def login(self, username: str, password: str) -> str:
        assert self.sso_channel is not None
        answer = sso_pb2_grpc.SsoServiceStub(self.sso_channel).Login(
            sso_pb2.LoginRequest(username=username, password=password))
        return str(answer.tokens.access_token)

    def connect(self) -> None:
        self.channel = grpc.insecure_channel(self.address)
        self.sso_channel = grpc.insecure_channel(self.sso_address or self.address)
        self.admin_token = token = self.login("admin", self.admin_password)
        self.admin_channel = grpc.intercept_channel(
            self.channel, BearerTokenClientInterceptor(StaticToken(token)))

    def restart(self, name: str, address: str) -> None:
        """Starts a stopped (or killed) process again as it was first started."""
        args, env, log_dir = self.commands[name]
        self.logs[f"{name}-before-restart"] = self.logs[name]
        start(name, args, env, log_dir, self, log_name=f"{name}-restarted")
        wait_serving(address, self.processes[name])

    def stop(self) -> dict[str, int]:
        """SIGTERM every process and return their exit codes (graceful stop gives 0)."""
        for channel in (self.channel, self.sso_channel, *self._extra_channels):
            if channel is not None:
                channel.close()
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
    platform = Platform("microservices", f"127.0.0.1:{port}", metrics_port, env=env,
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
    platform = Platform("all_in_one", f"127.0.0.1:{port}", metrics_port, env=env,
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
