"""The provincial platform over its REST API (docs/provincial-contract.md), with httpx.

One call, one HTTP request: timeouts on connecting, reading, writing and waiting for a pooled
connection; every failure becomes a `PlatformError` that says whether retrying may help.
Requests carry an X-Request-Id for the province's logs. Nothing personal is logged: bodies
never, paths only (they hold record ids, never identifiers of people)."""

from __future__ import annotations

import logging
import ssl
import uuid
from collections.abc import Mapping
from typing import TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from agritrace_bridge.contract import (
    CONTRACT_VERSION,
    Health,
    NationalRecord,
    Problem,
    PushResult,
    SubjectPage,
    TokenVerification,
    TokenVerifyRequest,
    TraceRecordPage,
)
from agritrace_bridge.service_layer.ports import (
    AdapterConfig,
    ContractViolation,
    PlatformError,
    PlatformRejected,
    PlatformUnavailable,
)

log = logging.getLogger(__name__)

DocumentT = TypeVar("DocumentT", bound=BaseModel)
# Statuses a later attempt may get past: timeouts, throttling and the platform's own failures.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# Seconds: a platform that does not answer within these is treated as unavailable.
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)


class RestProvincialPlatform:
    """`ProvincialPlatform` over HTTP. Thread-safe (httpx.Client is)."""

    def __init__(self, base_url: str, api_key: str, province: str, *,
                 timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None,
                 verify: ssl.SSLContext | bool = True) -> None:
        if not api_key:
            raise ValueError("the provincial platform needs the bridge key (api_key)")
        self._province = province
        self._client = httpx.Client(
            base_url=base_url.rstrip("/") + f"/{CONTRACT_VERSION}",
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            timeout=timeout, transport=transport, verify=verify, follow_redirects=False)

    @classmethod
    def from_config(cls, config: AdapterConfig) -> RestProvincialPlatform:
        """Options: base_url, api_key (both required), timeout_seconds (10),
        connect_timeout_seconds (3)."""
        timeout = httpx.Timeout(config.number("timeout_seconds", 10.0),
                                connect=config.number("connect_timeout_seconds", 3.0))
        return cls(config.require("base_url"), config.require("api_key"), config.province,
                   timeout=timeout)

    @property
    def province(self) -> str:
        return self._province

    def health(self) -> Health:
        health = self._call("GET", "/health", Health)
        if health.province != self._province:
            raise ContractViolation(
                f"the platform serves province {health.province}, this bridge {self._province}",
                reason="WRONG_PROVINCE")
        return health

    def list_subjects(self, page_token: str = "", page_size: int = 0) -> SubjectPage:
        params = {"page_size": str(page_size)} | ({"page_token": page_token} if page_token
                                                   else {})
        page = self._call("GET", "/subjects", SubjectPage, params=params)
        # A token that does not move on would make the bridge page forever.
        if page_token and page.next_page_token == page_token:
            raise ContractViolation("the platform answered the page token it was given",
                                    reason="PAGE_TOKEN_REPEATED")
        return page

    def list_trace_records(self, cursor: str = "", limit: int = 0) -> TraceRecordPage:
        params = {"limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        page = self._call("GET", "/trace-records", TraceRecordPage, params=params)
        if page.has_more and not page.records:
            raise ContractViolation("the platform says more records wait but sent none",
                                    reason="EMPTY_PAGE_WITH_MORE")
        return page

    def push_national_record(self, record: NationalRecord) -> PushResult:
        result = self._call("PUT", f"/national-records/{quote(record.record_id, safe='')}",
                            PushResult, content=record.model_dump_json())
        if result.record_id != record.record_id:
            raise ContractViolation("the platform acknowledged another record",
                                    reason="WRONG_RECORD_ACKNOWLEDGED")
        return result

    def verify_token(self, token: str) -> TokenVerification:
        return self._call("POST", "/sso/verify", TokenVerification,
                          content=TokenVerifyRequest(token=token).model_dump_json())

    def close(self) -> None:
        self._client.close()

    # -- one request ------------------------------------------------------------------------

    def _call(self, method: str, path: str, answer: type[DocumentT], *,
              params: Mapping[str, str] | None = None, content: str | None = None) -> DocumentT:
        headers = {"X-Request-Id": uuid.uuid4().hex}
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = self._client.request(method, path, params=params, content=content,
                                            headers=headers)
        except httpx.TimeoutException as error:
            raise PlatformUnavailable(f"{method} {path}: timed out ({type(error).__name__})",
                                      reason="TIMEOUT") from error
        except httpx.TransportError as error:
            raise PlatformUnavailable(f"{method} {path}: cannot reach the platform "
                                      f"({type(error).__name__})", reason="UNREACHABLE") \
                from error
        if response.is_success:
            try:
                return answer.model_validate_json(response.content)
            except ValidationError as error:
                # Field paths and messages only: the input may hold personal data.
                fields = ", ".join(".".join(map(str, e["loc"])) or "(document)"
                                   for e in error.errors(include_input=False)[:5])
                raise ContractViolation(
                    f"{method} {path}: the answer is not a {answer.__name__} ({fields})",
                    reason="MALFORMED_ANSWER", status=response.status_code) from None
        raise _failure(method, path, response)


def _failure(method: str, path: str, response: httpx.Response) -> PlatformError:
    status = response.status_code
    problem = _problem(response)
    reason = problem.reason if problem is not None and problem.reason else f"HTTP_{status}"
    detail = problem.detail or problem.title if problem is not None else response.reason_phrase
    message = f"{method} {path}: {status} {detail}"
    # Debug only: the caller decides whether a failure is worth a log line (and retries).
    log.debug("provincial platform answered %s %s with %s (%s)", method, path, status, reason)
    if status in RETRYABLE_STATUSES:
        return PlatformUnavailable(message, reason=reason, status=status, problem=problem,
                                   retry_after=_retry_after(response))
    if 300 <= status < 400:  # the contract has no redirects; following one could leak the key
        return ContractViolation(message, reason="UNEXPECTED_REDIRECT", status=status)
    return PlatformRejected(message, reason=reason, status=status, problem=problem)


def _problem(response: httpx.Response) -> Problem | None:
    try:
        return Problem.model_validate_json(response.content)
    except ValidationError:
        return None


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After", "")
    try:
        return max(float(raw), 0.0) if raw else None
    except ValueError:
        return None  # an HTTP date: rare, and the engine's backoff covers it

