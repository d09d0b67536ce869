"""to_timestamp gives what protobuf's own FromDatetime gives, for aware and naive (UTC) times,
microseconds and times before 1970."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from agritrace_kernel.grpc_kit.timestamps import to_timestamp

BEIJING = timezone(timedelta(hours=8))


@pytest.mark.parametrize("value", [
    datetime(2026, 11, 29, 10, 15, 33, 123456, tzinfo=UTC),
    datetime(2026, 11, 29, 18, 15, 33, 999999, tzinfo=BEIJING),
    datetime(2026, 11, 29, 10, 15, 33),  # naive: UTC
    datetime(1969, 12, 31, 23, 59, 58, 500000, tzinfo=UTC),  # before the epoch
    datetime(1970, 1, 1, tzinfo=UTC),
])
def test_the_same_as_protobufs_own_conversion(value: datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(value)
    assert to_timestamp(value) == expected
    assert to_timestamp(value).ToDatetime(tzinfo=UTC) == (
        value if value.tzinfo else value.replace(tzinfo=UTC))
