"""National records out, over fakes: which events concern the province, queueing once,
pushing with retries and backoff, dead letters and their replay."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from agritrace_bridge.domain.outbound import concerns
from agritrace_bridge.domain.retry import Backoff
from agritrace_bridge.service_layer.outbound import NationalEventIntake, OutboundQueue
from agritrace_bridge.service_layer.ports import PlatformUnavailable
from agritrace_kernel.auth.principal import Principal, PrincipalKind
from agritrace_kernel.errors import PermissionDenied
from agritrace_kernel.events.bus import IdempotentHandler
from agritrace_kernel.events.model import Event


def reviewed(division: str = "370102", **payload: Any) -> Event:
    return Event("registry", "subject_reviewed", {
        "subject_id": "S37X", "division_code": division, "name": "张三", "status": "APPROVED",
        "decision": "APPROVE", **payload})


def client(province: str) -> Principal:
    return Principal("acct", PrincipalKind.PLATFORM_CLIENT, f"bridge-{province}", "",
                     province, frozenset(), "sid", "")


@pytest.mark.parametrize(("source", "name", "payload", "expected"), [
    ("registry", "subject_registered", {"division_code": "370102"}, True),
    ("registry", "subject_reviewed", {"division_code": "330106"}, False),
    ("coding", "codes_issued", {"province": "37"}, True),
    ("coding", "codes_issued", {"province": "33"}, False),
    ("flow", "batch_shipped", {"seller_province": "33", "buyer_province": "37"}, True),
    ("flow", "batch_shipped", {"seller_province": "37", "buyer_province": "33"}, True),
    ("flow", "batch_shipped", {"seller_province": "33", "buyer_province": "11"}, False),
    ("flow", "batch_created", {"province": "37"}, False),
])
def test_the_events_that_concern_a_province(source: str, name: str, payload: dict[str, str],
                                            expected: bool) -> None:
    assert concerns("37", source, name, payload) is expected


@pytest.fixture
def platform(fake: Any) -> Any:
    return fake.FakePlatform([])


class LongestBackoff(Backoff):
    """Always the longest wait the jitter allows, so a test knows when a retry is due."""

    def delay(self, attempt: int, *, at_least: float = 0.0,
              draw: Callable[[], float] = lambda: 1.0) -> float:
        return super().delay(attempt, at_least=at_least, draw=lambda: 1.0)


@pytest.fixture
def queue(uow_factory: Any, platform: Any, clock: Any, fake: Any) -> OutboundQueue:
    return OutboundQueue("37", uow_factory, platform, clock=clock, max_attempts=3,
                         backoff=LongestBackoff(base_seconds=2, cap_seconds=60))


@pytest.fixture
def handle(uow_factory: Any, clock: Any) -> Callable[[Event], None]:
    """What the worker does with a delivered national event."""
    return IdempotentHandler("province_bridge_37", NationalEventIntake("37", clock=clock).handle,
                             uow_factory)


def test_an_event_is_queued_once_without_personal_data_and_pushed(
        queue: OutboundQueue, handle: Callable[[Event], None], platform: Any) -> None:
    event = reviewed()
    handle(event)
    handle(event)  # redelivered
    handle(reviewed(division="330106"))  # another province's

    assert queue.push_due() == 1
    pushed = platform.pushed[event.event_id]
    assert pushed.type == "SUBJECT_REVIEWED" and pushed.subject_id == "S37X"
    assert pushed.payload == {"subject_id": "S37X", "division_code": "370102",
                              "status": "APPROVED", "decision": "APPROVE"}
    assert queue.push_due() == 0


def test_a_platform_that_is_down_is_retried_with_backoff_then_dead_lettered_and_replayed(
        queue: OutboundQueue, handle: Callable[[Event], None], uow_factory: Any,
        platform: Any, clock: Any, database: Any) -> None:
    event = reviewed()
    handle(event)
    platform.push_failures = [PlatformUnavailable("down", reason="UNAVAILABLE")] * 3

    assert queue.push_due() == 0
    record, _, due = database.committed.queue[event.event_id]
    assert (record.attempts, due) == (1, clock.now + timedelta(seconds=2))
    assert queue.push_due() == 0 and len(platform.push_failures) == 2  # not due yet
    clock.now = due
    assert queue.push_due() == 0
    record, _, due = database.committed.queue[event.event_id]
    assert (record.attempts, due) == (2, clock.now + timedelta(seconds=4))  # doubled
    clock.now = due
    assert queue.push_due() == 0
    assert event.event_id in database.committed.dead  # the third failure: dead
    with uow_factory() as uow:
        status = uow.sync.status("outbound", clock.now)
    assert (status.dead_letters, status.queue_depth, status.errors) == (1, 0, 3)

    with pytest.raises(PermissionDenied):
        queue.replay_dead_letters(client("11"), [])
    assert queue.replay_dead_letters(client("37"), []) == 1
    assert queue.push_due() == 1 and event.event_id in platform.pushed


def test_a_refused_record_is_dead_lettered_at_once(
        queue: OutboundQueue, handle: Callable[[Event], None], platform: Any,
        database: Any) -> None:
    event = reviewed()
    handle(event)
    platform.pushed[event.event_id] = "something else"  # the platform holds other content
    assert queue.push_due() == 0
    assert database.committed.dead[event.event_id].last_error.startswith("RECORD_CONFLICT")


def test_the_pusher_sleeps_until_the_next_record_is_due(
        queue: OutboundQueue, handle: Callable[[Event], None], platform: Any,
        clock: Any) -> None:
    assert queue.seconds_to_next(5.0) == 5.0
    handle(reviewed())
    assert queue.seconds_to_next(5.0) == 0.0
    platform.push_failures = [PlatformUnavailable("down", reason="UNAVAILABLE",
                                                  retry_after=30)]
    queue.push_due()
    assert queue.seconds_to_next(5.0) == 5.0
    clock.now = clock.now + timedelta(seconds=29)
    assert queue.seconds_to_next(5.0) == 1.0  # Retry-After: 30 s, longer than the backoff
