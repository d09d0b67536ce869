"""Adapters over gRPC to the sso service: the sources of public keys and revoked sessions,
and the access token of this service's own account for service-to-service calls."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol, TypeVar

import grpc

from agritrace.sso.v1 import sso_pb2, sso_pb2_grpc

log = logging.getLogger(__name__)

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")


class TokenProvider(Protocol):
    def token(self) -> str:
        """A valid access token to send as `authorization: Bearer <token>`."""
        ...


def _stub(channel: grpc.Channel) -> Any:
    return sso_pb2_grpc.SsoServiceStub(channel)  # type: ignore[no-untyped-call]


def bearer_metadata(token: str) -> tuple[tuple[str, str]]:
    """The metadata that carries an access token."""
    return (("authorization", f"Bearer {token}"),)


class SsoKeySetSource:
    """KeySetSource over sso GetJwks (anonymous)."""

    def __init__(self, channel: grpc.Channel, *, timeout: float = 5.0) -> None:
        self._stub = _stub(channel)
        self._timeout = timeout

    def fetch_jwks(self) -> str:
        response: sso_pb2.GetJwksResponse = self._stub.GetJwks(
            sso_pb2.GetJwksRequest(), timeout=self._timeout
        )
        return str(response.jwks_json)


class SsoRevocationSource:
    """RevocationSource over sso ListRevocations, called as this service's account."""

    def __init__(
        self,
        channel: grpc.Channel,
        token_provider: TokenProvider,
        *,
        timeout: float = 5.0,
        page_size: int = 1000,
    ) -> None:
        self._stub = _stub(channel)
        self._tokens = token_provider
        self._timeout = timeout
        self._page_size = page_size

    def revocations_since(self, cursor: str) -> tuple[list[tuple[str, datetime]], str]:
        try:
            response: sso_pb2.ListRevocationsResponse = self._stub.ListRevocations(
                sso_pb2.ListRevocationsRequest(cursor=cursor, page_size=self._page_size),
                timeout=self._timeout,
                metadata=bearer_metadata(self._tokens.token()),
            )
        except grpc.RpcError as error:
            _invalidate_on_unauthenticated(self._tokens, error)
            raise
        revocations = [
            (r.session_id, r.revoke_time.ToDatetime(tzinfo=UTC)) for r in response.revocations
        ]
        return revocations, str(response.next_cursor)


def _invalidate_on_unauthenticated(tokens: TokenProvider, error: grpc.RpcError) -> None:
    code = getattr(error, "code", None)
    invalidate = getattr(tokens, "invalidate", None)
    if callable(code) and code() is grpc.StatusCode.UNAUTHENTICATED and callable(invalidate):
        invalidate()


class ServiceTokenProvider:
    """Signs in as a service account and keeps its access token fresh: renewed (Refresh, or a
    new Login if that fails) `refresh_margin_seconds` before it expires. Thread-safe."""

    def __init__(
        self,
        channel: grpc.Channel,
        username: str,
        password: str,
        *,
        refresh_margin_seconds: float = 60.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stub = _stub(channel)
        self._username = username
        self._password = password
        self._margin = refresh_margin_seconds
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._access_token = ""
        self._refresh_token = ""
        self._expires_at = float("-inf")

    def token(self) -> str:
        with self._lock:
            if self._clock() < self._expires_at - self._margin:
                return self._access_token
            tokens = self._renewed()
            self._access_token = tokens.access_token
            self._refresh_token = tokens.refresh_token
            self._expires_at = self._clock() + tokens.expires_in
            return self._access_token

    def invalidate(self) -> None:
        """Forgets the token (e.g. its session was revoked); the next call signs in again."""
        with self._lock:
            self._expires_at = float("-inf")
            self._refresh_token = ""

    def _renewed(self) -> sso_pb2.TokenSet:
        if self._refresh_token:
            try:
                refreshed: sso_pb2.RefreshResponse = self._stub.Refresh(
                    sso_pb2.RefreshRequest(refresh_token=self._refresh_token),
                    timeout=self._timeout,
                )
                return refreshed.tokens
            except grpc.RpcError:
                log.info("refreshing the service token failed; signing in again")
        response: sso_pb2.LoginResponse = self._stub.Login(
            sso_pb2.LoginRequest(username=self._username, password=self._password),
            timeout=self._timeout,
        )
        return response.tokens


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class _ClientCallDetails(_CallDetails, grpc.ClientCallDetails):
    pass


class BearerTokenClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer <token>` to every outgoing call (unless the call already
    carries one): `grpc.intercept_channel(channel, BearerTokenClientInterceptor(provider))`."""

    def __init__(self, token_provider: TokenProvider) -> None:
        self._tokens = token_provider

    def _with_token(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = list(details.metadata or ())
        if not any(key.lower() == "authorization" for key, _ in metadata):
            metadata.extend(bearer_metadata(self._tokens.token()))
        return _ClientCallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, client_call_details: grpc.ClientCallDetails,
                              request: Any) -> Any:
        return continuation(self._with_token(client_call_details), request)

    def intercept_unary_stream(self, continuation: Any,
                               client_call_details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._with_token(client_call_details), request)

    def intercept_stream_unary(self, continuation: Any,
                               client_call_details: grpc.ClientCallDetails,
                               request_iterator: Iterator[Any]) -> Any:
        return continuation(self._with_token(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation: Any,
                                client_call_details: grpc.ClientCallDetails,
                                request_iterator: Iterator[Any]) -> Any:
        return continuation(self._with_token(client_call_details), request_iterator)
