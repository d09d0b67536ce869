"""The province launcher's onboarding (sso's use cases on a SQLite sso of a temp directory)
and its options; the processes themselves are tested in
tests/integration/test_demo_provinces.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from agritrace_kernel.config import Settings
from agritrace_kernel.errors import Unauthenticated
from agritrace_platform.provinces import (
    Options,
    _simulator_args,
    onboard_provinces,
    parse_options,
)
from agritrace_sso import bootstrap as sso_bootstrap
from agritrace_sso.domain.model import AccountKind, Caller, OnboardingStage, PlatformInput

ADMIN = Caller(account_id="test-admin", kind=AccountKind.OPS_ADMIN)


def _signs_in(settings: Settings, username: str, password: str) -> bool:
    app = sso_bootstrap.bootstrap(settings)
    try:
        app.service.login(username, password)
        return True
    except Unauthenticated:
        return False
    finally:
        app.close()


def _stage(settings: Settings, platform_id: str) -> OnboardingStage:
    app = sso_bootstrap.bootstrap(settings)
    try:
        platforms, _ = app.service.list_platforms(100, "")
        return next(p.stage for p in platforms if p.platform_id == platform_id)
    finally:
        app.close()


def test_a_province_is_onboarded_in_testing_with_a_platform_client_of_its_own(
        tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)

    [first] = onboard_provinces(settings, ["37"])

    assert (first.province, first.platform_id, first.stage, first.username) == (
        "37", "province-37", "TESTING", "bridge-37")
    assert _signs_in(settings, "bridge-37", first.password)
    app = sso_bootstrap.bootstrap(settings)
    try:
        clients, _ = app.service.list_accounts(ADMIN, AccountKind.PLATFORM_CLIENT, 100, "")
    finally:
        app.close()
    assert [(a.username, a.jurisdiction) for a in clients] == [("bridge-37", "37")]


def test_a_second_start_keeps_the_platform_and_changes_the_password(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    [first] = onboard_provinces(settings, ["37"])
    app = sso_bootstrap.bootstrap(settings)
    try:  # the administrator connected the province in between (a conformance pass)
        app.service.update_platform(ADMIN, "province-37",
                                    PlatformInput(stage=OnboardingStage.CONNECTED), ["stage"])
    finally:
        app.close()

    [again, other] = onboard_provinces(settings, ["37", "11"])

    assert (again.stage, other.stage) == ("CONNECTED", "TESTING")
    assert _stage(settings, "province-37") is OnboardingStage.CONNECTED
    assert again.password != first.password
    assert not _signs_in(settings, "bridge-37", first.password)
    assert _signs_in(settings, "bridge-37", again.password)
    assert _signs_in(settings, "bridge-11", other.password)


def test_options_take_known_province_codes_once() -> None:
    options = parse_options(["37", "11", "37", "--subjects", "50", "--shared", "5"])
    assert (options.provinces, options.subjects, options.shared) == (("37", "11"), 50, 5)
    for bad in (["99"], ["3"], ["37", "--subjects", "-1"], ["37", "--subjects", "4",
                                                            "--shared", "5"]):
        with pytest.raises(SystemExit):
            parse_options(bad)


def test_only_the_first_two_provinces_share_subjects() -> None:
    options = Options(("37", "11", "33"), subjects=50, records=0, record_rate=0, shared=5,
                      seed=1)

    def overlap(province: str) -> list[str]:
        args = _simulator_args(options, province, "127.0.0.1:50051")
        return args[args.index("--shared-with"):] if "--shared-with" in args else []

    assert overlap("37") == ["--shared-with", "11", "--shared", "5"]
    assert overlap("11") == ["--shared-with", "37", "--shared", "5"]
    assert overlap("33") == []
