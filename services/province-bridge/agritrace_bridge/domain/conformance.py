"""The conformance suite's verdicts: one result per check, and the report whose full pass moves
a province from testing to connected in the platform directory."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

# The checks, in the order they run; their names are stable (reports and alerts use them).
CHECKS = (
    "health",
    "subjects_first_page",
    "subjects_complete",
    "subjects_stable",
    "trace_records",
    "push_accepted",
    "push_idempotent",
    "push_conflict",
    "token_verifies",
)


class Outcome(StrEnum):
    PASSED = "PASSED"
    FAILED = "FAILED"
    # The platform's kind of adapter cannot do this at all (a drop folder verifies no tokens).
    NOT_APPLICABLE = "NOT_APPLICABLE"


@dataclass(frozen=True)
class CheckResult:
    name: str
    outcome: Outcome
    # Why it failed (or was not applicable), in words; never personal data.
    detail: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class ConformanceReport:
    province: str
    started_at: datetime
    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        """Every check passed or does not apply, and at least one passed."""
        return all(r.outcome is not Outcome.FAILED for r in self.results) and any(
            r.outcome is Outcome.PASSED for r in self.results)

    @property
    def failed_checks(self) -> list[str]:
        return [r.name for r in self.results if r.outcome is Outcome.FAILED]

    def result(self, name: str) -> CheckResult:
        return next(r for r in self.results if r.name == name)
