"""Times into protobuf messages, the one way every servicer does it."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp_fields(value: datetime) -> dict[str, int]:
    """`value` as a Timestamp's fields, to build one in place where it is needed: a message
    handed to a constructor or to a repeated field's add() is copied. A naive value is UTC
    (stored times are UTC even where a database drops the zone). Computed from the fields
    directly: Timestamp.FromDatetime goes through a naive copy, and an answer of thousands of
    records (a trace, a batch's history) spends much of its protobuf time there."""
    since = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)) - _EPOCH
    return {"seconds": since.days * 86_400 + since.seconds, "nanos": since.microseconds * 1000}


def to_timestamp(value: datetime) -> Timestamp:
    """`value` as a Timestamp (see timestamp_fields)."""
    return Timestamp(**timestamp_fields(value))
