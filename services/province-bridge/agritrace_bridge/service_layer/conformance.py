"""The conformance suite: does a provincial platform keep the contract?

Each check calls the platform through its adapter (the port) and passes, fails with a reason,
or does not apply to the adapter. Every check runs even when an earlier one failed, so one
report shows everything a province has to fix. A full pass is what moves the province from
testing to connected (the ProvinceBridgeService's RunConformance reports it).

The push checks leave records of type CONFORMANCE_CHECK on the platform; the contract lets a
platform discard them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from agritrace_bridge.contract import MAX_PAGE_SIZE, NationalRecord
from agritrace_bridge.domain.conformance import (
    CHECKS,
    CheckResult,
    ConformanceReport,
    Outcome,
)
from agritrace_bridge.service_layer.ports import (
    NotSupported,
    PlatformError,
    PlatformRejected,
    ProvincialPlatform,
)

CONFORMANCE_RECORD_TYPE = "CONFORMANCE_CHECK"
# Subjects per page of the stability check: small, so two pages are cheap to read twice.
_STABLE_PAGE = 50


class TokenSource(Protocol):
    """Where the suite gets a token sso exchanged for the province's platform."""

    def exchanged_token(self) -> str: ...


class CheckFailed(Exception):
    """A check found the platform breaking the contract; the message says how."""


class ConformanceSuite:
    def __init__(self, platform: ProvincialPlatform, tokens: TokenSource | None = None, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 timer: Callable[[], float] = time.monotonic,
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self._platform = platform
        self._tokens = tokens
        self._clock = clock
        self._timer = timer
        self._new_id = new_id
        self._record: NationalRecord | None = None  # what push_accepted pushed

    def run(self) -> ConformanceReport:
        started = self._clock()
        self._record = None
        # Check "x" is the method "_x"; the domain's list gives names and order.
        results = tuple(self._check(name, getattr(self, f"_{name}")) for name in CHECKS)
        return ConformanceReport(province=self._platform.province, started_at=started,
                                 results=results)

    def _check(self, name: str, check: Callable[[], None]) -> CheckResult:
        began = self._timer()
        outcome, detail = Outcome.PASSED, ""
        try:
            check()
        except NotSupported as error:
            outcome, detail = Outcome.NOT_APPLICABLE, error.message
        except CheckFailed as error:
            outcome, detail = Outcome.FAILED, str(error)
        except PlatformError as error:
            outcome, detail = Outcome.FAILED, f"{error.reason}: {error.message}"
        return CheckResult(name, outcome, detail, round(self._timer() - began, 3))

    # -- the checks -------------------------------------------------------------------------

    def _health(self) -> None:
        health = self._platform.health()
        if health.status != "ok":
            raise CheckFailed(f"the platform reports itself {health.status}")

    def _subjects_first_page(self) -> None:
        page = self._platform.list_subjects("", 10)
        if len(page.subjects) > 10:
            raise CheckFailed(f"asked for 10 subjects, got {len(page.subjects)}")
        if page.total_size > len(page.subjects) and not page.next_page_token:
            raise CheckFailed(f"the first page holds {len(page.subjects)} of "
                              f"{page.total_size} subjects but has no next_page_token")

    def _subjects_complete(self) -> None:
        """One full pass: every subject once, in order, as many as the platform says."""
        ids: list[str] = []
        seen: set[str] = set()
        token = ""
        pages = 0
        page_limit: int | None = None
        while True:
            page = self._platform.list_subjects(token, MAX_PAGE_SIZE)
            pages += 1
            if page_limit is None:  # room for subjects registered during the pass
                page_limit = 2 * (page.total_size // MAX_PAGE_SIZE + 1) + 10
            for subject in page.subjects:
                if subject.source_record_id in seen:
                    raise CheckFailed(f"subject {subject.source_record_id} came twice "
                                      f"(page {pages})")
                if ids and subject.source_record_id < ids[-1]:
                    raise CheckFailed(f"subject {subject.source_record_id} came after "
                                      f"{ids[-1]}: not in source_record_id order")
                seen.add(subject.source_record_id)
                ids.append(subject.source_record_id)
            if not page.next_page_token:
                break
            if pages >= page_limit:
                raise CheckFailed(f"the listing did not end after {pages} pages")
            token = page.next_page_token
        if len(ids) != page.total_size:
            raise CheckFailed(f"a full pass returned {len(ids)} subjects, the platform says "
                              f"it holds {page.total_size}")

    def _subjects_stable(self) -> None:
        """The same tokens give the same pages."""
        first = self._platform.list_subjects("", _STABLE_PAGE)
        second = self._platform.list_subjects(first.next_page_token, _STABLE_PAGE) \
            if first.next_page_token else None
        again = self._platform.list_subjects("", _STABLE_PAGE)
        if [s.source_record_id for s in again.subjects] != \
                [s.source_record_id for s in first.subjects]:
            raise CheckFailed("the first page changed between two reads")
        if second is not None:
            repeated = self._platform.list_subjects(first.next_page_token, _STABLE_PAGE)
            if [s.source_record_id for s in repeated.subjects] != \
                    [s.source_record_id for s in second.subjects]:
                raise CheckFailed("the second page changed when its token was used again")

    def _trace_records(self) -> None:
        first = self._platform.list_trace_records("", 1)
        if len(first.records) > 1:
            raise CheckFailed(f"asked for 1 record, got {len(first.records)}")
        following = self._platform.list_trace_records(first.next_cursor, 1)
        # A record may come again after the cursor, but only changed.
        if first.records and following.records and following.records[0] == first.records[0]:
            raise CheckFailed("the cursor did not move past the record it followed")

    def _push_accepted(self) -> None:
        self._record = NationalRecord(
            record_id=f"conformance-{self._new_id()}", type=CONFORMANCE_RECORD_TYPE,
            occur_time=self._clock(), payload={"purpose": "conformance check"})
        result = self._platform.push_national_record(self._record)
        if result.replayed:
            raise CheckFailed("a record never pushed before was answered as a replay")

    def _push_idempotent(self) -> None:
        record = self._pushed()
        result = self._platform.push_national_record(record)
        if not result.replayed:
            raise CheckFailed("the same record pushed twice was not answered as a replay")

    def _push_conflict(self) -> None:
        record = self._pushed()
        changed = record.model_copy(update={"payload": {"purpose": "a different content"}})
        try:
            self._platform.push_national_record(changed)
        except PlatformRejected as error:
            if error.reason != "RECORD_CONFLICT":
                raise CheckFailed(f"refused with {error.reason}, not RECORD_CONFLICT") \
                    from None
            return
        raise CheckFailed("a record id pushed again with other content was accepted")

    def _token_verifies(self) -> None:
        if self._tokens is None:
            raise CheckFailed("no exchanged token to check with (sso token exchange is not "
                              "configured for the bridge)")
        try:
            token = self._tokens.exchanged_token()
        except CheckFailed:
            self._verifies_at_all()
            raise
        answer = self._platform.verify_token(token)
        if not answer.active:
            raise CheckFailed(f"an exchanged token was refused ({answer.reason})")
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        if self._platform.verify_token(forged).active:
            raise CheckFailed("a token with a broken signature was accepted")

    def _verifies_at_all(self) -> None:
        """Raises NotSupported when the adapter verifies no tokens (a drop folder), so that
        the token check does not apply there even without a token to check with."""
        try:
            self._platform.verify_token("not-a-token")
        except NotSupported:
            raise
        except PlatformError:
            pass  # it does verify; the missing token is what fails the check

    def _pushed(self) -> NationalRecord:
        if self._record is None:
            raise CheckFailed("needs push_accepted to have pushed a record")
        return self._record
