"""Times into protobuf messages, the one way every servicer does it."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_timestamp(value: datetime) -> Timestamp:
    """`value` as a Timestamp; a naive value is UTC (stored times are UTC even where a
    database drops the zone). Built from the fields directly: Timestamp.FromDatetime goes
    through a naive copy, and an answer of thousands of records (a trace, a batch's history)
    spends much of its protobuf time there."""
    since = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)) - _EPOCH
    return Timestamp(seconds=since.days * 86_400 + since.seconds,
                     nanos=since.microseconds * 1000)
