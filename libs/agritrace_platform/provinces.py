"""`make run PROVINCES="37 11"`, i.e. `python -m agritrace_platform.provinces 37 11`: the
all-in-one platform and, next to it, for each listed province a simulated provincial platform
(`python -m agritrace_bridge simulate`) and that province's bridge (`python -m agritrace_bridge
serve`), each a process of its own, supervised by this one. SIGINT, SIGTERM or SIGHUP stops
them in the reverse order of their start (each bridge before its simulator, the platform
last); so does any of them exiting on its own.

Each province is onboarded as an administrator onboards a real one: its platform in sso's
directory (`province-NN`, stage TESTING) and a platform-client account `bridge-NN` of the
province, which the bridge signs in with like any bridge. That runs sso's own use cases on
its database before the platform starts (as `python -m agritrace_sso bootstrap-admin` does),
so the launcher need not know the administrator's password, which the platform may have
generated and shown once on an earlier start. The account gets a fresh random password on
every start: no credential is kept on disk."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agritrace_kernel.config import Settings
from agritrace_kernel.ports import free_port
from agritrace_platform.__main__ import platform_settings
from agritrace_registry.domain.identifiers import PROVINCE_CODES
from agritrace_sso import bootstrap as sso_bootstrap
from agritrace_sso.domain.model import (
    Account,
    AccountInput,
    AccountKind,
    Caller,
    OnboardingStage,
    PlatformInput,
)
from agritrace_sso.service_layer.services import SsoService

# A bridge or a simulator has no use for the administrator's password.
_WITHHELD = frozenset({"AGRITRACE_ADMIN_PASSWORD"})
_SIMULATOR_KEY_VARIABLE = "AGRITRACE_SIMULATOR_API_KEY"
# A child that has not stopped this long after SIGTERM is killed.
_STOP_SECONDS = 30.0
# How long the platform and each bridge may take to report SERVING.
_START_SECONDS = 180.0
_ADMINISTRATOR = Caller(account_id="system:province-launcher", kind=AccountKind.OPS_ADMIN)
_PAGE = 100

T = TypeVar("T")


# -- onboarding ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProvinceAccount:
    """A province's platform in the directory and what its bridge signs in with."""

    province: str
    platform_id: str
    stage: str
    username: str
    password: str


def onboard_provinces(settings: Settings, provinces: Sequence[str]) -> list[ProvinceAccount]:
    """Registers each province's platform (stage TESTING) and its bridge's platform-client
    account through sso's use cases, as an administrator would. Idempotent: a platform
    already in the directory keeps its stage (one left APPLIED moves to TESTING); an account
    already there gets a fresh password."""
    sso_bootstrap.migrate(settings)
    # No publisher: the events stay in sso's outbox until the platform's relay sends them.
    app = sso_bootstrap.bootstrap(settings)
    try:
        return [_onboard(app.service, province) for province in provinces]
    finally:
        app.close()


def _onboard(service: SsoService, province: str) -> ProvinceAccount:
    platform_id = f"province-{province}"
    platform = next((p for p in _every(service.list_platforms)
                     if p.platform_id == platform_id), None)
    if platform is None:
        platform = service.register_platform(_ADMINISTRATOR, PlatformInput(
            platform_id=platform_id, province=province, name=f"模拟省级追溯平台 {province}",
            # The directory wants an https address; .invalid says it leads nowhere.
            url=f"https://{platform_id}.simulated.invalid"))
    if platform.stage is OnboardingStage.APPLIED:
        platform = service.update_platform(
            _ADMINISTRATOR, platform_id, PlatformInput(stage=OnboardingStage.TESTING), ["stage"])
    username, password = f"bridge-{province}", secrets.token_urlsafe(24)

    def platform_clients(size: int, token: str) -> tuple[list[Account], str]:
        return service.list_accounts(_ADMINISTRATOR, AccountKind.PLATFORM_CLIENT, size, token)

    account = next((a for a in _every(platform_clients) if a.username == username), None)
    if account is None:
        service.create_account(_ADMINISTRATOR, f"launcher-{username}", AccountInput(
            username=username, display_name=f"bridge of province {province}",
            kind=AccountKind.PLATFORM_CLIENT, jurisdiction=province), password)
    elif account.jurisdiction != province or account.disabled:
        raise RuntimeError(f"account {username} exists but is no enabled platform client of "
                           f"province {province}")
    else:
        service.update_account(_ADMINISTRATOR, account.account_id, AccountInput(),
                               ["password"], password=password)
    return ProvinceAccount(province, platform_id, platform.stage.value, username, password)


def _every(list_page: Callable[[int, str], tuple[list[T], str]]) -> list[T]:
    found: list[T] = []
    token = ""
    while True:
        page, token = list_page(_PAGE, token)
        found.extend(page)
        if not token:
            return found


# -- processes -------------------------------------------------------------------------------


def wait_serving(address: str, process: subprocess.Popen[bytes], stopping: threading.Event,
                 timeout: float = _START_SECONDS) -> bool:
    """Waits for `address`'s gRPC health to answer SERVING. False if `process` exited or a
    stop was asked for first; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None or stopping.is_set():
                return False
            try:
                answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            stopping.wait(0.2)
    raise TimeoutError(f"{address} not SERVING within {timeout:.0f}s")


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


@dataclass
class Supervisor:
    """The launched processes, stopped in the reverse order of their start."""

    children: list[Child] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def spawn(self, name: str, args: Sequence[str], env: Mapping[str, str],
              stdout: IO[bytes] | int | None = None,
              stderr: IO[bytes] | int | None = None) -> subprocess.Popen[bytes]:
        # A process group of its own: Ctrl+C at the terminal reaches this process alone,
        # which then stops each child once and in order (a second signal could cut a child's
        # clean stop short).
        process = subprocess.Popen([sys.executable, *args], env=dict(env), stdout=stdout,
                                   stderr=stderr, process_group=0)
        self.children.append(Child(name, process))
        return process

    def exited(self) -> Child | None:
        """The first child found no longer running."""
        return next((c for c in self.children if c.process.poll() is not None), None)

    def stop_all(self) -> dict[str, int]:
        """SIGTERM to each child, the last started first, each awaited before the next (the
        bridges leave while the platform still answers them); exit codes by name."""
        codes: dict[str, int] = {}
        for child in reversed(self.children):
            process = child.process
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                codes[child.name] = process.wait(timeout=_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                print(f"{child.name} did not stop within {_STOP_SECONDS:.0f}s: killed",
                      file=sys.stderr, flush=True)
                process.kill()
                codes[child.name] = process.wait()
        return codes


# -- the launch ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    provinces: tuple[str, ...]
    subjects: int
    records: int
    record_rate: int
    shared: int
    seed: int


@dataclass
class RunningProvince:
    account: ProvinceAccount
    simulator_url: str
    simulator_key: str
    bridge_address: str
    bridge_metrics_port: int
    logs: tuple[Path, Path]


def _client_host(host: str) -> str:
    """Where a client reaches a server bound to `host`."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "[::]", "::") else host


def _child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in _WITHHELD}, **extra}


def _simulator_args(options: Options, province: str, platform_address: str) -> list[str]:
    args = ["-m", "agritrace_bridge", "simulate", "--province", province, "--port", "0",
            "--subjects", str(options.subjects), "--seed", str(options.seed),
            "--initial-records", str(options.records),
            "--record-rate", str(options.record_rate),
            # The national keys, to verify the tokens sso exchanges for this platform.
            "--sso-address", platform_address]
    # The first two provinces share an overlap set: the same organisations in both.
    first_two = options.provinces[:2]
    if options.shared and len(first_two) == 2 and province in first_two:
        other = first_two[1] if province == first_two[0] else first_two[0]
        args += ["--shared-with", other, "--shared", str(options.shared)]
    return args


def _bridge_environment(account: ProvinceAccount, address: str, metrics_port: int,
                        data_dir: Path, platform_address: str, simulator_url: str,
                        simulator_key: str) -> dict[str, str]:
    """A bridge configured as its province's ops team would: the platform's services at
    `platform_address`, its province's account, the REST adapter pointed at the simulator."""
    return _child_environment({
        "AGRITRACE_GRPC_ADDRESS": address,
        "AGRITRACE_METRICS_PORT": str(metrics_port),
        # The same directory: its own file var/province-bridge-NN.db, the platform's PII key.
        "AGRITRACE_DATA_DIR": str(data_dir),
        "AGRITRACE_MIGRATE_ON_START": "true",
        "AGRITRACE_SSO_ADDRESS": platform_address,
        "AGRITRACE_REGISTRY_ADDRESS": platform_address,
        "AGRITRACE_FLOW_ADDRESS": platform_address,
        "AGRITRACE_SERVICE_USERNAME": account.username,
        "AGRITRACE_SERVICE_PASSWORD": account.password,
        "AGRITRACE_BRIDGE_PROVINCE": account.province,
        "AGRITRACE_BRIDGE_ADAPTER": "rest",
        "AGRITRACE_BRIDGE_ADAPTER_BASE_URL": simulator_url,
        "AGRITRACE_BRIDGE_ADAPTER_API_KEY": simulator_key,
    })


def _start_province(supervisor: Supervisor, options: Options, settings: Settings,
                    account: ProvinceAccount, platform_address: str) -> RunningProvince | None:
    """The province's simulator, then its bridge once the simulator answers; None if a stop
    was asked for or a child failed meanwhile."""
    province = account.province
    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    simulator_log, bridge_log = (log_dir / f"simulator-{province}.log",
                                 log_dir / f"bridge-{province}.log")
    key = secrets.token_urlsafe(24)
    # The key goes by environment, not argv (which `ps` shows to everyone).
    with simulator_log.open("wb") as log:
        simulator = supervisor.spawn(
            f"simulator-{province}", _simulator_args(options, province, platform_address),
            _child_environment({_SIMULATOR_KEY_VARIABLE: key}), stdout=subprocess.PIPE,
            stderr=log)
    assert simulator.stdout is not None
    # `simulate` prints its URL, then its key, once it listens.
    url = simulator.stdout.readline().decode().strip()
    if not url.startswith("http"):
        print(f"the simulator of {province} did not start; see {simulator_log}",
              file=sys.stderr, flush=True)
        return None
    host = settings.grpc_address.rpartition(":")[0]
    port = free_port(_client_host(host))
    metrics_port = free_port() if settings.metrics_port else 0
    with bridge_log.open("wb") as log:
        bridge = supervisor.spawn(
            f"bridge-{province}", ["-m", "agritrace_bridge", "serve"], _bridge_environment(
                account, f"{host}:{port}", metrics_port, settings.data_dir, platform_address,
                url, key), stdout=log, stderr=subprocess.STDOUT)
    address = f"{_client_host(host)}:{port}"
    if not wait_serving(address, bridge, supervisor.stopping):
        return None
    return RunningProvince(account, url, key, address, metrics_port,
                           (simulator_log, bridge_log))


def _announce(provinces: Sequence[RunningProvince]) -> None:
    lines = ["Simulated provinces (each bridge signs in to sso as its province's platform "
             "client)"]
    for running in provinces:
        account = running.account
        metrics = (f"http://127.0.0.1:{running.bridge_metrics_port}/metrics"
                   if running.bridge_metrics_port else "disabled")
        lines += [
            f"  province {account.province}",
            f"    simulator  {running.simulator_url}  (bridge key {running.simulator_key})",
            f"    bridge     {running.bridge_address}  (agritrace.bridge.v1.ProvinceBridge"
            "Service, agritrace.events.v1.EventLogService, health, reflection)",
            f"    metrics    {metrics}",
            f"    directory  {account.platform_id}, stage {account.stage}; account "
            f"{account.username} (platform client)",
            f"    logs       {running.logs[0]}, {running.logs[1]}",
        ]
    first = provinces[0]
    lines += [
        "  try        .venv/bin/agritrace login    # as admin, then (with grpcurl and jq):",
        "             TOKEN=$(jq -r .access_token ~/.config/agritrace/session.json)",
        "             grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" "
        "-d '{\"request_id\":\"demo-1\"}' \\",
        f"               {first.bridge_address} "
        "agritrace.bridge.v1.ProvinceBridgeService/StartImport",
        f"             .venv/bin/agritrace subjects list --division {first.account.province}"
        "   # once GetStatus says COMPLETED",
        "             more: services/province-bridge/docs/bridge.md, section Demo",
        f"Provinces ready: {' '.join(r.account.province for r in provinces)}. "
        "Press Ctrl+C to stop them and the platform."]
    print("\n".join(lines), flush=True)


def launch(options: Options, settings: Settings) -> int:
    supervisor = Supervisor()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        supervisor.stopping.set()

    # SIGHUP too: the children, in groups of their own, do not get the terminal's hang-up.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, request_stop)
    accounts = onboard_provinces(settings, options.provinces)
    host, _, port = settings.grpc_address.rpartition(":")
    platform_address = f"{_client_host(host)}:{port}"
    try:
        # The platform as `make run` starts it, its output on this terminal.
        platform = supervisor.spawn("platform", ["-m", "agritrace_platform"], os.environ)
        if not wait_serving(platform_address, platform, supervisor.stopping):
            return _finish(supervisor)
        running: list[RunningProvince] = []
        for account in accounts:
            started = _start_province(supervisor, options, settings, account, platform_address)
            if started is None:
                return _finish(supervisor)
            running.append(started)
        _announce(running)
        while not supervisor.stopping.wait(0.5):
            if supervisor.exited() is not None:
                break
        return _finish(supervisor)
    except BaseException:
        supervisor.stop_all()
        raise


def _finish(supervisor: Supervisor) -> int:
    """Stops every child. 0 when a stop was asked for and every child stopped cleanly."""
    gone = None if supervisor.stopping.is_set() else supervisor.exited()
    if gone is not None:
        print(f"{gone.name} exited with {gone.process.returncode}; stopping the others",
              file=sys.stderr, flush=True)
    codes = supervisor.stop_all()
    unclean = {name: code for name, code in codes.items() if code != 0}
    if unclean:
        print(f"unclean exits: {unclean}", file=sys.stderr, flush=True)
    return 0 if gone is None and not unclean else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agritrace_platform.provinces",
        description="The all-in-one platform with simulated provinces and their bridges.")
    parser.add_argument("provinces", nargs="+", metavar="NN",
                        help="two-digit province codes, e.g. 37 11")
    parser.add_argument("--subjects", type=int, default=200,
                        help="subjects of each simulated province (default 200)")
    parser.add_argument("--records", type=int, default=20,
                        help="production records each simulator holds at start (default 20)")
    parser.add_argument("--record-rate", type=int, default=0,
                        help="new production records per second and province (default 0)")
    parser.add_argument("--shared", type=int, default=20,
                        help="subjects the first two provinces both hold (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="the simulators' seed")
    return parser


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = _parser()
    args = parser.parse_args(argv)
    provinces: list[str] = []
    for code in args.provinces:
        if code not in PROVINCE_CODES:
            parser.error(f"{code!r} is not a two-digit province code")
        if code not in provinces:
            provinces.append(code)
    for name in ("subjects", "records", "record_rate", "shared"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")
    if args.shared > args.subjects:
        parser.error("--shared must not exceed --subjects")
    return Options(tuple(provinces), args.subjects, args.records, args.record_rate,
                   args.shared, args.seed)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    settings = platform_settings()
    if settings is None:
        return 2
    if settings.grpc_address.endswith(":0"):
        print("the bridges need the platform's port: set AGRITRACE_GRPC_ADDRESS to a fixed one",
              file=sys.stderr)
        return 2
    return launch(options, settings)


if __name__ == "__main__":
    sys.exit(main())
