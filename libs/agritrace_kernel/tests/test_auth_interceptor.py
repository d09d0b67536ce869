"""The authentication interceptor end to end, on a real server built with `create_server`
(127.0.0.1, port 0) hosting a tiny generic service with bytes messages, and real tokens
signed with an Ed25519 key the way sso signs them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from joserfc import jwt
from joserfc.jwk import KeySet, OKPKey

from agritrace.sso.v1 import sso_pb2, sso_pb2_grpc
from agritrace_kernel.auth.interceptor import AuthInterceptor
from agritrace_kernel.auth.policy import (
    ANONYMOUS_ALLOWED,
    PolicyTable,
    authenticated,
    regulator_with_role,
)
from agritrace_kernel.auth.principal import Principal, PrincipalKind, Role, current_principal
from agritrace_kernel.auth.sso_client import (
    BearerTokenClientInterceptor,
    ServiceTokenProvider,
    SsoKeySetSource,
    SsoRevocationSource,
    bearer_metadata,
)
from agritrace_kernel.auth.tokens import KeySetCache, RevocationCache, TokenVerifier
from agritrace_kernel.errors import NotFound
from agritrace_kernel.grpc_kit.server import GrpcServer, ServiceRegistration, create_server

pytestmark = pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")

SERVICE = "agritrace.test.v1.Guarded"
KEY = OKPKey.generate_key("Ed25519", parameters={"kid": "k1"})


def token(**overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "agritrace-sso", "sub": "acct_op", "aud": "agritrace", "iat": now,
        "exp": now + 900, "jti": "j1", "sid": "sess_op", "kind": "SUBJECT_OPERATOR",
        "username": "farm.op", "subject_id": "subj_1", "jurisdiction": "", "roles": [],
    }
    claims.update(overrides)
    return jwt.encode({"alg": "EdDSA", "kid": KEY.kid}, claims, KEY, algorithms=["EdDSA"])


REVIEWER = {"sub": "acct_rev", "sid": "sess_rev", "kind": "REGULATOR", "subject_id": "",
            "jurisdiction": "33", "roles": ["REVIEWER"], "username": "zj.reviewer"}


class FakeKeySource:
    def fetch_jwks(self) -> str:
        return json.dumps(KeySet([KEY]).as_dict(private=False))


@dataclass
class FakeRevocations:
    revocations: list[tuple[str, datetime]] = field(default_factory=list)

    def revocations_since(self, cursor: str) -> tuple[list[tuple[str, datetime]], str]:
        seen = int(cursor or 0)
        page = self.revocations[seen:]
        return page, str(seen + len(page))


def who(principal: Principal | None) -> bytes:
    return b"anonymous" if principal is None else principal.account_id.encode()


@dataclass
class Guarded:
    seen: list[Principal | None] = field(default_factory=list)

    def unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        principal = current_principal()
        self.seen.append(principal)
        if request == b"notfound":
            raise NotFound("no such thing", reason="THING_NOT_FOUND")
        return who(principal)

    def stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        for _ in range(3):
            yield who(current_principal())
            time.sleep(0.01)

    def registration(self) -> ServiceRegistration:
        handler = grpc.method_handlers_generic_handler(SERVICE, {
            name: grpc.unary_unary_rpc_method_handler(self.unary)
            for name in ("Operators", "Reviewers", "Public", "Undeclared")
        } | {"Stream": grpc.unary_stream_rpc_method_handler(self.stream)})
        return ServiceRegistration(SERVICE, lambda s: s.add_generic_rpc_handlers((handler,)))


POLICIES = PolicyTable.for_service(SERVICE, {
    "Operators": authenticated(PrincipalKind.SUBJECT_OPERATOR),
    "Reviewers": regulator_with_role(Role.REVIEWER),
    "Public": ANONYMOUS_ALLOWED,
    "Stream": authenticated(),
})


@dataclass
class Running:
    guarded: Guarded
    revocations: FakeRevocations
    cache: RevocationCache
    server: GrpcServer
    channel: grpc.Channel

    def call(self, method: str, request: bytes = b"x", metadata: Any = None) -> bytes:
        result: bytes = self.channel.unary_unary(f"/{SERVICE}/{method}")(
            request, timeout=5, metadata=metadata)
        return result


@pytest.fixture
def running() -> Iterator[Running]:
    revocations = FakeRevocations()
    cache = RevocationCache(revocations)
    interceptor = AuthInterceptor(TokenVerifier(KeySetCache(FakeKeySource())), cache, POLICIES)
    guarded = Guarded()
    server = create_server("127.0.0.1:0", [guarded.registration()], max_workers=4,
                           extra_interceptors=[interceptor])
    server.server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    yield Running(guarded, revocations, cache, server, channel)
    channel.close()
    server.stop(0)


def refusal(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    status = rpc_status.from_call(raised.value)  # type: ignore[arg-type]
    assert status is not None, "no google.rpc.Status in the trailers"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.domain == "agritrace"
    return raised.value.code(), info.reason


def test_no_token_is_unauthenticated(running: Running) -> None:
    assert refusal(lambda: running.call("Operators")) == (
        grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")
    assert running.guarded.seen == []


@pytest.mark.parametrize(
    "header",
    ["Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Bearer", "bearer " + "e30.e30.e30"],
)
def test_a_bad_token_is_unauthenticated(running: Running, header: str) -> None:
    assert refusal(lambda: running.call("Operators", metadata=(("authorization", header),))) == (
        grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")


def test_an_expired_token_is_unauthenticated(running: Running) -> None:
    expired = token(iat=int(time.time()) - 2000, exp=int(time.time()) - 1000)
    assert refusal(lambda: running.call("Operators", metadata=bearer_metadata(expired))) == (
        grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED")


def test_a_platform_token_is_refused(running: Running) -> None:
    platform = token(aud="platform:zj", kind="PLATFORM_CLIENT", jurisdiction="33")
    assert refusal(lambda: running.call("Public", metadata=bearer_metadata(platform))) == (
        grpc.StatusCode.UNAUTHENTICATED, "TOKEN_WRONG_AUDIENCE")


def test_an_allowed_kind_runs_as_its_principal(running: Running) -> None:
    assert running.call("Operators", metadata=bearer_metadata(token())) == b"acct_op"
    [principal] = running.guarded.seen
    assert principal is not None
    assert principal.kind is PrincipalKind.SUBJECT_OPERATOR
    assert principal.subject_id == "subj_1"


def test_the_scheme_is_case_insensitive(running: Running) -> None:
    metadata = (("authorization", f"bEaReR {token()}"),)
    assert running.call("Operators", metadata=metadata) == b"acct_op"


def test_a_regulator_with_the_role(running: Running) -> None:
    assert running.call("Reviewers", metadata=bearer_metadata(token(**REVIEWER))) == b"acct_rev"


def test_a_wrong_kind_is_permission_denied(running: Running) -> None:
    assert refusal(lambda: running.call("Reviewers", metadata=bearer_metadata(token()))) == (
        grpc.StatusCode.PERMISSION_DENIED, "METHOD_NOT_PERMITTED")
    reviewer = bearer_metadata(token(**REVIEWER))
    assert refusal(lambda: running.call("Operators", metadata=reviewer)) == (
        grpc.StatusCode.PERMISSION_DENIED, "METHOD_NOT_PERMITTED")
    assert running.guarded.seen == []


def test_an_undeclared_method_is_permission_denied(running: Running) -> None:
    for metadata in (None, bearer_metadata(token())):
        assert refusal(lambda m=metadata: running.call("Undeclared", metadata=m)) == (
            grpc.StatusCode.PERMISSION_DENIED, "METHOD_NOT_DECLARED")
    assert running.guarded.seen == []


def test_an_anonymous_method_runs_without_a_principal(running: Running) -> None:
    assert running.call("Public") == b"anonymous"
    assert running.guarded.seen == [None]


def test_an_anonymous_method_still_verifies_a_token_sent(running: Running) -> None:
    assert running.call("Public", metadata=bearer_metadata(token())) == b"acct_op"
    bad = (("authorization", "Bearer nonsense"),)
    assert refusal(lambda: running.call("Public", metadata=bad)) == (
        grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")


def test_a_revoked_session_is_refused_after_the_next_poll(running: Running) -> None:
    metadata = bearer_metadata(token())
    assert running.call("Operators", metadata=metadata) == b"acct_op"
    running.revocations.revocations.append(("sess_op", datetime.now(UTC)))
    running.cache.poll_once()
    assert refusal(lambda: running.call("Operators", metadata=metadata)) == (
        grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")


def test_domain_errors_of_the_handler_still_map(running: Running) -> None:
    assert refusal(lambda: running.call("Operators", b"notfound", bearer_metadata(token()))) == (
        grpc.StatusCode.NOT_FOUND, "THING_NOT_FOUND")


def test_health_needs_no_token(running: Running) -> None:
    stub = health_pb2_grpc.HealthStub(running.channel)
    response = stub.Check(health_pb2.HealthCheckRequest(service="liveness"), timeout=5)
    assert response.status in (health_pb2.HealthCheckResponse.SERVING,
                               health_pb2.HealthCheckResponse.NOT_SERVING)


def test_a_streamed_response_sees_the_principal_while_iterating(running: Running) -> None:
    stream = running.channel.unary_stream(f"/{SERVICE}/Stream")
    assert list(stream(b"x", timeout=5, metadata=bearer_metadata(token()))) == [b"acct_op"] * 3
    with pytest.raises(grpc.RpcError) as raised:
        list(stream(b"x", timeout=5))
    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_the_principal_does_not_leak_between_calls(running: Running) -> None:
    # Every worker thread served an operator; anonymous calls afterwards still see nobody.
    calls = [threading.Thread(target=running.call, args=("Operators", b"x",
                                                         bearer_metadata(token())))
             for _ in range(8)]
    for thread in calls:
        thread.start()
    for thread in calls:
        thread.join()
    assert all(running.call("Public") == b"anonymous" for _ in range(8))


@dataclass
class CountingProvider:
    issued: int = 0

    def token(self) -> str:
        self.issued += 1
        return token(**REVIEWER)


def test_the_client_interceptor_adds_the_bearer_token(running: Running) -> None:
    provider = CountingProvider()
    channel = grpc.intercept_channel(running.channel, BearerTokenClientInterceptor(provider))
    assert channel.unary_unary(f"/{SERVICE}/Reviewers")(b"x", timeout=5) == b"acct_rev"
    stream = channel.unary_stream(f"/{SERVICE}/Stream")
    assert list(stream(b"x", timeout=5)) == [b"acct_rev"] * 3
    assert provider.issued == 2


# -- the adapters over sso, against a fake sso on a real server ---------------------------------


class FakeSso(sso_pb2_grpc.SsoServiceServicer):  # type: ignore[misc]
    """Signs in one service account; its access tokens live `expires_in` seconds."""

    def __init__(self) -> None:
        self.logins = 0
        self.refreshes = 0
        self.expires_in = 900
        self.revocation_callers: list[str] = []

    def _tokens(self, n: int) -> sso_pb2.TokenSet:
        return sso_pb2.TokenSet(access_token=f"access-{n}", expires_in=self.expires_in,
                                refresh_token=f"refresh-{n}", token_type="Bearer")

    def Login(self, request: Any, context: grpc.ServicerContext) -> Any:
        if (request.username, request.password) != ("svc.registry", "s3cret-password"):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad credentials")
        self.logins += 1
        return sso_pb2.LoginResponse(tokens=self._tokens(self.logins + self.refreshes))

    def Refresh(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.refreshes += 1
        return sso_pb2.RefreshResponse(tokens=self._tokens(self.logins + self.refreshes))

    def GetJwks(self, request: Any, context: grpc.ServicerContext) -> Any:
        return sso_pb2.GetJwksResponse(jwks_json=FakeKeySource().fetch_jwks())

    def ListRevocations(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.revocation_callers.append(dict(context.invocation_metadata())["authorization"])
        response = sso_pb2.ListRevocationsResponse(next_cursor="c1")
        if request.cursor == "":
            revocation = response.revocations.add(session_id="sess_9")
            revocation.revoke_time.FromDatetime(datetime.now(UTC))
        return response


@pytest.fixture
def sso() -> Iterator[tuple[FakeSso, grpc.Channel]]:
    fake = FakeSso()
    server = create_server("127.0.0.1:0", [ServiceRegistration(
        "agritrace.sso.v1.SsoService",
        lambda s: sso_pb2_grpc.add_SsoServiceServicer_to_server(fake, s))])
    server.server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield fake, channel
    channel.close()
    server.stop(0)


def test_the_service_token_is_reused_then_refreshed_before_expiry(
    sso: tuple[FakeSso, grpc.Channel],
) -> None:
    fake, channel = sso
    now = [0.0]
    provider = ServiceTokenProvider(channel, "svc.registry", "s3cret-password",
                                    clock=lambda: now[0])
    assert provider.token() == "access-1"
    now[0] = 800.0
    assert provider.token() == "access-1"
    now[0] = 841.0  # within a minute of expiry
    assert provider.token() == "access-2"
    assert (fake.logins, fake.refreshes) == (1, 1)
    provider.invalidate()
    assert provider.token() == "access-3"
    assert (fake.logins, fake.refreshes) == (2, 1)


def test_the_sso_sources_feed_the_caches(sso: tuple[FakeSso, grpc.Channel]) -> None:
    fake, channel = sso
    provider = ServiceTokenProvider(channel, "svc.registry", "s3cret-password")
    verifier = TokenVerifier(KeySetCache(SsoKeySetSource(channel)))
    assert verifier.verify(token()).account_id == "acct_op"

    revocations = RevocationCache(SsoRevocationSource(channel, provider))
    assert revocations.poll_once() == 1
    assert revocations.is_revoked("sess_9")
    assert revocations.poll_once() == 0
    assert set(fake.revocation_callers) == {"Bearer access-1"}  # signed in once
