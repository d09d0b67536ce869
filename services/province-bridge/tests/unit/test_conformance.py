"""The conformance suite: passes against the simulator, fails naming the check against a
simulator that breaks the contract, and judges what a small fake platform does wrong."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from agritrace_bridge.adapters.drop_folder import DropFolderProvincialPlatform
from agritrace_bridge.adapters.rest import RestProvincialPlatform
from agritrace_bridge.contract import (
    Health,
    NationalRecord,
    PushResult,
    Subject,
    SubjectPage,
    TokenVerification,
    TraceRecordPage,
)
from agritrace_bridge.domain.conformance import CHECKS, Outcome
from agritrace_bridge.service_layer.conformance import ConformanceSuite
from agritrace_bridge.service_layer.ports import PlatformRejected
from agritrace_bridge.simulator import SimulatorServer

Admin = Callable[..., httpx.Response]
SetFaults = Callable[..., None]
RestAdapter = Callable[..., RestProvincialPlatform]
NOW = datetime(2024, 5, 1, tzinfo=UTC)


@pytest.fixture
def keyed_simulator(start_simulator: Callable[..., SimulatorServer], admin: Admin,
                    national_keys: Any) -> SimulatorServer:
    """A simulator of 1,100 subjects (two full pages) with some production records,
    holding the national keys (as a connected province does)."""
    server = start_simulator(subjects=1100, initial_records=30)
    admin(server, "PUT", "jwks", national_keys.jwks)
    return server


def test_the_simulator_passes_every_check(keyed_simulator: SimulatorServer,
                                          national_keys: Any, rest_adapter: RestAdapter
                                          ) -> None:
    platform = rest_adapter(keyed_simulator.url)
    report = ConformanceSuite(platform, national_keys).run()
    assert [r.name for r in report.results] == list(CHECKS)
    assert report.passed, report.failed_checks
    assert {r.outcome for r in report.results} == {Outcome.PASSED}
    pushed = keyed_simulator.platform.stats()["pushed"]
    assert pushed == 1  # the conformance record, once


@pytest.mark.parametrize(("mode", "reason"), [("skip", "a full pass returned"),
                                              ("repeat", "PAGE_TOKEN_REPEATED")])
def test_broken_pagination_fails_naming_the_check(
        keyed_simulator: SimulatorServer, national_keys: Any, set_faults: SetFaults,
        mode: str, reason: str, rest_adapter: RestAdapter) -> None:
    set_faults(keyed_simulator, broken_pagination=mode)
    platform = rest_adapter(keyed_simulator.url)
    report = ConformanceSuite(platform, national_keys).run()
    assert not report.passed
    assert "subjects_complete" in report.failed_checks
    assert reason in report.result("subjects_complete").detail
    assert report.result("push_accepted").outcome is Outcome.PASSED


def test_without_an_exchanged_token_the_token_check_fails(
        keyed_simulator: SimulatorServer, rest_adapter: RestAdapter) -> None:
    platform = rest_adapter(keyed_simulator.url)
    report = ConformanceSuite(platform).run()
    assert report.failed_checks == ["token_verifies"]


def test_a_platform_without_the_national_keys_fails_the_token_check(
        start_simulator: Callable[..., SimulatorServer], national_keys: Any,
        rest_adapter: RestAdapter) -> None:
    platform = rest_adapter(start_simulator().url)
    report = ConformanceSuite(platform, national_keys).run()
    assert report.failed_checks == ["token_verifies"]
    assert report.result("token_verifies").detail.startswith("KEYS_UNAVAILABLE")


def test_a_platform_that_is_down_fails_everything(
        keyed_simulator: SimulatorServer, national_keys: Any, set_faults: SetFaults,
        rest_adapter: RestAdapter) -> None:
    set_faults(keyed_simulator, down=True)
    platform = rest_adapter(keyed_simulator.url)
    report = ConformanceSuite(platform, national_keys).run()
    assert report.failed_checks == list(CHECKS)
    assert report.result("health").detail.startswith("UNREACHABLE")


def test_a_drop_folder_passes_and_token_verification_does_not_apply(
        tmp_path: Path, national_keys: Any) -> None:
    folder = DropFolderProvincialPlatform(tmp_path, "37")
    (folder.inbox / "subjects.csv").write_text(
        "source_record_id,kind,name\n37-1,ENTERPRISE,甲\n37-2,ENTERPRISE,乙\n",
        encoding="utf-8")
    report = ConformanceSuite(folder, national_keys).run()
    assert report.passed, report.failed_checks
    assert report.result("token_verifies").outcome is Outcome.NOT_APPLICABLE


class FakePlatform:
    """An in-memory platform that can be told to break the contract in small ways."""

    province = "37"

    def __init__(self, ids: list[str], *, page: int = 1000, forgets_pushes: bool = False,
                 accepts_conflicts: bool = False, accepts_forgeries: bool = False) -> None:
        self.ids = ids
        self.page = page
        self.forgets_pushes = forgets_pushes
        self.accepts_conflicts = accepts_conflicts
        self.accepts_forgeries = accepts_forgeries
        self.pushed: dict[str, NationalRecord] = {}
        self.token = ""

    def health(self) -> Health:
        return Health(status="degraded", province="37")

    def list_subjects(self, page_token: str = "", page_size: int = 0) -> SubjectPage:
        start = int(page_token or 0)
        end = start + min(page_size or 500, self.page)
        return SubjectPage(
            subjects=[Subject(source_record_id=i, kind="ENTERPRISE", name="x")
                      for i in self.ids[start:end]],
            next_page_token=str(end) if end < len(self.ids) else "",
            total_size=len(self.ids))

    def list_trace_records(self, cursor: str = "", limit: int = 0) -> TraceRecordPage:
        return TraceRecordPage(records=[], next_cursor=cursor)

    def push_national_record(self, record: NationalRecord) -> PushResult:
        held = self.pushed.get(record.record_id)
        if held is not None and held != record and not self.accepts_conflicts:
            raise PlatformRejected("conflict", reason="RECORD_CONFLICT", status=409)
        if not self.forgets_pushes:
            self.pushed[record.record_id] = record
        return PushResult(record_id=record.record_id, accepted_time=NOW,
                          replayed=held is not None)

    def verify_token(self, token: str) -> TokenVerification:
        return TokenVerification(active=token == self.token or self.accepts_forgeries)

    def close(self) -> None:
        pass


class Tokens:
    def exchanged_token(self) -> str:
        return "header.claims.signature"


def judge(platform: FakePlatform) -> dict[str, str]:
    platform.token = Tokens().exchanged_token()
    report = ConformanceSuite(platform, Tokens(), clock=lambda: NOW,
                              new_id=lambda: "fixed").run()
    return {r.name: r.detail for r in report.results if r.outcome is Outcome.FAILED}


def test_a_fake_platform_that_keeps_the_contract_passes() -> None:
    ids = [f"37-{i:04d}" for i in range(2100)]
    assert judge(FakePlatform(ids)) == {"health": "the platform reports itself degraded"}


@pytest.mark.parametrize(("platform", "check", "detail"), [
    (FakePlatform(["a", "b", "b", "c"]), "subjects_complete", "subject b came twice"),
    (FakePlatform(["a", "c", "b"]), "subjects_complete", "not in source_record_id order"),
    (FakePlatform(["a"] * 3, page=1), "subjects_complete", "came twice"),
    (FakePlatform(["a"], forgets_pushes=True), "push_idempotent", "not answered as a replay"),
    (FakePlatform(["a"], accepts_conflicts=True), "push_conflict", "was accepted"),
    (FakePlatform(["a"], accepts_forgeries=True), "token_verifies", "broken signature"),
])
def test_each_breach_fails_its_check(platform: FakePlatform, check: str, detail: str) -> None:
    failed = judge(platform)
    assert check in failed and detail in failed[check]
