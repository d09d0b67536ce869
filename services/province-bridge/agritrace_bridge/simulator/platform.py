"""The state and the answers of a simulated provincial platform, free of HTTP: its subjects and
production records, the national records pushed to it, the national keys it verifies exchanged
tokens with, and the faults it is told to show. `server.py` puts it on the wire."""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agritrace_bridge.contract import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_RECORD_LIMIT,
    MAX_PAGE_SIZE,
    MAX_RECORD_LIMIT,
    Health,
    InvalidParam,
    NationalRecord,
    Problem,
    PushResult,
    SubjectPage,
    TokenVerification,
    TokenVerifyRequest,
    TraceRecord,
    TraceRecordPage,
)
from agritrace_bridge.simulator.data import (
    MAX_SUBJECTS,
    SubjectGenerator,
    invent_batch_ids,
    trace_record,
)
from agritrace_kernel.auth.tokens import (
    PLATFORM_AUDIENCE_PREFIX,
    KeySetCache,
    KeysUnavailable,
    TokenVerifier,
)
from agritrace_kernel.errors import Unauthenticated


class Faults(BaseModel):
    """What the simulator does wrong on purpose, for the /v1 API (never for /admin).

    Requests are counted from 1; `timeout_every` is checked before `fail_every`."""

    model_config = ConfigDict(extra="forbid")

    # Added to every answer.
    latency_ms: int = Field(default=0, ge=0, le=600_000)
    # Every n-th request is answered `fail_status` (0: never).
    fail_every: int = Field(default=0, ge=0)
    # 500, 502, 503 (with Retry-After), 504 or 429 (with Retry-After).
    fail_status: Literal[429, 500, 502, 503, 504] = 503
    # Every n-th request hangs `hang_seconds` and then closes without an answer (0: never).
    timeout_every: int = Field(default=0, ge=0)
    hang_seconds: float = Field(default=30.0, ge=0, le=3600)
    # Every request is dropped without an answer (the connection closes): the platform is down.
    down: bool = False
    # "skip": each next_page_token jumps one subject (a listing that loses records);
    # "repeat": next_page_token never moves on. "": correct.
    broken_pagination: Literal["", "skip", "repeat"] = ""


class FaultsPatch(BaseModel):
    """A change of some faults (the admin endpoint's PATCH body)."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: int | None = Field(default=None, ge=0, le=600_000)
    fail_every: int | None = Field(default=None, ge=0)
    fail_status: Literal[429, 500, 502, 503, 504] | None = None
    timeout_every: int | None = Field(default=None, ge=0)
    hang_seconds: float | None = Field(default=None, ge=0, le=3600)
    down: bool | None = None
    broken_pagination: Literal["", "skip", "repeat"] | None = None


@dataclass(frozen=True)
class Answer:
    """What to send: a status and a JSON document (None: close without an answer)."""

    status: int
    document: BaseModel | Mapping[str, object] | None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def dropped(self) -> bool:
        return self.document is None


def problem(status: int, reason: str, title: str, detail: str = "",
            invalid: list[InvalidParam] | None = None,
            headers: Mapping[str, str] | None = None) -> Answer:
    return Answer(status, Problem.of(status, reason, title, detail, invalid), headers or {})


class _StaticKeySet:
    """The national public keys the province was given (a JWK set), settable at run time."""

    def __init__(self, fetch: Callable[[], str] | None = None) -> None:
        self.jwks: str | None = None
        self._fetch = fetch

    @property
    def configured(self) -> bool:
        return self._fetch is not None or self.jwks is not None

    def fetch_jwks(self) -> str:
        if self._fetch is not None:
            return self._fetch()
        if self.jwks is None:
            raise KeysUnavailable("no national keys were given to the simulator")
        return self.jwks


_FAULT_STATUS = {429: ("RATE_LIMITED", "Too many requests"),
                 500: ("INTERNAL", "Internal error"), 502: ("BAD_GATEWAY", "Bad gateway"),
                 503: ("UNAVAILABLE", "Service unavailable"),
                 504: ("GATEWAY_TIMEOUT", "Gateway timeout")}


class SimulatedPlatform:
    """One simulated provincial platform. Thread-safe: the HTTP server calls it from a thread
    per connection."""

    def __init__(
        self,
        subjects: SubjectGenerator,
        *,
        platform_id: str = "",
        batch_ids: list[str] | None = None,
        batches: int = 20,
        initial_records: int = 0,
        faults: Faults | None = None,
        jwks_source: Callable[[], str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.generator = subjects
        self.province = subjects.province
        self.platform_id = platform_id or f"province-{self.province}"
        self.faults = faults or Faults()
        self._clock = clock
        self._lock = threading.Lock()
        self._subject_count = subjects.count
        self._batch_ids = list(batch_ids) if batch_ids else \
            invent_batch_ids(self.province, subjects.seed, batches)
        self._generated = 0  # production records generated so far (numbers them)
        self._log: list[TraceRecord] = []  # the change log the cursor walks
        self._pushed: dict[str, tuple[dict[str, object], datetime]] = {}
        self._requests = 0
        self._injected = 0
        self._keys = _StaticKeySet(jwks_source)
        self._key_cache = KeySetCache(self._keys, min_refresh_seconds=1.0)
        self._verifier = TokenVerifier(self._key_cache,
                                       audience=PLATFORM_AUDIENCE_PREFIX + self.platform_id)
        self.add_trace_records(initial_records)

    # -- faults --------------------------------------------------------------------------

    def patch_faults(self, patch: FaultsPatch) -> Faults:
        with self._lock:
            changes = patch.model_dump(exclude_none=True)
            self.faults = self.faults.model_copy(update=changes)
            return self.faults

    def next_request(self) -> tuple[int, Faults]:
        """Counts an API request; its number and the faults in force for it."""
        with self._lock:
            self._requests += 1
            return self._requests, self.faults

    def injected_failure(self, number: int, faults: Faults) -> Answer | None:
        """The answer request `number` must fail with under `fail_every`, if any."""
        if faults.fail_every and number % faults.fail_every == 0:
            with self._lock:
                self._injected += 1
            reason, title = _FAULT_STATUS[faults.fail_status]
            headers = {"Retry-After": "1"} if faults.fail_status in (429, 503) else {}
            return problem(faults.fail_status, reason, title,
                           f"failure injected on request {number}", headers=headers)
        return None

    def count_injected(self) -> None:
        with self._lock:
            self._injected += 1

    # -- the API ----------------------------------------------------------------------------

    def health(self) -> Answer:
        return Answer(200, Health(status="ok", province=self.province, time=self._clock()))

    def list_subjects(self, page_size: str, page_token: str) -> Answer:
        window = _window(("page_size", page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
                         ("page_token", page_token, "after"))
        if isinstance(window, Answer):
            return window
        start, size = window
        with self._lock:
            total = self._subject_count
            mode = self.faults.broken_pagination
        end = min(start + size, total)
        page = [self.generator.subject(i) for i in range(start, end)]
        following = end + 1 if mode == "skip" else end
        if mode == "repeat" and page:
            token = page_token or _encode("after", 0)
        else:
            token = _encode("after", following) if following < total else ""
        return Answer(200, SubjectPage(subjects=page, next_page_token=token, total_size=total))

    def list_trace_records(self, limit: str, cursor: str) -> Answer:
        window = _window(("limit", limit, DEFAULT_RECORD_LIMIT, MAX_RECORD_LIMIT),
                         ("cursor", cursor, "seq"))
        if isinstance(window, Answer):
            return window
        start, size = window
        with self._lock:
            records = self._log[start:start + size]
            more = start + len(records) < len(self._log)
        return Answer(200, TraceRecordPage(records=records,
                                           next_cursor=_encode("seq", start + len(records)),
                                           has_more=more))

    def push(self, record_id: str, body: bytes) -> Answer:
        try:
            record = NationalRecord.model_validate_json(body)
        except ValueError as error:
            return _invalid_body(error)
        if record.record_id != record_id:
            return _bad_param("record_id", "differs from the record id in the path")
        content = record.model_dump(mode="json")
        with self._lock:
            held = self._pushed.get(record_id)
            if held is None:
                accepted = self._clock()
                self._pushed[record_id] = (content, accepted)
                return Answer(201, PushResult(record_id=record_id, accepted_time=accepted))
        if held[0] != content:
            return problem(409, "RECORD_CONFLICT", "Record conflict",
                           "a record with this id and other content is already held")
        return Answer(200, PushResult(record_id=record_id, accepted_time=held[1],
                                      replayed=True))

    def pushed_record(self, record_id: str) -> Answer:
        with self._lock:
            held = self._pushed.get(record_id)
        if held is None:
            return problem(404, "NOT_FOUND", "Not found", "no record with this id was pushed")
        return Answer(200, NationalRecord.model_validate(held[0]))

    def verify(self, body: bytes) -> Answer:
        try:
            token = TokenVerifyRequest.model_validate_json(body).token
        except ValueError as error:
            return _invalid_body(error)
        keys_unavailable = problem(503, "KEYS_UNAVAILABLE", "National keys unavailable",
                                   "the platform holds no national public keys yet",
                                   headers={"Retry-After": "5"})
        if not self._keys.configured:  # not even a source: nothing to load, nothing to log
            return keys_unavailable
        try:
            principal = self._verifier.verify(token)
        except KeysUnavailable:
            return keys_unavailable
        except Unauthenticated as error:
            return Answer(200, TokenVerification(active=False, reason=error.reason))
        return Answer(200, TokenVerification(
            active=True, account_id=principal.account_id, username=principal.username,
            kind=principal.kind.value, jurisdiction=principal.jurisdiction,
            audience=principal.audience))

    # -- administration ---------------------------------------------------------------------

    def add_subjects(self, count: int) -> int:
        with self._lock:
            self._subject_count = min(self._subject_count + count, MAX_SUBJECTS)
            return self._subject_count

    def set_batches(self, batch_ids: list[str]) -> None:
        with self._lock:
            self._batch_ids = list(batch_ids)

    def add_trace_records(self, count: int) -> int:
        """Generates `count` new production records (over the current batches); the log
        length after."""
        with self._lock:
            first, self._generated = self._generated, self._generated + count
            batches = list(self._batch_ids)
        records = [trace_record(self.province, self.generator.seed, batches, n)
                   for n in range(first, first + count)]
        with self._lock:
            self._log.extend(records)
            return len(self._log)

    def set_jwks(self, jwks: str) -> None:
        """Installs the national public keys (a JWK set as JSON)."""
        json.loads(jwks)  # refuse anything that is not JSON before it replaces good keys
        self._keys.jwks = jwks
        self._key_cache.refresh()

    def stats(self) -> dict[str, object]:
        with self._lock:
            return {"province": self.province, "platform_id": self.platform_id,
                    "subjects": self._subject_count, "trace_records": len(self._log),
                    "batches": len(self._batch_ids), "pushed": len(self._pushed),
                    "requests": self._requests, "injected_failures": self._injected,
                    "faults": self.faults.model_dump()}


def _encode(name: str, value: int) -> str:
    raw = json.dumps({name: value}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(token: str, name: str) -> int | None:
    try:
        parts = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        return None
    value = parts.get(name) if isinstance(parts, dict) else None
    return value if isinstance(value, int) and value >= 0 else None


def _window(size: tuple[str, str, int, int], position: tuple[str, str, str]
            ) -> tuple[int, int] | Answer:
    """(start, count) of a listing request from its size parameter (name, raw value,
    default, maximum) and its position parameter (name, raw token, key in the token), or the
    problem with either."""
    size_name, raw_size, default, maximum = size
    token_name, token, key = position
    try:
        count = int(raw_size) if raw_size else default
    except ValueError:
        return _bad_param(size_name, "must be a whole number")
    if count < 0:
        return _bad_param(size_name, "must not be negative")
    start = _decode(token, key) if token else 0
    if start is None:
        return _bad_param(token_name, "is not a position this platform issued")
    return start, min(count or default, maximum)


def _bad_param(name: str, reason: str) -> Answer:
    return problem(400, "INVALID_ARGUMENT", "Invalid argument", f"{name} {reason}",
                   [InvalidParam(name=name, reason=reason)])


def _invalid_body(error: ValueError) -> Answer:
    # pydantic's messages name fields and say why; never echo the input (it may be personal).
    errors = getattr(error, "errors", None)
    invalid = [InvalidParam(name=".".join(str(p) for p in e["loc"]) or "body", reason=e["msg"])
               for e in (errors(include_input=False) if callable(errors) else [])]
    return problem(400, "INVALID_ARGUMENT", "Invalid argument",
                   "the body is not a valid document of this contract",
                   invalid or [InvalidParam(name="body", reason="is not valid JSON")])
