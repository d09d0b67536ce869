"""What national ops watch about codes, beside the kernel's per-RPC metrics: how many codes
each operation moved, per province, and what scans find (a rise in unknown or mistyped codes
is the first sign of counterfeit labels)."""

from __future__ import annotations

from prometheus_client import Counter

codes_total = Counter(
    "agritrace_codes_total",
    "Trace codes moved by committed operations, by operation and issuing province.",
    ["operation", "province"],
)
code_verifications_total = Counter(
    "agritrace_code_verifications_total",
    "VerifyCode answers by outcome: malformed, bad_check, unknown, or the code's state.",
    ["outcome"],
)


def count_codes(operation: str, provinces: list[str], count: int) -> None:
    """Counts `count` codes of an operation; codes of several provinces count as "mixed"."""
    if count > 0 and provinces:
        province = provinces[0] if len(set(provinces)) == 1 else "mixed"
        codes_total.labels(operation, province).inc(count)
