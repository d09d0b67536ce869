"""Readiness of a server's authentication: not before revocations arrived once."""

from __future__ import annotations

from datetime import datetime

import pytest

from agritrace_kernel.auth.policy import ANONYMOUS_ALLOWED, PolicyTable
from agritrace_kernel.auth.wiring import local_authentication


class Keys:
    def fetch_jwks(self) -> str:
        return '{"keys": []}'


class Revocations:
    def __init__(self) -> None:
        self.available = False

    def revocations_since(self, cursor: str) -> tuple[list[tuple[str, datetime]], str]:
        if not self.available:
            raise ConnectionError("sso unreachable")
        return [], cursor


def test_ready_only_once_revocations_were_fetched() -> None:
    source = Revocations()
    auth = local_authentication(PolicyTable({"/x.Y/Z": ANONYMOUS_ALLOWED}), Keys(), source)
    assert not auth.recently_synced()
    with pytest.raises(ConnectionError):
        auth.revocations.poll_once()
    assert not auth.recently_synced()
    source.available = True
    auth.revocations.poll_once()
    assert auth.recently_synced()
    source.available = False  # an sso outage later does not take the server out
    with pytest.raises(ConnectionError):
        auth.revocations.poll_once()
    assert auth.recently_synced()
