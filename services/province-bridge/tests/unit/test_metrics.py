"""The bridge's Prometheus observer: what national and provincial ops read of a bridge."""

from __future__ import annotations

import time

from prometheus_client import REGISTRY

from agritrace_bridge.adapters.metrics import PrometheusObserver
from agritrace_bridge.service_layer.observe import Direction


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_failure_for_good_is_counted_and_its_time_kept_for_the_alert() -> None:
    observer = PrometheusObserver("63")
    labels = {"province": "63", "direction": Direction.IMPORT.value,
              "reason": "registry_refused"}
    before = sample("agritrace_bridge_failures_total", **labels)
    started = time.time()
    observer.failed(Direction.IMPORT, "registry_refused")
    assert sample("agritrace_bridge_failures_total", **labels) == before + 1
    when = sample("agritrace_bridge_last_failure_timestamp_seconds", **labels)
    assert started <= when <= time.time()


def test_a_retry_is_no_failure() -> None:
    observer = PrometheusObserver("64")
    observer.retried(Direction.INBOUND, "unavailable")
    labels = {"province": "64", "direction": Direction.INBOUND.value, "reason": "unavailable"}
    assert sample("agritrace_bridge_retries_total", **labels) == 1
    assert sample("agritrace_bridge_last_failure_timestamp_seconds", **labels) == 0
