"""A load-test user's session (benchmarks/load/signin.py): signed in once, its access token
renewed before it expires, for however long the run lasts. With a small fake of the sso
service, then against the real one in the all-in-one platform."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.type import date_pb2

from agritrace.query.v1 import query_pb2 as qpb
from agritrace.query.v1 import query_pb2_grpc
from agritrace.sso.v1 import sso_pb2, sso_pb2_grpc
from agritrace_testing.platform_client import PlatformClient, start_all_in_one
from benchmarks.load.signin import SessionError, SignedInSession

YEAR_START = date_pb2.Date(year=2026, month=1, day=1)
YEAR_END = date_pb2.Date(year=2026, month=12, day=31)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeSso:
    """Issues numbered tokens that live `lifetime` seconds; each call takes `latency` seconds
    of the clock; a refresh token is single use."""

    def __init__(self, clock: Clock, lifetime: int = 900, latency: float = 0.0) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.latency = latency
        self.issued = 0
        self.live_refresh_tokens: set[str] = set()
        self.calls: list[str] = []

    def _tokens(self) -> sso_pb2.TokenSet:
        self.issued += 1
        self.clock.now += self.latency
        refresh = f"refresh-{self.issued}"
        self.live_refresh_tokens.add(refresh)
        return sso_pb2.TokenSet(access_token=f"access-{self.issued}", refresh_token=refresh,
                                expires_in=self.lifetime, token_type="Bearer")

    def Login(self, request: sso_pb2.LoginRequest, *, timeout: float
              ) -> sso_pb2.LoginResponse:
        self.calls.append(f"Login {request.username}")
        return sso_pb2.LoginResponse(tokens=self._tokens())

    def Refresh(self, request: sso_pb2.RefreshRequest, *, timeout: float
                ) -> sso_pb2.RefreshResponse:
        self.calls.append(f"Refresh {request.refresh_token}")
        self.live_refresh_tokens.remove(request.refresh_token)  # spent, or never issued
        return sso_pb2.RefreshResponse(tokens=self._tokens())


def test_a_session_renews_its_token_a_margin_before_it_expires() -> None:
    clock = Clock()
    sso = FakeSso(clock)
    session = SignedInSession(sso, "reg-37", "pw", refresh_margin=60, clock=clock)
    assert session.due() and not session.signed_in
    session.sign_in()
    assert session.credentials() == (("authorization", "Bearer access-1"),)
    clock.now += 839.9
    assert not session.due()
    clock.now += 0.1
    assert session.due()
    session.refresh()
    assert session.credentials() == (("authorization", "Bearer access-2"),)
    assert not session.due()
    clock.now += 840
    session.refresh()  # with the refresh token the last refresh gave, the first one spent
    assert sso.calls == ["Login reg-37", "Refresh refresh-1", "Refresh refresh-2"]
    assert sso.live_refresh_tokens == {"refresh-3"}


def test_a_token_s_life_counts_from_when_it_was_asked_for() -> None:
    clock = Clock()
    session = SignedInSession(FakeSso(clock, latency=5.0), "op", "pw", refresh_margin=60,
                              clock=clock)
    session.sign_in()  # issued somewhere in those 5 s: counted from their start
    clock.now += 834.9  # 839.9 s after it was asked for
    assert not session.due()
    clock.now += 0.1
    assert session.due()


def test_a_margin_as_long_as_the_token_s_life_renews_before_every_call() -> None:
    clock = Clock()
    session = SignedInSession(FakeSso(clock, lifetime=900), "op", "pw", refresh_margin=900,
                              clock=clock)
    session.sign_in()
    assert session.due()


def test_refreshing_or_calling_before_signing_in_is_a_mistake() -> None:
    session = SignedInSession(FakeSso(Clock()), "op", "pw")
    with pytest.raises(RuntimeError):
        session.refresh()
    with pytest.raises(RuntimeError):
        session.credentials()
    with pytest.raises(ValueError):
        SignedInSession(FakeSso(Clock()), "op", "pw", refresh_margin=-1)


def test_an_answer_without_tokens_is_refused_and_the_old_ones_kept() -> None:
    clock = Clock()
    sso = FakeSso(clock)
    session = SignedInSession(sso, "op", "pw", clock=clock)
    session.sign_in()
    sso._tokens = lambda: sso_pb2.TokenSet()  # type: ignore[method-assign]
    with pytest.raises(SessionError):
        session.refresh()
    assert session.credentials() == (("authorization", "Bearer access-1"),)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformClient]:
    process, client = start_all_in_one(tmp_path_factory.mktemp("signin"))
    try:
        client.connect()
        yield client
    finally:
        client.close_channels()
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.integration
def test_a_renewed_token_is_accepted_and_the_spent_refresh_token_is_not(
        platform: PlatformClient) -> None:
    clock = Clock()
    platform.user_password = "a password of this test's own"
    username = platform.create_regulator("37")
    with grpc.insecure_channel(platform.address) as channel:
        sso = sso_pb2_grpc.SsoServiceStub(channel)  # type: ignore[no-untyped-call]
        query = query_pb2_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]
        session = SignedInSession(sso, username, platform.user_password, clock=clock)
        first = session.sign_in()
        assert first.expires_in > 60

        def statistics() -> qpb.GetStatisticsResponse:
            answer: qpb.GetStatisticsResponse = query.GetStatistics(
                qpb.GetStatisticsRequest(division_code="37", start_date=YEAR_START,
                                         end_date=YEAR_END),
                metadata=session.credentials(), timeout=10)
            return answer

        assert statistics().total.division_code == "37"
        clock.now += first.expires_in - 60
        assert session.due()
        renewed = session.refresh()
        assert renewed.access_token != first.access_token
        assert renewed.session_id == first.session_id  # the same session, renewed
        assert statistics().total.division_code == "37"
        with pytest.raises(grpc.RpcError) as spent:
            sso.Refresh(sso_pb2.RefreshRequest(refresh_token=first.refresh_token), timeout=10)
        assert spent.value.code() == grpc.StatusCode.UNAUTHENTICATED
