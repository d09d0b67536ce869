"""Fixtures shared by the kernel's tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from agritrace_kernel.config import DatabaseTarget
from agritrace_testing.postgres import throwaway_database
from agritrace_testing.rabbit import RabbitVhost

AMQP_URI = os.environ.get("AGRITRACE_TEST_AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture
def postgres() -> Iterator[DatabaseTarget]:
    """A PostgreSQL database of the test's own, dropped afterwards (skips without one)."""
    with throwaway_database("agritrace_pq", skip_without=True) as url:
        yield DatabaseTarget(url, None)


@pytest.fixture
def vhost_uri() -> Iterator[str]:
    """A RabbitMQ vhost of the test's own on the broker at 127.0.0.1:5672 (skipped when
    there is no broker or no rabbitmqctl to make one)."""
    from kombu import Connection

    vhost = RabbitVhost(AMQP_URI, prefix="agritrace_kernel_test", warn=lambda _: None)
    uri = vhost.create()
    if uri == vhost.base_uri:
        pytest.skip("rabbitmqctl cannot make a vhost here")
    try:
        with Connection(uri, connect_timeout=3) as connection:  # type: ignore[no-untyped-call]
            connection.ensure_connection(max_retries=1)
    except Exception as error:  # any reason: no broker to test against
        vhost.drop()
        pytest.skip(f"no RabbitMQ at {AMQP_URI}: {error}")
    yield uri
    vhost.drop()
