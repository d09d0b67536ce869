"""Internal trace in: production-process records are read from the province after the
bridge's cursor and kept in the bridge's inbox, the cursor moving in the same transaction
(store first: passing a cursor tells the platform it may forget what lies before it); then
handed to flow's CaptureRecords oldest first and marked with flow's answer. While flow is
unreachable records wait in the inbox and go when it returns (retries with exponential
backoff and jitter); flow is idempotent by (province, record id), so a resend after a crash
is answered REPLAYED and nothing is applied twice."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from agritrace_bridge.contract import MAX_RECORD_LIMIT
from agritrace_bridge.domain.inbound import TRACE_CURSOR
from agritrace_bridge.domain.retry import DEFAULT_BACKOFF, Backoff
from agritrace_bridge.service_layer.national import NationalError, TraceCapture
from agritrace_bridge.service_layer.observe import NO_OBSERVER, Direction, SyncObserver
from agritrace_bridge.service_layer.ports import PlatformError, ProvincialPlatform
from agritrace_bridge.service_layer.unit_of_work import BridgeUnitOfWork

log = logging.getLogger(__name__)

# How often to ask the province for changes when it said none were waiting.
POLL_SECONDS = 1.0
# Records per CaptureRecords call (flow takes up to 5,000 a message).
DELIVERY_BATCH = 500


class InboundTrace:
    def __init__(self, province: str, uow_factory: Callable[[], BridgeUnitOfWork],
                 platform: ProvincialPlatform, flow: TraceCapture, *,
                 page_size: int = MAX_RECORD_LIMIT, batch_size: int = DELIVERY_BATCH,
                 backoff: Backoff = DEFAULT_BACKOFF, observer: SyncObserver = NO_OBSERVER,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._province = province
        self._uow = uow_factory
        self._platform = platform
        self._flow = flow
        self._page_size = page_size
        self._batch_size = batch_size
        self._backoff = backoff
        self._observer = observer
        self._clock = clock
        # Consecutive failures on each side (they set the backoff).
        self._pull_failures = 0
        self._delivery_failures = 0

    def step(self) -> float:
        """One round: read what the province has (a page), deliver what waits (a batch).
        How long to wait before the next round: 0 while there is more, the poll interval
        when all is done, a backoff after failures."""
        more_to_read, read_wait = self._pull()
        more_to_deliver, deliver_wait = self._deliver()
        backoffs = [wait for wait in (read_wait, deliver_wait) if wait]
        if backoffs:  # a side failed: try again after the shorter backoff
            return min(backoffs)
        return 0.0 if more_to_read or more_to_deliver else POLL_SECONDS

    def _pull(self) -> tuple[bool, float]:
        with self._uow() as uow:
            cursor = uow.inbox.cursor(TRACE_CURSOR)
        try:
            page = self._platform.list_trace_records(cursor, self._page_size)
        except PlatformError as error:
            self._pull_failures += 1
            self._failed(error.reason, f"{error.reason}: {error.message}", error.retryable)
            return False, self._backoff.delay(self._pull_failures,
                                              at_least=error.retry_after or 0.0)
        self._pull_failures = 0
        with self._uow() as uow:
            new = uow.inbox.add(page.records, self._clock())
            uow.inbox.set_cursor(TRACE_CURSOR, page.next_cursor, self._clock())
            uow.commit()
        if new:
            log.info("%d internal-trace records read from province %s", new, self._province)
        return page.has_more, 0.0

    def _deliver(self) -> tuple[bool, float]:
        with self._uow() as uow:
            pending = uow.inbox.pending(self._batch_size)
        if not pending:
            return False, 0.0
        try:
            outcomes = self._flow.capture(self._province, [p.record for p in pending])
        except NationalError as error:
            self._delivery_failures += 1
            with self._uow() as uow:
                uow.inbox.attempted([p.seq for p in pending], str(error))
                uow.commit()
            self._failed(error.reason, str(error), error.retryable)
            return True, self._backoff.delay(self._delivery_failures)
        if len(outcomes) != len(pending):
            raise RuntimeError(f"flow answered {len(pending)} records with {len(outcomes)} "
                               "outcomes")
        self._delivery_failures = 0
        now = self._clock()
        refused = [o for o in outcomes if o.outcome == "REFUSED"]
        with self._uow() as uow:
            uow.inbox.settle([(p.seq, o) for p, o in zip(pending, outcomes, strict=True)],
                             now)
            uow.sync.note_delivered(Direction.INBOUND, len(outcomes) - len(refused), now)
            for outcome in refused:
                uow.sync.note_error(Direction.INBOUND, outcome.error)
            uow.commit()
        self._observer.moved(Direction.INBOUND, len(outcomes) - len(refused))
        self._observer.succeeded(Direction.INBOUND)
        for outcome in refused:
            self._observer.failed(Direction.INBOUND, outcome.error.partition(":")[0])
        return len(pending) == self._batch_size, 0.0

    def _failed(self, reason: str, message: str, retryable: bool) -> None:
        with self._uow() as uow:
            uow.sync.note_error(Direction.INBOUND, message)
            uow.commit()
        if retryable:
            self._observer.retried(Direction.INBOUND, reason)
        else:
            self._observer.failed(Direction.INBOUND, reason)
        log.warning("internal trace of province %s: %s", self._province, message)
