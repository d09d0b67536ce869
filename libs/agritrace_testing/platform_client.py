"""A running platform as its clients see it: where each service answers, the administrator's
session, and accounts made the way people make them (an operator who registers its own
subject, a regulator of a jurisdiction). The integration tests' `platform` and the load test
(benchmarks/load) build on it; agritrace_testing.chain takes either."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agritrace.coding.v1 import coding_pb2_grpc
from agritrace.registry.v1 import registry_pb2 as rpb
from agritrace.registry.v1 import registry_pb2_grpc
from agritrace.sso.v1 import sso_pb2, sso_pb2_grpc
from agritrace_kernel.auth.sso_client import BearerTokenClientInterceptor, bearer_metadata
from agritrace_kernel.ports import free_port
from agritrace_registry.domain import identifiers
from agritrace_testing.polling import eventually

USER_PASSWORD = "a long enough password"


def credit_code(county: str) -> str:
    """A random, well-formed unified social credit code (check character right) of an
    organisation registered in `county`."""
    body = "92" + county + "".join(
        c if c in identifiers.CREDIT_CODE_ALPHABET else "1"
        for c in uuid.uuid4().hex[:9].upper())
    return body + identifiers.credit_code_check_char(body)


def wait_serving(address: str, process: subprocess.Popen[bytes], timeout: float = 180) -> None:
    """Until the server at `address` reports SERVING; fails if `process` exits first."""
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


@dataclass(frozen=True)
class Account:
    """A signed-in subject operator and the subject it registered (and is bound to)."""

    subject_id: str
    token: str
    username: str  # its sign-in name (its password: the client's user_password)


@dataclass(frozen=True)
class StaticToken:
    value: str

    def token(self) -> str:
        return self.value


@dataclass(kw_only=True)
class PlatformClient:
    """The platform's addresses (empty: `address`, as in the all-in-one mode) and, once
    connect()ed, channels and the administrator's token."""

    address: str
    admin_password: str
    sso_address: str = ""
    coding_address: str = ""
    flow_address: str = ""
    query_address: str = ""
    # The password of every account this client makes (the load test sets a secret one: its
    # accounts may live on a real platform).
    user_password: str = USER_PASSWORD
    channel: grpc.Channel | None = None  # no credentials
    sso_channel: grpc.Channel | None = None
    admin_channel: grpc.Channel | None = None  # every call as the administrator
    admin_token: str = ""
    _extra_channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def registry(self) -> registry_pb2_grpc.RegistryServiceStub:
        """The registry, called as the first administrator."""
        assert self.admin_channel is not None
        return registry_pb2_grpc.RegistryServiceStub(self.admin_channel)  # type: ignore[no-untyped-call]

    @property
    def coding(self) -> coding_pb2_grpc.CodingServiceStub:
        """The coding service, called as the first administrator."""
        return coding_pb2_grpc.CodingServiceStub(  # type: ignore[no-untyped-call]
            self.coding_channel_as(self.admin_token))

    def coding_channel_as(self, token: str | None) -> grpc.Channel:
        """A channel to the coding service carrying `token` (None: anonymous)."""
        return self.channel_as(token, self.coding_address)

    def channel_as(self, token: str | None, address: str = "") -> grpc.Channel:
        """A channel to `address` (default: the platform's) carrying `token` (None:
        anonymous); closed by close_channels()."""
        channel = grpc.insecure_channel(address or self.address)
        self._extra_channels.append(channel)
        if token is None:
            return channel
        return grpc.intercept_channel(channel, BearerTokenClientInterceptor(StaticToken(token)))

    def new_operator(self, county: str = "330106", name: str = "",
                     kind: int = rpb.SUBJECT_KIND_ENTERPRISE) -> Account:
        """An operator account that registers its own subject in `county` (sso binds the
        account to it) and signs in again to carry the binding in its token."""
        sso = sso_pb2_grpc.SsoServiceStub(self.sso_channel)  # type: ignore[no-untyped-call]
        suffix = uuid.uuid4().hex[:8]
        account = sso.CreateAccount(sso_pb2.CreateAccountRequest(
            request_id=f"op-{suffix}", password=self.user_password,
            account=sso_pb2.Account(username=f"op-{suffix}", display_name="operator",
                                    kind=sso_pb2.ACCOUNT_KIND_SUBJECT_OPERATOR,
                                    jurisdiction=county)),
            metadata=bearer_metadata(self.admin_token)).account
        login = sso.Login(sso_pb2.LoginRequest(username=f"op-{suffix}",
                                               password=self.user_password))
        registry = registry_pb2_grpc.RegistryServiceStub(self.channel)  # type: ignore[no-untyped-call]
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
        return Account(subject.subject_id, token, f"op-{suffix}")

    def new_regulator(self, jurisdiction: str) -> str:
        """A regulator (inspector) of `jurisdiction` ("": national), signed in: its access
        token."""
        return self.login(self.create_regulator(jurisdiction), self.user_password)

    def create_regulator(self, jurisdiction: str) -> str:
        """A regulator (inspector) account of `jurisdiction` ("": national): its sign-in
        name (its password: user_password)."""
        sso = sso_pb2_grpc.SsoServiceStub(self.sso_channel)  # type: ignore[no-untyped-call]
        username = f"reg-{jurisdiction}-{uuid.uuid4().hex[:6]}"
        sso.CreateAccount(sso_pb2.CreateAccountRequest(
            request_id=username, password=self.user_password,
            account=sso_pb2.Account(username=username, display_name="inspector",
                                    kind=sso_pb2.ACCOUNT_KIND_REGULATOR,
                                    jurisdiction=jurisdiction,
                                    roles=[sso_pb2.REGULATOR_ROLE_INSPECTOR])),
            metadata=bearer_metadata(self.admin_token))
        return username

    def login(self, username: str, password: str) -> str:
        assert self.sso_channel is not None
        answer = sso_pb2_grpc.SsoServiceStub(self.sso_channel).Login(  # type: ignore[no-untyped-call]
            sso_pb2.LoginRequest(username=username, password=password))
        return str(answer.tokens.access_token)

    def connect(self) -> None:
        """Opens the channels and signs in as the administrator."""
        self.channel = grpc.insecure_channel(self.address)
        self.sso_channel = grpc.insecure_channel(self.sso_address or self.address)
        self.admin_token = token = self.login("admin", self.admin_password)
        self.admin_channel = grpc.intercept_channel(
            self.channel, BearerTokenClientInterceptor(StaticToken(token)))

    def close_channels(self) -> None:
        for channel in (self.channel, self.sso_channel, *self._extra_channels):
            if channel is not None:
                channel.close()


def start_all_in_one(work: Path, *, metrics_port: int = 0
                     ) -> tuple[subprocess.Popen[bytes], PlatformClient]:
    """`python -m agritrace_platform` on its embedded defaults, its data and log
    (platform.log) in `work`, a fresh administrator password, metrics on `metrics_port` (0:
    off); returned once SERVING, with a client of it (not yet connect()ed)."""
    address = f"127.0.0.1:{free_port()}"
    password = secrets.token_urlsafe(18)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AGRITRACE_")},
           "AGRITRACE_DATA_DIR": str(work / "var"), "AGRITRACE_GRPC_ADDRESS": address,
           "AGRITRACE_METRICS_PORT": str(metrics_port), "AGRITRACE_ADMIN_PASSWORD": password}
    with (work / "platform.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "agritrace_platform"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_serving(address, process)
    except BaseException:
        process.terminate()
        process.wait(timeout=30)
        raise
    return process, PlatformClient(address=address, admin_password=password)
