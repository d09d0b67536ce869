"""A signed-in load-test user's session with the sso service, kept alive for as long as the
run lasts: signed in with a password as a person would, its access token (15 minutes)
renewed through `Refresh` before it expires. Each user has a session of its own: a refresh
token is single use, and presenting one that another user already rotated would revoke the
session. Free of locust and gevent, so the suite tests it; locustfile.py reports its calls."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from agritrace.sso.v1 import sso_pb2

# Renew this long before the access token expires: a call made just before expiry must not
# arrive just after it.
DEFAULT_REFRESH_MARGIN = 60.0


class SessionError(Exception):
    """sso answered, but not with what a session needs."""


class SsoCalls(Protocol):
    """What a session needs of the sso service (its gRPC stub, or a fake)."""

    def Login(self, request: sso_pb2.LoginRequest, *, timeout: float) -> Any: ...  # noqa: N802

    def Refresh(self, request: sso_pb2.RefreshRequest, *,  # noqa: N802
                timeout: float) -> Any: ...


class SignedInSession:
    """One user's sso session: `sign_in()` once, then `credentials()` before each call and
    `refresh()` whenever `due()`."""

    def __init__(self, sso: SsoCalls, username: str, password: str, *,
                 refresh_margin: float = DEFAULT_REFRESH_MARGIN,
                 clock: Callable[[], float] = time.monotonic, timeout: float = 10.0) -> None:
        if refresh_margin < 0:
            raise ValueError("refresh_margin must not be negative")
        self._sso = sso
        self._username = username
        self._password = password
        self._margin = refresh_margin
        self._clock = clock
        self._timeout = timeout
        self._access_token = ""
        self._refresh_token = ""
        self._renew_at = 0.0

    def sign_in(self) -> sso_pb2.TokenSet:
        asked = self._clock()
        answer = self._sso.Login(sso_pb2.LoginRequest(username=self._username,
                                                      password=self._password),
                                 timeout=self._timeout)
        return self._keep(answer.tokens, asked)

    @property
    def signed_in(self) -> bool:
        return bool(self._access_token)

    def due(self) -> bool:
        """Whether the access token is within the margin of its expiry (or was never had)."""
        return not self._access_token or self._clock() >= self._renew_at

    def refresh(self) -> sso_pb2.TokenSet:
        """New tokens for the session's latest refresh token, which is then spent."""
        if not self._refresh_token:
            raise RuntimeError("sign_in() first")
        asked = self._clock()
        answer = self._sso.Refresh(sso_pb2.RefreshRequest(refresh_token=self._refresh_token),
                                   timeout=self._timeout)
        return self._keep(answer.tokens, asked)

    def credentials(self) -> tuple[tuple[str, str], ...]:
        """The metadata that carries the current access token."""
        if not self._access_token:
            raise RuntimeError("sign_in() first")
        return (("authorization", f"Bearer {self._access_token}"),)

    def _keep(self, tokens: sso_pb2.TokenSet, asked: float) -> sso_pb2.TokenSet:
        """Keeps `tokens`, counting their life from when they were `asked` for: they were
        issued no earlier."""
        if not tokens.access_token or not tokens.refresh_token:
            raise SessionError("sso answered without an access and a refresh token")
        self._access_token = tokens.access_token
        self._refresh_token = tokens.refresh_token
        # A margin as long as the token's life would renew before every call.
        self._renew_at = asked + max(0.0, tokens.expires_in - self._margin)
        return tokens
