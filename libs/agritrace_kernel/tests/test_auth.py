"""Tokens, key and revocation caches, principals and policy tables, with real Ed25519 keys and
tokens signed here the way sso signs them; sso itself is replaced by small fakes."""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, OKPKey

from agritrace.sso.v1 import sso_pb2
from agritrace_kernel.auth.policy import (
    ANONYMOUS_ALLOWED,
    IncompletePolicy,
    PolicyTable,
    any_of,
    authenticated,
    regulator_with_role,
)
from agritrace_kernel.auth.principal import (
    Principal,
    PrincipalKind,
    Role,
    acting_as,
    current_principal,
)
from agritrace_kernel.auth.tokens import (
    KeySetCache,
    KeysUnavailable,
    RevocationCache,
    TokenVerifier,
    check_not_revoked,
)
from agritrace_kernel.errors import Unauthenticated

pytestmark = pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")


# -- fakes and helpers ---------------------------------------------------------------------------


def new_key(kid: str) -> OKPKey:
    return OKPKey.generate_key("Ed25519", parameters={"kid": kid})


def jwks(*keys: OKPKey) -> str:
    return json.dumps(KeySet(list(keys)).as_dict(private=False))


@dataclass
class FakeKeySource:
    """sso GetJwks: publishes the public halves of `keys`."""

    keys: list[OKPKey]
    fetches: int = 0
    failing: bool = False

    def fetch_jwks(self) -> str:
        self.fetches += 1
        if self.failing:
            raise ConnectionError("sso down")
        return jwks(*self.keys)


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": "agritrace-sso",
        "sub": "acct_1",
        "aud": "agritrace",
        "iat": now,
        "exp": now + 900,
        "jti": "jti_1",
        "sid": "sess_1",
        "kind": "REGULATOR",
        "username": "zj.reviewer",
        "subject_id": "",
        "jurisdiction": "33",
        "roles": ["REVIEWER"],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: OKPKey | OctKey, payload: dict[str, Any], *, alg: str = "EdDSA",
         kid: str | None = None) -> str:
    header = {"alg": alg, "kid": kid if kid is not None else key.kid}
    return jwt.encode(header, payload, key, algorithms=[alg])


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@dataclass
class Setup:
    key: OKPKey
    source: FakeKeySource
    clock: FakeClock
    cache: KeySetCache
    verifier: TokenVerifier


@pytest.fixture
def setup() -> Setup:
    key = new_key("k1")
    source = FakeKeySource([key])
    clock = FakeClock()
    cache = KeySetCache(source, clock=clock)
    return Setup(key, source, clock, cache, TokenVerifier(cache))


def refused(verifier: TokenVerifier, token: str, **kwargs: Any) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as raised:
        verifier.verify(token, **kwargs)
    return raised.value


# -- verification ----------------------------------------------------------------------------------


def test_a_valid_token_becomes_a_principal(setup: Setup) -> None:
    principal = setup.verifier.verify(sign(setup.key, claims(roles=["REVIEWER", "AUDITOR"])))

    assert principal == Principal(
        account_id="acct_1",
        kind=PrincipalKind.REGULATOR,
        username="zj.reviewer",
        subject_id="",
        jurisdiction="33",
        roles=frozenset({"REVIEWER", "AUDITOR"}),
        session_id="sess_1",
        audience="agritrace",
    )
    assert principal.is_regulator
    assert principal.has_role(Role.AUDITOR)
    assert not principal.has_role(Role.INSPECTOR)


def test_an_operator_token_with_no_roles(setup: Setup) -> None:
    principal = setup.verifier.verify(sign(setup.key, claims(
        kind="SUBJECT_OPERATOR", subject_id="subj_9", jurisdiction="", roles=[])))
    assert principal.kind is PrincipalKind.SUBJECT_OPERATOR
    assert principal.subject_id == "subj_9"
    assert principal.roles == frozenset()


def test_an_expired_token(setup: Setup) -> None:
    now = int(time.time())
    error = refused(setup.verifier, sign(setup.key, claims(iat=now - 1000, exp=now - 60)))
    assert error.reason == "TOKEN_EXPIRED"


def test_a_token_just_past_expiry_is_within_the_leeway(setup: Setup) -> None:
    now = int(time.time())
    principal = setup.verifier.verify(sign(setup.key, claims(iat=now - 900, exp=now - 10)))
    assert principal.account_id == "acct_1"


def test_a_token_issued_in_the_future_is_invalid(setup: Setup) -> None:
    now = int(time.time())
    error = refused(setup.verifier, sign(setup.key, claims(iat=now + 120, exp=now + 1000)))
    assert error.reason == "TOKEN_INVALID"


def test_a_token_signed_by_a_key_not_in_the_set(setup: Setup) -> None:
    impostor = new_key("k1")  # same kid, different key
    assert refused(setup.verifier, sign(impostor, claims())).reason == "TOKEN_INVALID"
    stranger = new_key("k-unknown")
    assert refused(setup.verifier, sign(stranger, claims())).reason == "TOKEN_INVALID"


def test_a_tampered_token(setup: Setup) -> None:
    header, _, signature = sign(setup.key, claims()).split(".")
    forged = f"{header}.{b64(claims(sub='acct_admin', kind='OPS_ADMIN'))}.{signature}"
    assert refused(setup.verifier, forged).reason == "TOKEN_INVALID"


def test_a_platform_token_is_refused_by_a_national_service(setup: Setup) -> None:
    token = sign(setup.key, claims(aud="platform:zj", kind="PLATFORM_CLIENT"))
    error = refused(setup.verifier, token)
    assert error.reason == "TOKEN_WRONG_AUDIENCE"
    # ...and accepted where that platform's audience is expected.
    assert setup.verifier.verify(token, audience="platform:zj").audience == "platform:zj"


def test_a_token_from_another_issuer(setup: Setup) -> None:
    assert refused(setup.verifier, sign(setup.key, claims(iss="evil"))).reason == "TOKEN_INVALID"


@pytest.mark.parametrize(
    "claim",
    ["iss", "sub", "aud", "exp", "iat", "jti", "sid", "kind", "username", "subject_id",
     "jurisdiction", "roles"],
)
def test_a_token_missing_a_claim(setup: Setup, claim: str) -> None:
    payload = claims()
    del payload[claim]
    assert refused(setup.verifier, sign(setup.key, payload)).reason == "TOKEN_INVALID"


@pytest.mark.parametrize(
    "overrides",
    [
        {"kind": "EMPEROR"},
        {"roles": ["REVIEWER", "GOD"]},
        {"roles": "REVIEWER"},
        {"jurisdiction": "3"},
        {"jurisdiction": "33x"},
        {"sid": ""},
        {"sub": 42},
        {"exp": "tomorrow"},
    ],
)
def test_a_token_with_a_bad_claim(setup: Setup, overrides: dict[str, Any]) -> None:
    assert refused(setup.verifier, sign(setup.key, claims(**overrides))).reason == "TOKEN_INVALID"


def test_alg_none_is_refused(setup: Setup) -> None:
    token = f"{b64({'alg': 'none', 'kid': 'k1'})}.{b64(claims())}."
    assert refused(setup.verifier, token).reason == "TOKEN_INVALID"
    assert setup.source.fetches == 0  # sso is not asked for keys for a token that cannot be good


def test_hs256_is_refused_even_keyed_with_the_public_key(setup: Setup) -> None:
    public_x = setup.key.as_dict(private=False)["x"]
    hmac_key = OctKey.import_key(public_x)
    token = sign(hmac_key, claims(), alg="HS256", kid="k1")
    assert refused(setup.verifier, token).reason == "TOKEN_INVALID"


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "a.b", "....."])
def test_garbage_is_invalid(setup: Setup, garbage: str) -> None:
    assert refused(setup.verifier, garbage).reason == "TOKEN_INVALID"


# -- key rotation and refresh --------------------------------------------------------------------


def test_an_unknown_kid_refreshes_once_then_verifies(setup: Setup) -> None:
    old = setup.key
    setup.verifier.verify(sign(old, claims()))
    assert setup.source.fetches == 1

    new = new_key("k2")
    setup.source.keys = [old, new]  # sso rotated; this service still has only k1
    setup.clock.now += 60

    assert setup.verifier.verify(sign(new, claims())).account_id == "acct_1"
    assert setup.source.fetches == 2
    # Tokens of the old key keep verifying while it is in the set, without another fetch.
    assert setup.verifier.verify(sign(old, claims())).account_id == "acct_1"
    assert setup.verifier.verify(sign(new, claims())).account_id == "acct_1"
    assert setup.source.fetches == 2


def test_a_retired_key_stops_verifying_after_the_periodic_refresh(setup: Setup) -> None:
    old = setup.key
    setup.verifier.verify(sign(old, claims()))
    setup.source.keys = [new_key("k2")]
    setup.clock.now += 301

    assert refused(setup.verifier, sign(old, claims())).reason == "TOKEN_INVALID"
    assert setup.source.fetches == 2


def test_garbage_kids_cannot_hammer_sso(setup: Setup) -> None:
    setup.verifier.verify(sign(setup.key, claims()))
    assert setup.source.fetches == 1
    stranger = new_key("k-made-up")
    setup.clock.now += 10

    for _ in range(50):
        refused(setup.verifier, sign(stranger, claims(), kid=f"kid-{_}"))
        setup.clock.now += 0.01
    assert setup.source.fetches == 2  # one refresh per min_refresh_seconds (5 s)

    setup.clock.now += 5
    refused(setup.verifier, sign(stranger, claims()))
    assert setup.source.fetches == 3


def test_a_failed_refresh_keeps_the_old_keys(setup: Setup) -> None:
    setup.verifier.verify(sign(setup.key, claims()))
    setup.source.failing = True
    setup.clock.now += 301
    assert setup.verifier.verify(sign(setup.key, claims())).account_id == "acct_1"


def test_no_keys_at_all_is_not_the_callers_fault() -> None:
    source = FakeKeySource([], failing=True)
    verifier = TokenVerifier(KeySetCache(source))
    with pytest.raises(KeysUnavailable):
        verifier.verify(sign(new_key("k1"), claims()))


# -- revocation ----------------------------------------------------------------------------------


@dataclass
class FakeRevocations:
    """sso ListRevocations: the cursor is how many revocations the caller has seen."""

    revocations: list[tuple[str, datetime]] = field(default_factory=list)
    page_size: int = 2
    calls: int = 0

    def revocations_since(self, cursor: str) -> tuple[list[tuple[str, datetime]], str]:
        self.calls += 1
        seen = int(cursor or 0)
        page = self.revocations[seen:seen + self.page_size]
        return page, str(seen + len(page))


def test_a_revoked_session_is_refused_after_a_poll(setup: Setup) -> None:
    source = FakeRevocations()
    cache = RevocationCache(source)
    principal = setup.verifier.verify(sign(setup.key, claims(sid="sess_1")))
    check_not_revoked(principal, cache)

    now = datetime.now(UTC)
    source.revocations += [("sess_0", now), ("sess_x", now), ("sess_1", now)]
    assert cache.poll_once() == 3  # over two pages

    assert cache.is_revoked("sess_1")
    with pytest.raises(Unauthenticated) as raised:
        check_not_revoked(principal, cache)
    assert raised.value.reason == "TOKEN_REVOKED"
    assert not cache.is_revoked("sess_2")
    assert cache.poll_once() == 0  # the cursor moved on


def test_a_revocation_is_forgotten_after_the_token_lifetime() -> None:
    moment = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)
    now = [moment]
    source = FakeRevocations([("sess_1", moment)])
    cache = RevocationCache(source, now=lambda: now[0])
    cache.poll_once()

    now[0] = moment + timedelta(minutes=15)
    assert cache.is_revoked("sess_1")  # a token issued just before may still be in use
    now[0] = moment + timedelta(minutes=16)
    assert not cache.is_revoked("sess_1")
    cache.poll_once()
    assert len(cache) == 0


def test_the_poller_thread_picks_up_revocations_within_seconds() -> None:
    source = FakeRevocations()
    cache = RevocationCache(source, poll_seconds=0.05)
    cache.start()
    try:
        source.revocations.append(("sess_7", datetime.now(UTC)))
        deadline = time.monotonic() + 5
        while not cache.is_revoked("sess_7") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cache.is_revoked("sess_7")
        assert cache.last_success is not None
    finally:
        cache.stop()


# -- principals ----------------------------------------------------------------------------------


def regulator(jurisdiction: str, *roles: str) -> Principal:
    return Principal("acct", PrincipalKind.REGULATOR, "u", "", jurisdiction, frozenset(roles),
                     "sess", "agritrace")


@pytest.mark.parametrize(
    ("jurisdiction", "covered"),
    [
        ("", {"330106": True, "330102": True, "340102": True}),
        ("33", {"330106": True, "330102": True, "340102": False}),
        ("3301", {"330106": True, "330102": True, "340102": False}),
        ("330106", {"330106": True, "330102": False, "340102": False}),
    ],
)
def test_covers_division(jurisdiction: str, covered: dict[str, bool]) -> None:
    principal = regulator(jurisdiction)
    assert {code: principal.covers_division(code) for code in covered} == covered


def test_only_regulators_and_platform_clients_have_a_jurisdiction() -> None:
    operator = Principal("a", PrincipalKind.SUBJECT_OPERATOR, "u", "subj", "", frozenset(), "s",
                         "agritrace")
    platform = Principal("a", PrincipalKind.PLATFORM_CLIENT, "u", "", "33", frozenset(), "s",
                         "agritrace")
    assert not operator.covers_division("330106")
    assert platform.covers_division("330106")
    assert not platform.covers_division("340102")
    assert not regulator("33").covers_division("")


def test_acting_as_sets_the_principal_for_the_block() -> None:
    assert current_principal() is None
    outer, inner = regulator("33"), regulator("3301")
    with acting_as(outer):
        assert current_principal() is outer
        with acting_as(inner):
            assert current_principal() is inner
        with acting_as(None):
            assert current_principal() is None
        assert current_principal() is outer
    assert current_principal() is None


# -- policies ------------------------------------------------------------------------------------


SSO = sso_pb2.DESCRIPTOR.services_by_name["SsoService"]


def test_rules() -> None:
    operator = Principal("a", PrincipalKind.SUBJECT_OPERATOR, "u", "subj", "", frozenset(), "s",
                         "agritrace")
    reviewer = regulator("33", "REVIEWER")
    auditor = regulator("", "AUDITOR")

    assert ANONYMOUS_ALLOWED.allows(None)
    assert not authenticated().allows(None)
    assert authenticated().allows(operator)
    assert authenticated(PrincipalKind.SUBJECT_OPERATOR).allows(operator)
    assert not authenticated(PrincipalKind.SUBJECT_OPERATOR).allows(reviewer)
    assert regulator_with_role(Role.REVIEWER).allows(reviewer)
    assert not regulator_with_role(Role.REVIEWER).allows(auditor)
    assert not regulator_with_role(Role.REVIEWER).allows(None)
    either = any_of(authenticated(PrincipalKind.SUBJECT_OPERATOR),
                    regulator_with_role(Role.AUDITOR))
    assert either(operator) and either(auditor) and not either(reviewer)


def test_a_complete_policy_table_passes() -> None:
    table = PolicyTable.for_service(SSO, {m.name: ANONYMOUS_ALLOWED for m in SSO.methods})
    table.check_complete(SSO)
    assert table.rule_for("/agritrace.sso.v1.SsoService/Login") is ANONYMOUS_ALLOWED
    assert table.rule_for("/agritrace.sso.v1.SsoService/Nope") is None


def test_a_policy_table_missing_a_method_fails_at_start_up() -> None:
    rules = {m.name: authenticated() for m in SSO.methods if m.name != "RotateSigningKey"}
    table = PolicyTable.for_service(SSO, rules)
    missing = re.escape("/agritrace.sso.v1.SsoService/RotateSigningKey")
    with pytest.raises(IncompletePolicy, match=missing):
        table.check_complete(SSO)


def test_method_names_must_be_full() -> None:
    with pytest.raises(ValueError, match="full method name"):
        PolicyTable({"Login": ANONYMOUS_ALLOWED})
