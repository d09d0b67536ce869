"""The bridge's Prometheus metrics, every one labelled with the province, so national ops see
all bridges on one dashboard and a provincial team filters its own."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge

from agritrace_bridge.service_layer.observe import Direction

records_moved_total = Counter(
    "agritrace_bridge_records_moved_total",
    "Records delivered, by direction (import, inbound, outbound).", ("province", "direction"))
retries_total = Counter(
    "agritrace_bridge_retries_total",
    "Failed attempts that will be retried, by direction and reason.",
    ("province", "direction", "reason"))
failures_total = Counter(
    "agritrace_bridge_failures_total",
    "Attempts that failed for good (a stopped import, a dead-lettered record).",
    ("province", "direction", "reason"))
# What the failure alert reads: the time itself, unlike the counter's first increment (a
# reason's series is created with it) or its history (gone after Prometheus restarts), says
# whether a failure fell in the alert's window.
last_failure_seconds = Gauge(
    "agritrace_bridge_last_failure_timestamp_seconds",
    "Unix time of the latest failure for good, by direction and reason.",
    ("province", "direction", "reason"))
last_success_seconds = Gauge(
    "agritrace_bridge_last_success_timestamp_seconds",
    "Unix time of the last successful delivery, by direction.", ("province", "direction"))
sync_lag_seconds = Gauge(
    "agritrace_bridge_sync_lag_seconds",
    "Age of the oldest record waiting for delivery (0 when none waits), by direction.",
    ("province", "direction"))
queue_depth = Gauge(
    "agritrace_bridge_queue_depth",
    "Records waiting for delivery, by direction.", ("province", "direction"))
dead_letters = Gauge(
    "agritrace_bridge_dead_letters",
    "Records in the dead-letter store, by direction.", ("province", "direction"))


class PrometheusObserver:
    """SyncObserver over the metrics above."""

    def __init__(self, province: str) -> None:
        self.province = province

    def moved(self, direction: Direction, count: int) -> None:
        records_moved_total.labels(self.province, direction.value).inc(count)

    def retried(self, direction: Direction, reason: str) -> None:
        retries_total.labels(self.province, direction.value, reason).inc()

    def failed(self, direction: Direction, reason: str) -> None:
        failures_total.labels(self.province, direction.value, reason).inc()
        last_failure_seconds.labels(self.province, direction.value, reason).set(time.time())

    def succeeded(self, direction: Direction) -> None:
        last_success_seconds.labels(self.province, direction.value).set(time.time())
