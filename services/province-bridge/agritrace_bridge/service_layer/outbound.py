"""National records out: the worker queues each national event that concerns the province
(once: its inbox drops re-deliveries), the pusher delivers what is due to the provincial
platform, retrying with exponential backoff and jitter, and dead-letters a record after
`max_attempts` failures or at once when the platform refuses it; ReplayDeadLetters queues
dead letters again."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from agritrace_bridge.contract import NationalRecord
from agritrace_bridge.domain.outbound import QueuedRecord, concerns, national_record
from agritrace_bridge.domain.retry import DEFAULT_BACKOFF, Backoff
from agritrace_bridge.service_layer.access import check_acts_for
from agritrace_bridge.service_layer.observe import NO_OBSERVER, Direction, SyncObserver
from agritrace_bridge.service_layer.ports import PlatformError, ProvincialPlatform
from agritrace_bridge.service_layer.unit_of_work import BridgeUnitOfWork
from agritrace_kernel.auth.principal import Principal
from agritrace_kernel.errors import InvalidArgument
from agritrace_kernel.events.model import Event

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 8


class NationalEventIntake:
    """The worker's side: an IdempotentHandler's handler that queues the record of a
    national event concerning the province, in the handler's own transaction (with the
    inbox claim), so a redelivered event queues nothing."""

    def __init__(self, province: str, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._province = province
        self._clock = clock

    def handle(self, event: Event, uow: Any) -> None:
        if not concerns(self._province, event.source, event.name, event.payload):
            return
        record = national_record(event.event_id, event.name, event.occurred_at,
                                 event.payload, self._clock())
        if uow.outbound.enqueue(record, self._clock()):
            log.info("national record %s (%s) queued for province %s", record.record_id,
                     record.type, self._province)


class OutboundQueue:
    def __init__(self, province: str, uow_factory: Callable[[], BridgeUnitOfWork],
                 platform: ProvincialPlatform, *, backoff: Backoff = DEFAULT_BACKOFF,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                 observer: SyncObserver = NO_OBSERVER,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._province = province
        self._uow = uow_factory
        self._platform = platform
        self._backoff = backoff
        self._max_attempts = max_attempts
        self._observer = observer
        self._clock = clock

    # -- the pusher's side ------------------------------------------------------------------

    def push_due(self, limit: int = 100) -> int:
        """Pushes the records due now (oldest first); how many were delivered. Stops at the
        first failure a retry may fix: the platform is probably down for all of them."""
        with self._uow() as uow:
            due = uow.outbound.due(self._clock(), limit)
        delivered = 0
        for record in due:
            try:
                self._platform.push_national_record(NationalRecord(
                    record_id=record.record_id, type=record.type, occur_time=record.occur_time,
                    subject_id=record.subject_id, payload=dict(record.payload)))
            except PlatformError as error:
                self._failed(record, error)
                if error.retryable:
                    break
                continue
            with self._uow() as uow:
                now = self._clock()
                uow.outbound.delivered(record.record_id, now)
                uow.sync.note_delivered(Direction.OUTBOUND, 1, now)
                uow.commit()
            delivered += 1
        if delivered:
            self._observer.moved(Direction.OUTBOUND, delivered)
            self._observer.succeeded(Direction.OUTBOUND)
        return delivered

    def _failed(self, record: QueuedRecord, error: PlatformError) -> None:
        attempts = record.attempts + 1
        reason = f"{error.reason}: {error.message}"
        now = self._clock()
        with self._uow() as uow:
            uow.sync.note_error(Direction.OUTBOUND, reason)
            if not error.retryable or attempts >= self._max_attempts:
                uow.outbound.dead(record.record_id, attempts, reason, now)
                self._observer.failed(Direction.OUTBOUND, error.reason)
                log.warning("national record %s dead-lettered after %d attempts: %s",
                            record.record_id, attempts, error.reason)
            else:
                delay = self._backoff.delay(attempts, at_least=error.retry_after or 0.0)
                uow.outbound.retry_later(record.record_id, attempts,
                                         now + timedelta(seconds=delay), reason)
                self._observer.retried(Direction.OUTBOUND, error.reason)
            uow.commit()

    def seconds_to_next(self, ceiling: float) -> float:
        """How long the pusher may sleep before a record falls due (at most `ceiling`)."""
        with self._uow() as uow:
            due = uow.outbound.next_due()
        if due is None:
            return ceiling
        return min(ceiling, max(0.0, (due - self._clock()).total_seconds()))

    # -- operators --------------------------------------------------------------------------

    def replay_dead_letters(self, actor: Principal | None, record_ids: Sequence[str]) -> int:
        check_acts_for(actor, self._province)
        if any(not 1 <= len(i.strip()) <= 64 for i in record_ids):
            raise InvalidArgument.of("record_ids", "each must be 1-64 characters")
        with self._uow() as uow:
            replayed = uow.outbound.replay([i.strip() for i in record_ids], self._clock())
            uow.commit()
        log.info("%d dead letters queued again", replayed)
        return replayed
