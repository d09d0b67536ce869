"""Waiting for something another process does (a worker, a read model, a bridge's import)
without a fixed sleep: poll until it holds, within a timeout."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T], *, timeout: float = 30.0, what: str = "",
               interval: float = 0.2) -> T:
    """`check()`'s answer once it holds, asking every `interval` seconds.

    It does not hold yet while it fails an assertion (a check written as asserts) or answers
    a false value other than None (a predicate: False, "", 0, an empty list; `cond and value`
    hands back the value). None is a check of asserts that passed, and is returned like any
    other answer. After `timeout` seconds the last assertion is raised again, so its message
    tells what was missing, or, for a predicate, a TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = check()
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
        else:
            if answer is None or answer:
                return answer
            if time.monotonic() >= deadline:
                raise TimeoutError(f"not within {timeout}s: {what or 'the condition'}")
        time.sleep(interval)
