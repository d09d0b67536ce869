"""Structured logs: JSON lines in microservices mode, readable text in all-in-one mode.

Every record carries the current trace and span ids, and a last-line-of-defence filter masks
anything shaped like a resident ID number or a mobile number, so personal data never reaches
a log in clear even if a developer logs a request by mistake.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

from opentelemetry import trace

# 18-character resident IDs (last may be X) and mainland mobile numbers, not inside longer runs.
_RESIDENT_ID = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[0-9Xx])(?![0-9A-Za-z])")
# Mobile numbers, also with a +86/0086 prefix and with spaces or hyphens between the groups.
_MOBILE = re.compile(
    r"(?<![\d+])((?:\+|00)?86[-\s]?)?(1[3-9]\d)[-\s]?\d{4}[-\s]?(\d{4})(?!\d)"
)


def redact(text: str) -> str:
    """Masks ID-number-shaped and phone-shaped substrings."""
    text = _RESIDENT_ID.sub(r"\1********\2", text)
    return _MOBILE.sub(lambda m: f"{m.group(1) or ''}{m.group(2)}****{m.group(3)}", text)


class _TraceAndRedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.trace_id = format(context.trace_id, "032x") if context.is_valid else ""
        record.span_id = format(context.span_id, "016x") if context.is_valid else ""
        message = redact(record.getMessage())
        record.msg, record.args = message, None
        return True


_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "trace_id",
    "span_id",
    "asctime",
}


def _redact_value(value: Any) -> Any:
    """Strings are masked in place; structured values whose JSON form holds personal data
    are replaced by their masked JSON text."""
    if isinstance(value, str):
        return redact(value)
    text = json.dumps(value, ensure_ascii=False, default=str)
    masked = redact(text)
    return value if masked == text else masked


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": getattr(record, "trace_id", ""),
            "span_id": getattr(record, "span_id", ""),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED:
                entry[key] = _redact_value(value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(log_format: str = "text", level: str = "INFO") -> None:
    """Installs one handler on the root logger (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_TraceAndRedactFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s %(message)s [%(trace_id)s]")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Alembic narrates every plugin it loads at INFO; keep its warnings only.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLevelName(level)))
