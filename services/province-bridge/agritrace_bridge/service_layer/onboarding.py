"""Onboarding: where the province stands in sso's platform directory, and the conformance
run whose full pass moves it from TESTING to CONNECTED.

sso lets only administrators change a platform's stage (UpdatePlatform) and, while a
platform is in TESTING, exchange tokens for it. So the bridge acts with the caller's own
credentials: run by an administrator, a full pass connects the province; run by the
province's platform client, the report says the stage stays and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from agritrace_bridge.domain.conformance import ConformanceReport
from agritrace_bridge.service_layer.access import check_acts_for
from agritrace_bridge.service_layer.conformance import CheckFailed, ConformanceSuite
from agritrace_bridge.service_layer.national import NationalError
from agritrace_bridge.service_layer.ports import ProvincialPlatform
from agritrace_kernel.auth.principal import Principal, PrincipalKind

TESTING, CONNECTED = "TESTING", "CONNECTED"
UNKNOWN, UNREGISTERED = "UNKNOWN", "UNREGISTERED"


@dataclass(frozen=True)
class PlatformEntry:
    """The province's entry in sso's platform directory."""

    platform_id: str
    province: str
    stage: str  # APPLIED, TESTING, CONNECTED, SUSPENDED


class PlatformDirectory(Protocol):
    """sso's platform directory. `credentials` is the bearer token of the caller on whose
    behalf the bridge acts."""

    def find(self, province: str) -> PlatformEntry | None: ...
    def exchange_token(self, platform_id: str, credentials: str) -> str: ...
    def connect(self, platform_id: str, credentials: str) -> PlatformEntry: ...


@dataclass(frozen=True)
class ConformanceOutcome:
    report: ConformanceReport
    stage: str
    # What happened to the stage, in words.
    stage_change: str


class _ExchangedTokens:
    """The suite's token source: a token sso exchanges for the province's platform."""

    def __init__(self, directory: PlatformDirectory, entry: PlatformEntry | None,
                 credentials: str) -> None:
        self._directory = directory
        self._entry = entry
        self._credentials = credentials

    def exchanged_token(self) -> str:
        if self._entry is None:
            raise CheckFailed("the province has no platform in sso's directory to exchange "
                              "a token for")
        try:
            return self._directory.exchange_token(self._entry.platform_id, self._credentials)
        except NationalError as error:
            raise CheckFailed(f"sso exchanged no token ({error.reason}: {error.message})") \
                from None


class Onboarding:
    def __init__(self, province: str, platform: ProvincialPlatform,
                 directory: PlatformDirectory) -> None:
        self._province = province
        self._platform = platform
        self._directory = directory

    def stage(self) -> str:
        """The province's stage, UNREGISTERED when it has no platform in the directory, or
        UNKNOWN when sso cannot be asked right now."""
        try:
            entry = self._directory.find(self._province)
        except NationalError:
            return UNKNOWN
        return entry.stage if entry is not None else UNREGISTERED

    def run_conformance(self, actor: Principal | None, credentials: str) -> ConformanceOutcome:
        check_acts_for(actor, self._province)
        try:
            entry = self._directory.find(self._province)
        except NationalError as error:
            entry, lookup_error = None, f"{error.reason}: {error.message}"
        else:
            lookup_error = ""
        tokens = _ExchangedTokens(self._directory, entry, credentials)
        report = ConformanceSuite(self._platform, tokens).run()
        if lookup_error:
            return ConformanceOutcome(report, UNKNOWN,
                                      f"unchanged: sso could not be asked ({lookup_error})")
        stage = entry.stage if entry is not None else UNREGISTERED
        if not report.passed:
            return ConformanceOutcome(report, stage, "unchanged: checks failed: "
                                      + ", ".join(report.failed_checks))
        return self._promote(actor, entry, report, credentials)

    def _promote(self, actor: Principal | None, entry: PlatformEntry | None,
                 report: ConformanceReport, credentials: str) -> ConformanceOutcome:
        if entry is None:
            return ConformanceOutcome(report, UNREGISTERED, "unchanged: the province has no "
                                      "platform in sso's directory (RegisterPlatform first)")
        if entry.stage != TESTING:
            return ConformanceOutcome(report, entry.stage, f"unchanged: the platform is "
                                      f"{entry.stage}; only a platform in TESTING is connected")
        if actor is None or actor.kind is not PrincipalKind.OPS_ADMIN:
            return ConformanceOutcome(report, entry.stage, "unchanged: sso lets only "
                                      "administrators change a platform's stage "
                                      "(UpdatePlatform); run the suite as an administrator")
        try:
            connected = self._directory.connect(entry.platform_id, credentials)
        except NationalError as error:
            return ConformanceOutcome(report, entry.stage, f"unchanged: sso refused "
                                      f"({error.reason}: {error.message})")
        return ConformanceOutcome(report, connected.stage, f"moved to {connected.stage}")
