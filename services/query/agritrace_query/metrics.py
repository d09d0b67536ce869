"""The query service's own Prometheus metrics (the kernel's cover RPCs and events)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

read_model_lag_seconds = Histogram(
    "agritrace_query_read_model_lag_seconds",
    "From an event's occurrence at its source to the read model's commit of it.",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
counterfeit_signals_total = Counter(
    "agritrace_query_counterfeit_signals_total",
    "Places where scans of unknown or malformed codes reached the threshold in a window "
    "(place: the division the scanning client declared, else \"network\").",
    ["place"],
)
# What the counterfeit alerts read: the time itself, unlike a counter's first increment (its
# series is created with it) or its history (gone after Prometheus restarts), says whether a
# signal fell in the alert's window.
counterfeit_last_signal_seconds = Gauge(
    "agritrace_query_counterfeit_last_signal_timestamp_seconds",
    "Unix time of the latest counterfeit signal, by place (as the counter).",
    ["place"],
)


def counterfeit_signalled(place: str) -> None:
    counterfeit_signals_total.labels(place).inc()
    counterfeit_last_signal_seconds.labels(place).set_to_current_time()
