"""Internal trace in, over fakes: stored first, then delivered once; flow down means the
records wait and go when it returns; a crash between flow's answer and the bridge's commit
sends again and flow answers REPLAYED; refusals are kept."""

from __future__ import annotations

from typing import Any

import pytest

from agritrace_bridge.domain.retry import Backoff
from agritrace_bridge.service_layer.inbound import POLL_SECONDS, InboundTrace
from agritrace_bridge.service_layer.national import NationalUnavailable
from agritrace_bridge.service_layer.ports import PlatformUnavailable


@pytest.fixture
def province(fake: Any) -> Any:
    platform = fake.FakePlatform([])
    platform.records = [fake.trace(n) for n in range(25)]
    return platform


@pytest.fixture
def flow(fake: Any) -> Any:
    return fake.FakeFlow()


@pytest.fixture
def observer(fake: Any) -> Any:
    return fake.RecordingObserver()


@pytest.fixture
def inbound(uow_factory: Any, province: Any, flow: Any, clock: Any, observer: Any
            ) -> InboundTrace:
    return InboundTrace("37", uow_factory, province, flow, page_size=10, batch_size=10,
                        backoff=Backoff(base_seconds=1, cap_seconds=8), clock=clock,
                        observer=observer)


def drain(inbound: InboundTrace, rounds: int = 20) -> float:
    for _ in range(rounds):
        wait = inbound.step()
        if wait:
            return wait
    raise AssertionError("never idle")


def statuses(database: Any) -> list[str]:
    return [state for _, _, state, _ in database.committed.traces.values()]


def test_records_are_kept_then_delivered_once(inbound: InboundTrace, flow: Any,
                                              database: Any, uow_factory: Any) -> None:
    assert drain(inbound) == POLL_SECONDS
    assert len(flow.stored) == 25 and statuses(database) == ["DELIVERED"] * 25
    assert database.committed.cursors["trace_records"] == "25"
    with uow_factory() as uow:
        assert uow.sync.status("inbound", None).delivered == 25


def test_flow_down_keeps_records_waiting_until_it_returns(
        inbound: InboundTrace, flow: Any, database: Any, observer: Any) -> None:
    flow.failures = [NationalUnavailable("flow: down", reason="UNAVAILABLE")] * 3
    waits = [inbound.step() for _ in range(3)]
    assert all(0 <= wait <= 4 for wait in waits)
    # The province's records were read and acknowledged meanwhile: they wait in the inbox.
    assert database.committed.cursors["trace_records"] == "25"
    assert statuses(database) == ["PENDING"] * 25 and flow.stored == {}
    assert drain(inbound) == POLL_SECONDS
    assert len(flow.stored) == 25 and statuses(database) == ["DELIVERED"] * 25
    assert observer.retries == [("inbound", "UNAVAILABLE")] * 3


def test_a_crash_after_flow_answered_sends_again_and_changes_nothing(
        inbound: InboundTrace, flow: Any, database: Any) -> None:
    original = flow.capture

    def answer_then_crash(*args: Any) -> Any:
        outcomes = original(*args)
        database.fail_commits = 1  # the commit marking them delivered is lost
        flow.capture = original
        return outcomes

    flow.capture = answer_then_crash
    with pytest.raises(ConnectionError):
        inbound.step()
    assert statuses(database).count("PENDING") == 10 and len(flow.stored) == 10
    drain(inbound)
    assert len(flow.stored) == 25 and statuses(database) == ["DELIVERED"] * 25


def test_the_province_down_is_retried_and_refusals_are_kept(
        inbound: InboundTrace, flow: Any, province: Any, database: Any, fake: Any,
        uow_factory: Any) -> None:
    province.failures = [PlatformUnavailable("down", reason="UNAVAILABLE")]
    assert 0 <= inbound.step() <= 1
    province.records.append(fake.trace(99, batch_id="B37UNKNOWNBATCH0"))
    province.records.append(fake.trace(0, variety="changed"))  # an edited record comes again
    drain(inbound)
    assert statuses(database).count("REFUSED") == 2
    assert statuses(database).count("DELIVERED") == 25
    with uow_factory() as uow:
        status = uow.sync.status("inbound", None)
    assert status.errors == 3 and "SOURCE_RECORD_CONFLICT" in status.last_error
