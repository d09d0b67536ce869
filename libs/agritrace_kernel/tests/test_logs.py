"""Structured logs: personal data is masked as a last line of defence and every record carries
the trace it belongs to."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agritrace_kernel.logs import configure_logging, redact
from agritrace_kernel.telemetry import configure_tracing

RESIDENT_ID = "110105199001011234"
RESIDENT_ID_X = "11010519900101123X"
PHONE = "13812345678"

tracer = trace.get_tracer("agritrace.tests")


@pytest.fixture(scope="module", autouse=True)
def tracing() -> None:
    configure_tracing("kernel-tests", InMemorySpanExporter())


# -- redact ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (RESIDENT_ID, "110105********1234"),
        (RESIDENT_ID_X, "110105********123X"),
        (RESIDENT_ID_X.lower(), "110105********123x"),
        (PHONE, "138****5678"),
        (f"身份证{RESIDENT_ID}，手机{PHONE}。", "身份证110105********1234，手机138****5678。"),
        (f"id={RESIDENT_ID}&phone={PHONE}", "id=110105********1234&phone=138****5678"),
        (f'{{"resident_id": "{RESIDENT_ID}"}}', '{"resident_id": "110105********1234"}'),
        ("+86 13812345678", "+86 138****5678"),
    ],
)
def test_redact_masks_id_numbers_and_phones(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order 12345678901234567890",  # a longer run of digits is not an ID number
        "batch 1381234567890",  # nor a phone
        "S33K7QW2M9XH4TC8P",
        "credit code 91330106MA2XXXXX0Y",
        "fixed line 0571-87654321",
        "12812345678",  # no mobile number starts with 12
        "",
    ],
)
def test_redact_leaves_other_text_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize("text", ["+8613812345678", "008613812345678", "138-1234-5678",
                                  "138 1234 5678"])
def test_redact_masks_other_spellings_of_a_mobile_number(text: str) -> None:
    digits = "".join(ch for ch in redact(text) if ch.isdigit())
    assert "12345678" not in digits


# -- the configured handler -----------------------------------------------------------------------


@pytest.fixture
def logger_for() -> Iterator[Callable[[str], logging.Logger]]:
    """A logger wired to the handler configure_logging builds (writing to the captured stderr),
    without leaving that handler on the root logger."""
    root = logging.getLogger()
    alembic = logging.getLogger("alembic")
    saved = (root.handlers[:], root.level, alembic.level)
    made: list[logging.Logger] = []

    def build(log_format: str) -> logging.Logger:
        configure_logging(log_format, "DEBUG")
        assert len(root.handlers) == 1
        handler = root.handlers[0]
        root.handlers[:], _, _ = saved
        logger = logging.getLogger(f"agritrace.tests.logs.{log_format}")
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        made.append(logger)
        return logger

    yield build
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    alembic.setLevel(saved[2])
    for logger in made:
        logger.handlers[:] = []
        logger.propagate = True


def json_lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_configure_logging_installs_one_handler(
    logger_for: Callable[[str], logging.Logger],
) -> None:
    root = logging.getLogger()
    before = root.handlers[:]
    configure_logging("json", "INFO")
    configure_logging("json", "INFO")
    assert len(root.handlers) == 1
    assert root.level == logging.INFO
    root.handlers[:] = before


def test_json_lines_carry_the_trace_inside_a_span(
    logger_for: Callable[[str], logging.Logger], capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logger_for("json")

    with tracer.start_as_current_span("register") as span:
        logger.info("registered %s", "S33K7QW2M9XH4TC8P", extra={"subject_id": "S1", "n": 3})
        context = span.get_span_context()
    logger.warning("outside any span")

    inside, outside = json_lines(capsys.readouterr().err)
    assert inside["message"] == "registered S33K7QW2M9XH4TC8P"
    assert inside["level"] == "INFO"
    assert inside["logger"] == "agritrace.tests.logs.json"
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert inside["subject_id"] == "S1"
    assert inside["n"] == 3
    assert outside["trace_id"] == ""
    assert outside["level"] == "WARNING"


def test_json_lines_never_carry_the_clear_id_number(
    logger_for: Callable[[str], logging.Logger], capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logger_for("json")

    logger.info(f"looking up {RESIDENT_ID}")
    logger.info("looking up %s with phone %s", RESIDENT_ID_X, PHONE)
    logger.info("request", extra={"resident_id": RESIDENT_ID, "contact_phone": PHONE})
    try:
        raise ValueError(f"bad number {RESIDENT_ID}")
    except ValueError:
        logger.exception("failed")

    err = capsys.readouterr().err
    lines = json_lines(err)
    assert len(lines) == 4
    assert RESIDENT_ID not in err
    assert RESIDENT_ID_X not in err
    assert PHONE not in err
    assert lines[0]["message"] == "looking up 110105********1234"
    assert lines[1]["message"] == "looking up 110105********123X with phone 138****5678"
    assert lines[2]["resident_id"] == "110105********1234"
    assert lines[2]["contact_phone"] == "138****5678"
    assert "110105********1234" in str(lines[3]["exception"])


@pytest.mark.parametrize(
    "extra",
    [
        {"request": {"resident_id": RESIDENT_ID, "name": "张三"}},
        {"numbers": [RESIDENT_ID]},
        {"contact_phone": int(PHONE)},
    ],
)
def test_json_lines_never_carry_the_clear_id_number_in_structured_extra(
    extra: dict[str, object],
    logger_for: Callable[[str], logging.Logger],
    capsys: pytest.CaptureFixture[str],
) -> None:
    logger_for("json").info("request received", extra=extra)
    err = capsys.readouterr().err
    assert json_lines(err)[0]["message"] == "request received"
    assert RESIDENT_ID not in err
    assert PHONE not in err


def test_text_lines_are_redacted_and_carry_the_trace(
    logger_for: Callable[[str], logging.Logger], capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logger_for("text")

    with tracer.start_as_current_span("lookup") as span:
        logger.info("lookup %s", RESIDENT_ID)
        trace_id = format(span.get_span_context().trace_id, "032x")

    err = capsys.readouterr().err
    assert RESIDENT_ID not in err
    assert "lookup 110105********1234" in err
    assert f"[{trace_id}]" in err
