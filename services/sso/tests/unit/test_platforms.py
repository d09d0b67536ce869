"""The platform directory, its onboarding state machine, and token exchange."""

from __future__ import annotations

import json
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from agritrace_kernel.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)
from agritrace_sso.domain.model import (
    AccountInput,
    AccountKind,
    Caller,
    OnboardingStage,
    PlatformInput,
    RegulatorRole,
)
from agritrace_sso.service_layer.services import SsoService

PASSWORD = "correct horse battery"
ADMIN = Caller("acct_admin", AccountKind.OPS_ADMIN)
A, T, C, S = (OnboardingStage.APPLIED, OnboardingStage.TESTING, OnboardingStage.CONNECTED,
              OnboardingStage.SUSPENDED)


def zhejiang(service: SsoService, platform_id: str = "zj", province: str = "33") -> Any:
    return service.register_platform(
        ADMIN, PlatformInput(platform_id, province, "浙江省农产品质量安全追溯平台",
                             "https://zj.example.cn/trace"))


def move(service: SsoService, platform_id: str, *stages: OnboardingStage) -> Any:
    platform = None
    for stage in stages:
        platform = service.update_platform(ADMIN, platform_id, PlatformInput(stage=stage),
                                           ["stage"])
    return platform


# -- directory ---------------------------------------------------------------------------------


def test_register_starts_applied_and_announces(service: SsoService, database: Any) -> None:
    platform = zhejiang(service)
    assert platform.stage is A and platform.version == 1
    (event,) = database.events_named("platform_registered")
    assert event.payload["platform_id"] == "zj" and event.payload["stage"] == "APPLIED"
    with pytest.raises(AlreadyExists):
        zhejiang(service)


def test_register_validates(service: SsoService) -> None:
    with pytest.raises(InvalidArgument) as error:
        service.register_platform(ADMIN, PlatformInput("ZJ!", "99", "", "http://x"))
    assert [v.field for v in error.value.violations] == [
        "platform.platform_id", "platform.province", "platform.name", "platform.url"]


def test_only_administrators_manage_platforms(service: SsoService) -> None:
    regulator = Caller("r", AccountKind.REGULATOR, "")
    with pytest.raises(PermissionDenied):
        service.register_platform(regulator, PlatformInput("zj", "33", "n", "https://x.cn"))
    zhejiang(service)
    with pytest.raises(PermissionDenied):
        service.update_platform(regulator, "zj", PlatformInput(stage=T), ["stage"])


LEGAL = {(A, T), (T, C), (T, S), (C, S), (S, C), (S, T)}


@pytest.mark.parametrize("path", [
    (T,), (T, C), (T, S), (T, C, S), (T, C, S, C), (T, S, T), (T, C, S, T, C),
])
def test_legal_stage_paths(service: SsoService, path: tuple[OnboardingStage, ...]) -> None:
    zhejiang(service)
    assert move(service, "zj", *path).stage is path[-1]


@pytest.mark.parametrize(("start", "target"), [
    (start, target)
    for start in (A, T, C, S) for target in (A, T, C, S)
    if start is not target and (start, target) not in LEGAL
])
def test_illegal_stage_moves_are_refused(
    service: SsoService, start: OnboardingStage, target: OnboardingStage
) -> None:
    zhejiang(service)
    route = {A: (), T: (T,), C: (T, C), S: (T, S)}[start]
    move(service, "zj", *route)
    with pytest.raises(FailedPrecondition) as error:
        move(service, "zj", target)
    assert error.value.reason == "ILLEGAL_STAGE_TRANSITION"


def test_update_name_url_and_announce_previous_stage(service: SsoService, database: Any) -> None:
    zhejiang(service)
    platform = service.update_platform(
        ADMIN, "zj", PlatformInput(name="新名字", url="https://new.example.cn", stage=T),
        ["name", "url", "stage"], expected_version=1)
    assert (platform.name, platform.url, platform.stage, platform.version) == (
        "新名字", "https://new.example.cn", T, 2)
    (event,) = database.events_named("platform_updated")
    assert event.payload["previous_stage"] == "APPLIED" and event.payload["stage"] == "TESTING"
    with pytest.raises(InvalidArgument):
        service.update_platform(ADMIN, "zj", PlatformInput(url="ftp://x"), ["url"])
    with pytest.raises(InvalidArgument):
        service.update_platform(ADMIN, "zj", PlatformInput(), ["province"])


def test_list_platforms_by_province_in_pages(service: SsoService) -> None:
    for platform_id, province in [("zj", "33"), ("bj", "11"), ("gd", "44"), ("js", "32")]:
        zhejiang(service, platform_id, province)
    page, token = service.list_platforms(3, "")
    assert [p.province for p in page] == ["11", "32", "33"]
    page, token = service.list_platforms(3, token)
    assert [p.platform_id for p in page] == ["gd"] and token == ""


# -- exchange ----------------------------------------------------------------------------------


def signed_in(service: SsoService, kind: AccountKind, jurisdiction: str) -> Caller:
    username = f"{kind.value.lower().replace('_', '-')}.{jurisdiction or 'cn'}"
    roles = (RegulatorRole.INSPECTOR,) if kind is AccountKind.REGULATOR else ()
    subject_id = "S33ABCDEF" if kind is AccountKind.SUBJECT_OPERATOR else ""
    service.create_account(ADMIN, f"req-{username}", AccountInput(
        username=username, kind=kind, jurisdiction=jurisdiction, roles=roles,
        subject_id=subject_id), PASSWORD)
    login = service.login(username, PASSWORD)
    account = login.account
    return Caller(account.account_id, account.kind, account.jurisdiction, account.subject_id,
                  frozenset(account.role_names), login.tokens.session_id)


CALLERS = {
    "admin": (AccountKind.OPS_ADMIN, ""),
    "national regulator": (AccountKind.REGULATOR, ""),
    "province regulator": (AccountKind.REGULATOR, "33"),
    "county regulator": (AccountKind.REGULATOR, "330106"),
    "other province regulator": (AccountKind.REGULATOR, "32"),
    "operator in province": (AccountKind.SUBJECT_OPERATOR, "330106"),
    "operator elsewhere": (AccountKind.SUBJECT_OPERATOR, "320106"),
    "platform client of province": (AccountKind.PLATFORM_CLIENT, "33"),
    "platform client elsewhere": (AccountKind.PLATFORM_CLIENT, "32"),
    "service": (AccountKind.SERVICE, ""),
}
IN_SCOPE = {"admin", "national regulator", "province regulator", "county regulator",
            "operator in province", "platform client of province"}


@pytest.mark.parametrize("stage", [A, T, C, S])
@pytest.mark.parametrize("who", sorted(CALLERS))
def test_exchange_matrix(service: SsoService, stage: OnboardingStage, who: str) -> None:
    # Connected bridges in both provinces, so platform clients can sign in whatever stage
    # "zj" (the platform exchanged for) is in.
    for platform_id, province in (("zj-bridge", "33"), ("js", "32")):
        zhejiang(service, platform_id, province)
        move(service, platform_id, T, C)
    zhejiang(service)
    route = {A: (), T: (T,), C: (T, C), S: (T, C, S)}[stage]
    move(service, "zj", *route)
    caller = signed_in(service, *CALLERS[who])
    if stage in (A, S):
        expected: tuple[type[Exception], str] | None = (
            FailedPrecondition, "PLATFORM_NOT_CONNECTED")
    elif stage is T and who != "admin":
        expected = (PermissionDenied, "PLATFORM_IN_TESTING")
    elif who not in IN_SCOPE:
        expected = (PermissionDenied, "OUTSIDE_PLATFORM_PROVINCE")
    else:
        expected = None
    if expected is None:
        tokens = service.exchange_token(caller, "zj")
        keys = KeySet.import_key_set(json.loads(service.jwks()))
        claims = jwt.decode(tokens.access_token, keys, algorithms=["EdDSA"]).claims
        assert claims["aud"] == "platform:zj" and claims["sid"] == caller.session_id
        assert claims["sub"] == caller.account_id and tokens.refresh_token == ""
    else:
        with pytest.raises(expected[0]) as error:
            service.exchange_token(caller, "zj")
        assert error.value.reason == expected[1]  # type: ignore[attr-defined]


def test_exchange_needs_a_live_session_and_a_national_token(service: SsoService) -> None:
    zhejiang(service)
    move(service, "zj", T, C)
    caller = signed_in(service, AccountKind.REGULATOR, "33")
    with pytest.raises(PermissionDenied) as denied:
        service.exchange_token(Caller(caller.account_id, caller.kind, caller.jurisdiction,
                                      session_id=caller.session_id, audience="platform:zj"),
                               "zj")
    assert denied.value.reason == "TOKEN_NOT_EXCHANGEABLE"
    with pytest.raises(Unauthenticated):
        service.exchange_token(None, "zj")
    service.logout(caller)
    with pytest.raises(Unauthenticated) as error:
        service.exchange_token(caller, "zj")
    assert error.value.reason == "SESSION_REVOKED"


def test_exchange_for_an_unknown_platform(service: SsoService) -> None:
    caller = signed_in(service, AccountKind.OPS_ADMIN, "")
    with pytest.raises(Exception) as error:
        service.exchange_token(caller, "nowhere")
    assert error.value.reason == "PLATFORM_NOT_FOUND"  # type: ignore[attr-defined]


def test_a_platform_client_signs_in_only_while_its_platform_is_open(
    service: SsoService,
) -> None:
    """Onboarding stages gate bridge access: a platform client of a province whose platform is
    neither being tested nor connected cannot sign in; suspending the platform signs its
    clients out (their sessions are revoked, so every service refuses their tokens)."""
    service.create_account(ADMIN, "req-bridge", AccountInput(
        username="bridge.33", kind=AccountKind.PLATFORM_CLIENT, jurisdiction="33"), PASSWORD)
    zhejiang(service)
    with pytest.raises(FailedPrecondition) as closed:
        service.login("bridge.33", PASSWORD)
    assert closed.value.reason == "PLATFORM_NOT_CONNECTED"

    move(service, "zj", T)
    login = service.login("bridge.33", PASSWORD)
    move(service, "zj", C, S)
    revoked, _ = service.list_revocations(ADMIN, "", 100)
    assert login.tokens.session_id in {r.session_id for r in revoked}
    with pytest.raises((Unauthenticated, FailedPrecondition)):
        service.refresh(login.tokens.refresh_token)
    with pytest.raises(FailedPrecondition):
        service.login("bridge.33", PASSWORD)
