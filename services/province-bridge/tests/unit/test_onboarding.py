"""Security reports and the conformance run that connects a province, over fakes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from agritrace_bridge.domain.status import Severity
from agritrace_bridge.service_layer.onboarding import Onboarding, PlatformEntry
from agritrace_bridge.service_layer.security import SecurityReports
from agritrace_bridge.service_layer.status import StatusQuery
from agritrace_kernel.auth.principal import Principal, PrincipalKind
from agritrace_kernel.errors import InvalidArgument, PermissionDenied

ADMIN = Principal("admin", PrincipalKind.OPS_ADMIN, "admin", "", "", frozenset(), "s", "")


def client(province: str) -> Principal:
    return Principal(f"acct-{province}", PrincipalKind.PLATFORM_CLIENT, f"bridge-{province}",
                     "", province, frozenset(), "s", "")


@pytest.fixture
def reports(uow_factory: Any, clock: Any) -> SecurityReports:
    return SecurityReports("37", uow_factory, clock=clock)


def report(reports: SecurityReports, actor: Principal, **changes: Any) -> Any:
    values = {"request_id": "r1", "category": "INTRUSION", "severity": Severity.HIGH,
              "summary": "blocked brute force on the portal", "details": "", "occur_time": None,
              **changes}
    return reports.report(actor, **values)


def test_a_security_event_is_stored_once_and_announced(
        reports: SecurityReports, database: Any, clock: Any) -> None:
    event, replayed = report(reports, client("37"))
    again, replayed_again = report(reports, client("37"), summary="changed")
    assert (replayed, replayed_again, again) == (False, True, event)
    assert (event.occur_time, event.reported_by) == (clock.now, "acct-37")
    [announced] = database.published
    assert (announced.name, announced.event_id) == ("security_event_reported", event.event_id)
    assert announced.payload["province"] == "37" and announced.payload["severity"] == "HIGH"


def test_a_security_event_is_checked_and_only_taken_from_the_own_province(
        reports: SecurityReports, clock: Any, database: Any) -> None:
    with pytest.raises(PermissionDenied):
        report(reports, client("11"))
    with pytest.raises(InvalidArgument) as bad:
        report(reports, ADMIN, request_id="", category="intrusion", severity=None,
               summary=" ", details="x" * 4001, occur_time=clock.now + timedelta(hours=1))
    assert {v.field for v in bad.value.violations} == {
        "request_id", "category", "severity", "summary", "details", "occur_time"}
    assert database.published == []


@pytest.fixture
def platform(fake: Any) -> Any:
    return fake.FakePlatform([fake.subject(n) for n in range(1, 30)])


def onboarding(fake: Any, platform: Any, stage: str) -> tuple[Onboarding, Any]:
    directory = fake.FakeDirectory([PlatformEntry("province-37", "37", stage)])
    return Onboarding("37", platform, directory), directory


def test_a_full_pass_run_by_an_administrator_connects_a_province_in_testing(
        fake: Any, platform: Any) -> None:
    use_case, directory = onboarding(fake, platform, "TESTING")
    outcome = use_case.run_conformance(ADMIN, "admin-token")
    assert outcome.report.passed, outcome.report.results
    assert (outcome.stage, outcome.stage_change) == ("CONNECTED", "moved to CONNECTED")
    assert directory.find("37").stage == "CONNECTED" and use_case.stage() == "CONNECTED"


def test_the_stage_stays_when_checks_fail_or_the_caller_may_not_change_it(
        fake: Any, platform: Any) -> None:
    use_case, _ = onboarding(fake, platform, "TESTING")
    own = use_case.run_conformance(client("37"), "client-token")
    assert own.report.failed_checks == ["token_verifies"]
    assert "sso exchanged no token (NOT_PERMITTED" in own.report.result("token_verifies").detail
    assert own.stage == "TESTING" and own.stage_change.startswith("unchanged: checks failed")

    platform.verifies_tokens = False  # a drop folder: the check does not apply
    passed = use_case.run_conformance(client("37"), "client-token")
    assert passed.report.passed and passed.stage == "TESTING"
    assert "only administrators" in passed.stage_change

    with pytest.raises(PermissionDenied):
        use_case.run_conformance(client("11"), "client-token")
    suspended, _ = onboarding(fake, platform, "SUSPENDED")
    assert "SUSPENDED" in suspended.run_conformance(ADMIN, "admin-token").stage_change
    unknown = Onboarding("37", platform, fake.FakeDirectory())
    assert unknown.stage() == "UNREGISTERED"
    assert "RegisterPlatform" in unknown.run_conformance(ADMIN, "admin-token").stage_change


def test_the_status_tells_each_direction_and_the_stage(
        fake: Any, platform: Any, uow_factory: Any, clock: Any) -> None:
    use_case, _ = onboarding(fake, platform, "TESTING")
    status = StatusQuery("37", "rest", uow_factory, use_case, clock=clock)
    answer = status.get(client("37"))
    assert (answer.province, answer.adapter, answer.onboarding_stage) == ("37", "rest",
                                                                          "TESTING")
    assert answer.latest_import is None and answer.outbound.queue_depth == 0
    with pytest.raises(PermissionDenied):
        status.get(client("11"))
