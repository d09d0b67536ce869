"""What the benchmark runs against: a throwaway PostgreSQL database and a real registry
server process (`python -m agritrace_registry migrate`, then `serve`), or the all-in-one
platform process (`start_platform`: sso, registry, coding and flow) with the administrator
logged in and subjects registered. Both are removed on every way out: `close()` is called
from try/finally and from atexit, and is idempotent."""

from __future__ import annotations

import atexit
import base64
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg import sql

from agritrace.registry.v1 import registry_pb2 as rpb
from agritrace.registry.v1 import registry_pb2_grpc
from agritrace.sso.v1 import sso_pb2, sso_pb2_grpc
from agritrace_kernel.ports import free_port
from agritrace_testing.platform_client import credit_code

ADMIN_CONNINFO = os.environ.get(
    "BENCH_ADMIN_CONNINFO", "postgresql://postgres@127.0.0.1:5432/test"
)
ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench-results"
Metadata = tuple[tuple[str, str], ...]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ThrowawayDatabase:
    """`CREATE DATABASE agritrace_bench_<pid>` now, `DROP DATABASE ... WITH (FORCE)` at the
    end (the registry's schema is always "registry", so a database of its own isolates it)."""

    def __init__(self, admin_conninfo: str = ADMIN_CONNINFO, suffix: str = "") -> None:
        self.admin = admin_conninfo
        self.name = f"agritrace_bench_{os.getpid()}{suffix}"
        info = psycopg.conninfo.conninfo_to_dict(admin_conninfo)
        info["dbname"] = self.name
        self.conninfo = psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]
        host, port = info.get("host", "127.0.0.1"), info.get("port", 5432)
        user = info.get("user", "postgres")
        self.sqlalchemy_url = f"postgresql+psycopg://{user}@{host}:{port}/{self.name}"
        self._created = False

    def create(self) -> None:
        atexit.register(self.drop)
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(self.name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self._created = True

    def drop(self) -> None:
        if not self._created:
            return
        self._created = False
        try:
            with psycopg.connect(self.admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.name)))
        except psycopg.Error as error:
            log(f"warning: could not drop database {self.name}: {error}")

    def scalar(self, query: str) -> int:
        with psycopg.connect(self.conninfo) as conn:
            row = conn.execute(query).fetchone()
            return int(row[0]) if row else 0


class RegistryServer:
    """A `python -m agritrace_registry serve` process on a free port, event bus in-process
    (no relay in a standalone server: events stay in the outbox). `module` and `serve_args`
    run another server the same way, e.g. the all-in-one platform (`module=
    "agritrace_platform", serve_args=()`: it takes no command)."""

    def __init__(self, database_url: str, log_path: Path, *, max_workers: int | None = None,
                 pii_key: str | None = None, module: str = "agritrace_registry",
                 extra_env: dict[str, str] | None = None,
                 serve_args: tuple[str, ...] = ("serve",)) -> None:
        self.module = module
        self.serve_args = serve_args
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Replicas of one registry must share the key that protects personal data.
        self.pii_key = pii_key or base64.b64encode(secrets.token_bytes(32)).decode()
        self.log_path = log_path
        self.env = {
            **os.environ,
            "AGRITRACE_DATABASE_URL": database_url,
            "AGRITRACE_PII_KEY": self.pii_key,
            "AGRITRACE_GRPC_ADDRESS": self.address,
            "AGRITRACE_METRICS_PORT": "0",
            "AGRITRACE_EVENT_BUS": "inprocess",
            "AGRITRACE_SHUTDOWN_GRACE_SECONDS": "2",
            "AGRITRACE_LOG_FORMAT": "text",
            "AGRITRACE_LOG_LEVEL": "INFO",
            **(extra_env or {}),
        }
        # Unset: the service's own default, as deployed.
        if max_workers is not None:
            self.env["AGRITRACE_GRPC_MAX_WORKERS"] = str(max_workers)
        self.env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def run(self, command: str) -> None:
        """A one-off command of the service (migrate, bootstrap-admin, ...)."""
        result = subprocess.run(
            [sys.executable, "-m", self.module, command],
            env=self.env, capture_output=True, timeout=120, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{command} failed:\n{result.stderr.decode(errors='replace')}")

    def migrate(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [sys.executable, "-m", self.module, "migrate"],
            env=self.env, capture_output=True, timeout=120, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"migrate failed:\n{result.stderr.decode(errors='replace')}")

    def start(self) -> None:
        atexit.register(self.stop)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.serve_args],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def wait_serving(self, timeout: float = 60.0) -> float:
        """Polls grpc.health.v1 until the overall status is SERVING; returns seconds waited."""
        started = time.perf_counter()
        deadline = started + timeout
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.perf_counter() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"{self.module} server exited early:\n{self.log_tail()}")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return time.perf_counter() - started
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"{self.module} not SERVING after {timeout:.0f} s:\n"
                           f"{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None


# -- the all-in-one platform ---------------------------------------------------------------------


@dataclass
class Platform:
    """`python -m agritrace_platform` (sso + registry + coding + flow + query in one process) on a
    throwaway database, the administrator's token, and the subject registered at start-up."""

    server: RegistryServer
    credentials: Metadata  # the administrator's bearer token
    subject_id: str
    province: str  # the subject's
    data_dir: tempfile.TemporaryDirectory[str]

    @property
    def pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid

    def register_subject(self, county: str, name: str) -> str:
        """Registers one more enterprise in division `county`; returns its subject id."""
        with grpc.insecure_channel(self.server.address) as channel:
            return _register(channel, self.credentials, county, name)

    def stop(self) -> None:
        self.server.stop()
        self.data_dir.cleanup()


def _register(channel: grpc.Channel, credentials: Metadata, county: str, name: str) -> str:
    registry = registry_pb2_grpc.RegistryServiceStub(channel)  # type: ignore[no-untyped-call]
    return str(registry.RegisterSubject(rpb.RegisterSubjectRequest(
        request_id=f"bench-{uuid.uuid4().hex}", registration=rpb.SubjectRegistration(
            kind=rpb.SUBJECT_KIND_ENTERPRISE, name=name, division_code=county,
            credit_code=credit_code(county))),
        metadata=credentials, timeout=30).subject.subject_id)


def start_platform(db: ThrowawayDatabase, county: str, subject_name: str, *, label: str,
                   log_name: str = "platform-server.log") -> Platform:
    """The all-in-one platform on `db` (it migrates every service on start-up and creates its
    administrator), logged in as the administrator, with one enterprise registered in
    division `county`. `label` prefixes the progress lines; the server log goes to
    bench-results/`log_name`."""
    password = secrets.token_urlsafe(18)
    data_dir = tempfile.TemporaryDirectory(prefix="agritrace-bench-")
    server = RegistryServer(
        db.sqlalchemy_url, RESULTS_DIR / log_name, module="agritrace_platform",
        serve_args=(), extra_env={"AGRITRACE_ADMIN_PASSWORD": password,
                                  "AGRITRACE_DATA_DIR": data_dir.name})
    server.start()
    try:
        waited = server.wait_serving(timeout=180.0)
        log(f"[{label}] platform SERVING on {server.address} after {waited:.1f} s (log: "
            f"{server.log_path.relative_to(ROOT)})")
        with grpc.insecure_channel(server.address) as channel:
            sso = sso_pb2_grpc.SsoServiceStub(channel)  # type: ignore[no-untyped-call]
            login = sso.Login(sso_pb2.LoginRequest(username="admin", password=password))
            credentials = (("authorization", f"Bearer {login.tokens.access_token}"),)
            subject_id = _register(channel, credentials, county, subject_name)
    except BaseException:
        server.stop()
        data_dir.cleanup()
        raise
    return Platform(server, credentials, subject_id, county[:2], data_dir)


# -- microservices mode ------------------------------------------------------------------------

AMQP_URI = os.environ.get("BENCH_AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


def wait_metrics(port: int, process: subprocess.Popen[bytes] | None, timeout: float = 90.0
                 ) -> float:
    """Waits until a worker's /metrics answers (workers serve no gRPC health); seconds waited."""
    import urllib.request

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"worker exited early with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1):
                return time.perf_counter() - started
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"no /metrics on port {port} after {timeout:.0f} s")


def scrape_metrics(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


@dataclass
class Microservices:
    """sso and the chosen services each in its own process on one throwaway database (one
    schema each), events through RabbitMQ, caches in Redis: the deployment's shape. `servers`
    by name ("registry", "flow", "query", "query-worker", ...); the administrator's token."""

    servers: dict[str, RegistryServer]
    credentials: Metadata
    sso_password: str  # the first administrator's

    def address(self, name: str) -> str:
        return self.servers[name].address

    def metrics_port(self, name: str) -> int:
        return int(self.servers[name].env["AGRITRACE_METRICS_PORT"])

    def pid(self, name: str) -> int:
        process = self.servers[name].process
        assert process is not None
        return process.pid

    def new_account(self, username: str, kind: Any, jurisdiction: str = "",
                    roles: tuple[Any, ...] = ()) -> Metadata:
        """A new sso account (created by the administrator), signed in: its credentials."""
        password = secrets.token_urlsafe(18)
        with grpc.insecure_channel(self.address("sso")) as channel:
            sso = sso_pb2_grpc.SsoServiceStub(channel)  # type: ignore[no-untyped-call]
            sso.CreateAccount(sso_pb2.CreateAccountRequest(
                request_id=f"bench-{username}", password=password,
                account=sso_pb2.Account(username=username, display_name=username, kind=kind,
                                        jurisdiction=jurisdiction, roles=roles)),
                metadata=self.credentials, timeout=30)
            login = sso.Login(sso_pb2.LoginRequest(username=username, password=password),
                              timeout=30)
        return (("authorization", f"Bearer {login.tokens.access_token}"),)

    def register_subject(self, county: str, name: str) -> str:
        with grpc.insecure_channel(self.address("registry")) as channel:
            return _register(channel, self.credentials, county, name)

    def stop(self) -> None:
        for server in reversed(list(self.servers.values())):
            server.stop()


def start_microservices(db: ThrowawayDatabase, services: tuple[str, ...], *, amqp_uri: str,
                        redis_url: str, label: str,
                        env_overrides: dict[str, dict[str, str]] | None = None
                        ) -> Microservices:
    """Migrates sso and `services` (of registry, coding, flow, query) into `db`, starts sso
    with its first administrator and a service account per service, then each service's
    server (and the query worker when "query" is among them), as the integration tests'
    microservices platform does. Logs go to bench-results/<label>-<name>.log.
    `env_overrides`: more environment for some processes, by name (to try a setting)."""
    admin_password, service_password = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    sso = RegistryServer(db.sqlalchemy_url, RESULTS_DIR / f"{label}-sso.log",
                         module="agritrace_sso",
                         extra_env={"AGRITRACE_ADMIN_PASSWORD": admin_password})
    servers: dict[str, RegistryServer] = {"sso": sso}
    common = {"AGRITRACE_EVENT_BUS": "rabbitmq", "AGRITRACE_AMQP_URI": amqp_uri,
              "AGRITRACE_REDIS_URL": redis_url, "AGRITRACE_SSO_ADDRESS": sso.address,
              "AGRITRACE_SERVICE_PASSWORD": service_password}
    names = [*services, *(("query-worker",) if "query" in services else ())]
    for name in names:
        module = "agritrace_" + name.removesuffix("-worker")
        servers[name] = RegistryServer(
            db.sqlalchemy_url, RESULTS_DIR / f"{label}-{name}.log", module=module,
            pii_key=sso.pii_key, serve_args=("worker",) if name.endswith("-worker")
            else ("serve",),
            extra_env={**common, "AGRITRACE_SERVICE_USERNAME": f"svc-{name.split('-')[0]}",
                       "AGRITRACE_METRICS_PORT": str(free_port())})
    addresses = {f"AGRITRACE_{name.upper()}_ADDRESS": servers[name].address
                 for name in ("registry", "coding", "flow") if name in servers}
    if "coding" not in servers:  # flow dials coding only for coded goods
        addresses["AGRITRACE_CODING_ADDRESS"] = f"127.0.0.1:{free_port()}"
    for name in names:
        servers[name].env.update(addresses)
        servers[name].env.update((env_overrides or {}).get(name, {}))
    started = time.perf_counter()
    try:
        # Each migration is its own Python process: run them side by side.
        with ThreadPoolExecutor(len(services) + 1) as pool:
            def sso_ready() -> None:
                sso.migrate()
                sso.run("bootstrap-admin")

            done = [pool.submit(sso_ready)] + [pool.submit(servers[name].migrate)
                                               for name in services]
            for future in done:
                future.result()
        log(f"[{label}] migrated sso, {', '.join(services)} in {time.perf_counter() - started:.1f}"
            " s; starting sso")
        sso.start()
        sso.wait_serving(timeout=120.0)
        with grpc.insecure_channel(sso.address) as channel:
            stub = sso_pb2_grpc.SsoServiceStub(channel)  # type: ignore[no-untyped-call]
            admin = stub.Login(sso_pb2.LoginRequest(username="admin", password=admin_password))
            credentials = (("authorization", f"Bearer {admin.tokens.access_token}"),)
            for name in services:
                stub.CreateAccount(sso_pb2.CreateAccountRequest(
                    request_id=f"svc-{name}", password=service_password,
                    account=sso_pb2.Account(username=f"svc-{name}", display_name=name,
                                            kind=sso_pb2.ACCOUNT_KIND_SERVICE)),
                    metadata=credentials)
        for name in names:
            servers[name].start()
        for name in names:
            server = servers[name]
            if name.endswith("-worker"):
                waited = wait_metrics(int(server.env["AGRITRACE_METRICS_PORT"]), server.process)
                log(f"[{label}] {name} up (metrics on :{server.env['AGRITRACE_METRICS_PORT']}) "
                    f"after {waited:.1f} s")
            else:
                waited = server.wait_serving(timeout=120.0)
                log(f"[{label}] {name} SERVING on {server.address} after {waited:.1f} s")
    except BaseException:
        for server in reversed(list(servers.values())):
            server.stop()
        raise
    return Microservices(servers, credentials, admin_password)

