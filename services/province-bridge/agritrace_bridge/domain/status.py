"""What the bridge reports about itself: per direction, what waits, what failed and when a
delivery last succeeded; and the province's security reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


@dataclass(frozen=True)
class DirectionStatus:
    queue_depth: int = 0
    dead_letters: int = 0
    # Age of the oldest record waiting, in seconds (0 when none waits).
    lag_seconds: float = 0.0
    delivered: int = 0
    errors: int = 0
    last_success_at: datetime | None = None
    last_error: str = ""


class Severity(StrEnum):
    INFO = "INFO"
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


@dataclass(frozen=True)
class SecurityEvent:
    """A security posture report or incident of the provincial platform (no personal data:
    the reporter is an account id)."""

    event_id: str
    request_id: str
    category: str
    severity: Severity
    summary: str
    details: str
    occur_time: datetime
    recorded_at: datetime
    reported_by: str
