"""eventually: retries a predicate's False and a check's failed assertion, returns anything
else, and gives up with the check's own message or the awaited condition's name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agritrace_testing.polling import eventually


def answers(*values: object) -> Iterator[object]:
    yield from values
    while True:
        yield values[-1]


def test_a_predicate_is_asked_again_until_it_answers_a_value() -> None:
    stream = answers(False, "", 0, [], "ready")
    assert eventually(lambda: next(stream), timeout=5, interval=0) == "ready"


def test_a_check_of_asserts_is_asked_again_until_it_passes() -> None:
    stream = answers(1, 2, 3)

    def reached_three() -> None:
        assert next(stream) == 3

    assert eventually(reached_three, timeout=5, interval=0) is None


def test_a_failing_check_ends_with_its_own_assertion() -> None:
    def never() -> None:
        raise AssertionError("the read model is behind")

    with pytest.raises(AssertionError, match="the read model is behind"):
        eventually(never, timeout=0.05, interval=0.01)


def test_a_false_predicate_ends_naming_what_was_awaited() -> None:
    with pytest.raises(TimeoutError, match="both imported"):
        eventually(lambda: False, timeout=0.05, interval=0.01, what="both imported")


def test_other_errors_are_not_retried() -> None:
    calls = []

    def broken() -> bool:
        calls.append(1)
        raise KeyError("boom")

    with pytest.raises(KeyError):
        eventually(broken, timeout=5, interval=0)
    assert len(calls) == 1
