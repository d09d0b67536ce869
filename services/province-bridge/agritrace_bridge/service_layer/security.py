"""Security posture reports and incidents of the provincial platform (the national plan asks
every province to report them). No national service stores them yet, so the bridge keeps them
in its own database and announces each as the event `security_event_reported` through its
outbox, in the same transaction: national ops (and a future national store) consume that."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from agritrace_bridge.domain.status import SecurityEvent, Severity
from agritrace_bridge.service_layer.access import check_acts_for
from agritrace_bridge.service_layer.imports import SERVICE_EVENT_SOURCE
from agritrace_bridge.service_layer.unit_of_work import BridgeUnitOfWork
from agritrace_kernel.auth.principal import Principal
from agritrace_kernel.errors import FieldViolation, InvalidArgument
from agritrace_kernel.events.model import Event

_CATEGORY = re.compile(r"^[A-Z][A-Z0-9_]{0,39}$")
# How far in the future a report's time may lie: the clocks of two platforms differ.
_LEEWAY = timedelta(minutes=5)


class SecurityReports:
    def __init__(self, province: str, uow_factory: Callable[[], BridgeUnitOfWork], *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._province = province
        self._uow = uow_factory
        self._clock = clock

    def report(self, actor: Principal | None, *, request_id: str, category: str,
               severity: Severity | None, summary: str, details: str,
               occur_time: datetime | None) -> tuple[SecurityEvent, bool]:
        """Stores and announces the report; (the event, whether request_id was a replay)."""
        check_acts_for(actor, self._province)
        request_id, summary = request_id.strip(), summary.strip()
        violations = []
        if not 1 <= len(request_id) <= 64:
            violations.append(FieldViolation("request_id", "must be 1-64 characters"))
        if not _CATEGORY.match(category):
            violations.append(FieldViolation("category", "must be UPPER_SNAKE, 1-40 characters"))
        if severity is None:
            violations.append(FieldViolation("severity", "is required"))
        if not 1 <= len(summary) <= 200:
            violations.append(FieldViolation("summary", "must be 1-200 characters"))
        if len(details) > 4000:
            violations.append(FieldViolation("details", "must be at most 4000 characters"))
        now = self._clock()
        if occur_time is not None and occur_time > now + _LEEWAY:
            violations.append(FieldViolation("occur_time", "must not be in the future"))
        if violations:
            raise InvalidArgument(violations)
        assert severity is not None
        with self._uow() as uow:
            known = uow.security.by_request(request_id)
            if known is not None:
                return known, True
            event = SecurityEvent(
                event_id=uuid.uuid4().hex, request_id=request_id, category=category,
                severity=severity, summary=summary, details=details,
                occur_time=occur_time or now, recorded_at=now,
                reported_by=actor.account_id if actor is not None else "")
            uow.security.add(event)
            uow.publish(Event(SERVICE_EVENT_SOURCE, "security_event_reported", {
                "event_id": event.event_id, "province": self._province,
                "category": category, "severity": severity.value, "summary": summary,
                "details": details, "occur_time": event.occur_time.isoformat(),
                "reported_by": event.reported_by}, event_id=event.event_id))
            uow.commit()
        return event, False
