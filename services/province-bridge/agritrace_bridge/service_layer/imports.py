"""The historical import: pages through the province's subjects into the registry's
ImportSubjects, one provincial page per registry call, committing the checkpoint (the next
page token) with the page's outcomes after each acknowledged page."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from agritrace_bridge.contract import MAX_PAGE_SIZE, Subject
from agritrace_bridge.domain.imports import ImportRun, Outcome, RecordOutcome, RunState
from agritrace_bridge.domain.retry import DEFAULT_BACKOFF, Backoff
from agritrace_bridge.service_layer.access import check_acts_for
from agritrace_bridge.service_layer.national import NationalError, SubjectImporter
from agritrace_bridge.service_layer.observe import NO_OBSERVER, Direction, SyncObserver
from agritrace_bridge.service_layer.ports import PlatformError, ProvincialPlatform
from agritrace_bridge.service_layer.unit_of_work import BridgeUnitOfWork
from agritrace_kernel.auth.principal import Principal
from agritrace_kernel.errors import InvalidArgument, NotFound
from agritrace_kernel.events.model import Event
from agritrace_kernel.paging import decode_token, encode_token

log = logging.getLogger(__name__)

SERVICE_EVENT_SOURCE = "province-bridge"
_REDACTED = "***"


def _redacted(text: str, subject: Subject) -> str:
    """`text` with the subject's personal values blotted out, should an answer quote them."""
    for value in (subject.resident_id, subject.contact_phone):
        if value:
            text = text.replace(value, _REDACTED)
    return text


@dataclass(frozen=True)
class ReportPage:
    run: ImportRun
    outcomes: list[RecordOutcome]
    next_page_token: str


class HistoricalImport:
    def __init__(self, province: str, uow_factory: Callable[[], BridgeUnitOfWork],
                 platform: ProvincialPlatform, importer: SubjectImporter, *,
                 page_size: int = MAX_PAGE_SIZE, backoff: Backoff = DEFAULT_BACKOFF,
                 observer: SyncObserver = NO_OBSERVER,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self._province = province
        self._uow = uow_factory
        self._platform = platform
        self._importer = importer
        self._page_size = page_size
        self._backoff = backoff
        self._observer = observer
        self._clock = clock
        self._new_id = new_id
        # Set whenever a run may have to be picked up (started, resumed).
        self.wake = threading.Event()

    # -- commands ---------------------------------------------------------------------------

    def start(self, actor: Principal | None, request_id: str) -> ImportRun:
        """Starts an import, or answers the one that is already running; a failed run is
        resumed from its checkpoint. Idempotent by `request_id`."""
        check_acts_for(actor, self._province)
        request_id = request_id.strip()
        if not 1 <= len(request_id) <= 64:
            raise InvalidArgument.of("request_id", "must be 1-64 characters")
        with self._uow() as uow:
            run = uow.imports.by_request(request_id)
            if run is None:
                latest = uow.imports.latest()
                now = self._clock()
                if latest is not None and latest.state is RunState.RUNNING:
                    run = latest
                elif latest is not None and latest.state is RunState.FAILED:
                    run = latest.resumed(now)
                    uow.imports.save(run)
                else:
                    run = ImportRun(import_id=f"import-{self._province}-{self._new_id()}",
                                    province=self._province, request_id=request_id,
                                    state=RunState.RUNNING, started_at=now, updated_at=now)
                    uow.imports.add(run)
                    uow.publish(Event(SERVICE_EVENT_SOURCE, "import_started", {
                        "import_id": run.import_id, "province": self._province}))
                uow.commit()
        if run.active:
            self.wake.set()
        return run

    def run_pending(self, stop: threading.Event) -> ImportRun | None:
        """Works on the running import (if any) until it completes, fails or `stop` is
        set; what a bridge does after a restart, too."""
        with self._uow() as uow:
            run = uow.imports.latest()
        if run is None or not run.active:
            return run
        log.info("import %s: resuming at page %d", run.import_id, run.pages + 1)
        while run.active and not stop.is_set():
            run = self._step(run, stop)
        return run

    # -- queries ----------------------------------------------------------------------------

    def get(self, import_id: str = "") -> ImportRun:
        """A run by id, or the latest one."""
        with self._uow() as uow:
            run = uow.imports.get(import_id) if import_id else uow.imports.latest()
        if run is None:
            raise NotFound(f"no import {import_id or 'has been started'}",
                           reason="IMPORT_NOT_FOUND")
        return run

    def report(self, actor: Principal | None, import_id: str, page_token: str,
               page_size: int, only: Outcome | None = None) -> ReportPage:
        check_acts_for(actor, self._province)
        run = self.get(import_id)
        after = ""
        if page_token:
            parts = decode_token(page_token, "page_token", 3)
            if parts[0] != run.import_id or parts[1] != (only or ""):
                raise InvalidArgument.of("page_token", "belongs to another listing")
            after = str(parts[2])
        with self._uow() as uow:
            rows = uow.imports.outcomes(run.import_id, after, page_size + 1, only)
        more = len(rows) > page_size
        rows = rows[:page_size]
        token = encode_token([run.import_id, only or "", rows[-1].source_record_id]) \
            if more else ""
        return ReportPage(run, rows, token)

    # -- one page ---------------------------------------------------------------------------

    def _step(self, run: ImportRun, stop: threading.Event) -> ImportRun:
        """Imports the page at the checkpoint; on an error a retry may fix, waits (backoff
        with jitter) and answers the run unchanged but for its attempt count."""
        try:
            page = self._platform.list_subjects(run.page_token, self._page_size)
            outcomes = self._importer.import_page(run.import_id, self._province, page.subjects)
        except (PlatformError, NationalError) as error:
            reason = f"{error.reason}: {error.message}"
            if not error.retryable:
                log.error("import %s failed: %s", run.import_id, reason)
                self._observer.failed(Direction.IMPORT, error.reason)
                return self._save(run.failed(reason, self._clock()))
            run = self._save(run.retrying(reason, self._clock()))
            self._observer.retried(Direction.IMPORT, error.reason)
            retry_after = getattr(error, "retry_after", None) or 0.0
            delay = self._backoff.delay(run.attempts, at_least=retry_after)
            log.warning("import %s: page %d failed (%s), retry %d in %.1fs", run.import_id,
                        run.pages + 1, error.reason, run.attempts, delay)
            stop.wait(delay)
            return run
        if len(outcomes) != len(page.subjects):
            # A registry that answers some records only would leave the rest unreported.
            return self._save(run.failed(
                f"ANSWER_MISMATCH: {len(page.subjects)} records answered with "
                f"{len(outcomes)} outcomes", self._clock()))
        by_id = {s.source_record_id: s for s in page.subjects}
        outcomes = [RecordOutcome(o.source_record_id, o.outcome, o.subject_id,
                                  _redacted(o.field, by_id[o.source_record_id]),
                                  _redacted(o.reason, by_id[o.source_record_id]))
                    if o.source_record_id in by_id else o for o in outcomes]
        with self._uow() as uow:
            known = uow.imports.known(run.import_id, [o.source_record_id for o in outcomes])
            new = [o for o in outcomes if o.source_record_id not in known]
            uow.imports.add_outcomes(run.import_id, new)
            run = run.after_page(page.next_page_token, page.total_size, new, self._clock())
            uow.imports.save(run)
            if run.state is RunState.COMPLETED:
                uow.publish(Event(SERVICE_EVENT_SOURCE, "import_completed", {
                    "import_id": run.import_id, "province": self._province,
                    "created": run.counts.created, "merged": run.counts.merged,
                    "conflict": run.counts.conflict, "rejected": run.counts.rejected}))
            uow.commit()
        self._observer.moved(Direction.IMPORT, len(new))
        self._observer.succeeded(Direction.IMPORT)
        log.info("import %s: page %d stored (%d records, %d/%d done)", run.import_id,
                 run.pages, len(outcomes), run.counts.total, run.total_size)
        return run

    def _save(self, run: ImportRun) -> ImportRun:
        with self._uow() as uow:
            uow.imports.save(run)
            uow.commit()
        return run
