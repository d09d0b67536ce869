"""The REST adapter against a running simulator: every contract call, and each fault turned
into the right error (retryable or not)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from agritrace_bridge.adapters.rest import RestProvincialPlatform
from agritrace_bridge.contract import NationalRecord, SubjectPage
from agritrace_bridge.service_layer.ports import (
    ContractViolation,
    PlatformError,
    PlatformRejected,
    PlatformUnavailable,
    ProvincialPlatform,
)
from agritrace_bridge.simulator import SimulatorServer

SetFaults = Callable[..., None]
Admin = Callable[..., httpx.Response]
RestAdapter = Callable[..., RestProvincialPlatform]


def record(record_id: str = "evt-1", kind: str = "SUBJECT_REVIEWED") -> NationalRecord:
    return NationalRecord(record_id=record_id, type=kind,
                          occur_time=datetime(2024, 5, 1, 8, tzinfo=UTC),
                          subject_id="S37ABC", payload={"decision": "APPROVE"})


def all_subjects(platform: ProvincialPlatform, page_size: int,
                 retry: bool = False) -> list[str]:
    """A full listing; with `retry`, retryable failures are simply tried again (the sync
    engine adds backoff and jitter)."""
    ids: list[str] = []
    token = ""
    attempts = 0
    while True:
        try:
            page = platform.list_subjects(token, page_size)
        except PlatformError as error:
            attempts += 1
            if not (retry and error.retryable) or attempts > 100:
                raise
            continue
        ids.extend(s.source_record_id for s in page.subjects)
        if not page.next_page_token:
            return ids
        token = page.next_page_token


def test_the_adapter_is_a_provincial_platform(platform: RestProvincialPlatform) -> None:
    assert isinstance(platform, ProvincialPlatform)
    assert platform.province == "37"
    assert platform.health().province == "37"


def test_lists_every_subject_once(platform: RestProvincialPlatform) -> None:
    ids = all_subjects(platform, 7)
    assert len(ids) == 50 == len(set(ids))
    first = platform.list_subjects()
    assert first.total_size == 50 and first.subjects[0].source_record_id == "37-00000000"


def test_walks_trace_records_by_cursor(simulator: SimulatorServer, admin: Admin,
                                       platform: RestProvincialPlatform) -> None:
    admin(simulator, "POST", "trace-records", {"count": 12})
    first = platform.list_trace_records(limit=5)
    assert len(first.records) == 5 and first.has_more
    rest = platform.list_trace_records(first.next_cursor, 100)
    assert len(rest.records) == 7 and not rest.has_more
    assert rest.records[0].activity.type in {"PLANTING", "FEED", "FERTILISER"}


def test_pushes_idempotently_and_reports_a_conflict_as_final(
        platform: RestProvincialPlatform) -> None:
    created = platform.push_national_record(record())
    assert not created.replayed
    again = platform.push_national_record(record())
    assert again.replayed and again.accepted_time == created.accepted_time
    with pytest.raises(PlatformRejected) as refused:
        platform.push_national_record(record(kind="CODES_ISSUED"))
    assert refused.value.reason == "RECORD_CONFLICT" and refused.value.status == 409
    assert not refused.value.retryable and refused.value.problem is not None


def test_record_ids_reach_the_platform_intact_and_unsafe_ones_are_refused_before(
        platform: RestProvincialPlatform) -> None:
    assert platform.push_national_record(record("evt:2024.05_1")).record_id == "evt:2024.05_1"
    with pytest.raises(ValueError):
        record("evt/../1")


def test_a_failing_platform_is_retryable_and_says_when(
        simulator: SimulatorServer, set_faults: SetFaults,
        platform: RestProvincialPlatform) -> None:
    set_faults(simulator, fail_every=1)
    with pytest.raises(PlatformUnavailable) as unavailable:
        platform.list_subjects()
    assert unavailable.value.retryable and unavailable.value.status == 503
    assert unavailable.value.reason == "UNAVAILABLE" and unavailable.value.retry_after == 1.0
    set_faults(simulator, fail_status=500)
    with pytest.raises(PlatformUnavailable) as internal:
        platform.push_national_record(record())
    assert internal.value.reason == "INTERNAL" and internal.value.retry_after is None


def test_a_hanging_platform_times_out_as_retryable(
        simulator: SimulatorServer, set_faults: SetFaults, rest_adapter: RestAdapter) -> None:
    set_faults(simulator, timeout_every=1, hang_seconds=5)
    adapter = rest_adapter(simulator.url, timeout=httpx.Timeout(0.3, connect=1.0))
    started = time.monotonic()
    with pytest.raises(PlatformUnavailable) as timed_out:
        adapter.list_trace_records()
    assert timed_out.value.reason == "TIMEOUT" and time.monotonic() - started < 3


def test_a_platform_that_is_down_or_gone_is_unreachable(
        simulator: SimulatorServer, set_faults: SetFaults,
        platform: RestProvincialPlatform, rest_adapter: RestAdapter) -> None:
    set_faults(simulator, down=True)
    with pytest.raises(PlatformUnavailable) as down:
        platform.health()
    assert down.value.reason == "UNREACHABLE"
    url = simulator.url
    simulator.stop()
    gone = rest_adapter(url, timeout=1.0)
    with pytest.raises(PlatformUnavailable) as refused:
        gone.health()
    assert refused.value.reason == "UNREACHABLE"


def test_a_wrong_key_is_rejected_for_good(simulator: SimulatorServer,
                                          rest_adapter: RestAdapter) -> None:
    with pytest.raises(PlatformRejected) as rejected:
        rest_adapter(simulator.url, "not-the-key").list_subjects()
    assert rejected.value.status == 401 and rejected.value.reason == "UNAUTHENTICATED"
    assert not rejected.value.retryable


def test_pagination_that_does_not_move_on_is_a_contract_violation(
        simulator: SimulatorServer, set_faults: SetFaults,
        platform: RestProvincialPlatform) -> None:
    set_faults(simulator, broken_pagination="repeat")
    with pytest.raises(ContractViolation) as violation:
        all_subjects(platform, 10)
    assert violation.value.reason == "PAGE_TOKEN_REPEATED" and not violation.value.retryable


def test_a_complete_listing_through_failures_and_timeouts_when_retried(
        start_simulator: Callable[..., SimulatorServer], set_faults: SetFaults,
        rest_adapter: RestAdapter) -> None:
    server = start_simulator(subjects=300)
    set_faults(server, fail_every=3, timeout_every=7, hang_seconds=2)
    adapter = rest_adapter(server.url, timeout=httpx.Timeout(0.2, connect=1.0))
    ids = all_subjects(adapter, 20, retry=True)
    assert len(ids) == 300 == len(set(ids))
    assert int(str(server.platform.stats()["injected_failures"])) >= 5


def test_the_wrong_province_or_a_malformed_answer_violates_the_contract(
        simulator: SimulatorServer, rest_adapter: RestAdapter) -> None:
    with pytest.raises(ContractViolation) as wrong:
        rest_adapter(simulator.url, province="11").health()
    assert wrong.value.reason == "WRONG_PROVINCE"

    def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"subjects": [{"name": "no id"}]})

    broken = RestProvincialPlatform("http://platform.invalid", "k", "37",
                                    transport=httpx.MockTransport(garbage))
    with pytest.raises(ContractViolation) as malformed:
        broken.list_subjects()
    assert malformed.value.reason == "MALFORMED_ANSWER"
    assert "subjects.0.source_record_id" in malformed.value.message
    broken.close()


def test_the_platform_sees_the_key_a_request_id_and_the_contract_version() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=SubjectPage(subjects=[]).model_dump_json())

    adapter = RestProvincialPlatform("http://platform.invalid/base/", "secret", "37",
                                     transport=httpx.MockTransport(answer))
    adapter.list_subjects("tok", 10)
    adapter.close()
    request = seen[0]
    assert request.url.path == "/base/v1/subjects"
    assert dict(request.url.params) == {"page_size": "10", "page_token": "tok"}
    assert request.headers["Authorization"] == "Bearer secret"
    assert len(request.headers["X-Request-Id"]) == 32


def test_a_bridge_key_is_required() -> None:
    with pytest.raises(ValueError, match="api_key"):
        RestProvincialPlatform("http://platform.invalid", "", "37")
