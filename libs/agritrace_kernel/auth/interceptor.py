"""The server interceptor that authenticates every call and applies the method-level policy.

It sits just outside the error interceptor (`create_server(extra_interceptors=[...])`), so it
answers refusals itself, with the same rich status (ErrorInfo reason) domain errors get."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import grpc

from agritrace_kernel.auth.policy import PolicyTable
from agritrace_kernel.auth.principal import Principal, acting_as
from agritrace_kernel.auth.tokens import (
    NATIONAL_AUDIENCE,
    TOKEN_INVALID,
    TOKEN_MISSING,
    KeysUnavailable,
    RevocationCache,
    TokenVerifier,
    check_not_revoked,
)
from agritrace_kernel.errors import DomainError, PermissionDenied, Unauthenticated
from agritrace_kernel.grpc_kit.interceptors import MethodInfo, ScopedInterceptor
from agritrace_kernel.grpc_kit.status import rich_status

log = logging.getLogger(__name__)

# Probes and tooling must work without a token; they reveal no data.
UNAUTHENTICATED_SERVICES = frozenset({
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
})

AUTHORIZATION = "authorization"
NOT_PERMITTED = "METHOD_NOT_PERMITTED"
UNDECLARED = "METHOD_NOT_DECLARED"

Metadata = Iterable[tuple[str, str | bytes]]


class AuthInterceptor(ScopedInterceptor):
    """Reads `authorization: Bearer <jwt>`, verifies it, refuses revoked sessions, applies the
    method's rule and runs the call as the principal (`current_principal()`)."""

    def __init__(
        self,
        verifier: TokenVerifier,
        revocations: RevocationCache,
        policies: PolicyTable,
        audience: str = NATIONAL_AUDIENCE,
    ) -> None:
        self._verifier = verifier
        self._revocations = revocations
        self._policies = policies
        self._audience = audience

    def scope(self, context: grpc.ServicerContext, info: MethodInfo) -> acting_as:
        principal: Principal | None = None
        if info.service not in UNAUTHENTICATED_SERVICES:
            try:
                principal = self.authorize(context.invocation_metadata(), info.full_method)
            except DomainError as error:
                context.abort_with_status(rich_status(error))
            except KeysUnavailable:
                log.warning("cannot verify tokens: no keys from sso yet")
                context.abort(grpc.StatusCode.UNAVAILABLE,
                              "authentication is not available yet; retry")
        return acting_as(principal)

    def authorize(self, metadata: Metadata | None, full_method: str) -> Principal | None:
        """The principal the call runs as; raises Unauthenticated or PermissionDenied."""
        principal = self.authenticate(metadata)
        rule = self._policies.rule_for(full_method)
        if rule is None:
            log.warning("refused a call to %s, which has no authorization rule", full_method)
            raise PermissionDenied(
                "this method is not open to callers", reason=UNDECLARED,
                metadata={"method": full_method},
            )
        if rule.allows(principal):
            return principal
        if principal is None:
            raise Unauthenticated(
                "this method needs an access token (authorization: Bearer <token>)",
                reason=TOKEN_MISSING,
            )
        raise PermissionDenied(
            "the caller may not call this method", reason=NOT_PERMITTED,
            metadata={"method": full_method, "kind": principal.kind.value},
        )

    def authenticate(self, metadata: Metadata | None) -> Principal | None:
        """The principal of the bearer token in `metadata`; None if there is none."""
        token = bearer_token(metadata)
        if token is None:
            return None
        principal = self._verifier.verify(token, audience=self._audience)
        check_not_revoked(principal, self._revocations)
        return principal


def bearer_token(metadata: Metadata | None) -> str | None:
    """The token of the `authorization` header ("Bearer" in any case); None without the
    header; Unauthenticated if it is malformed or repeated."""
    values = [value for key, value in (metadata or ()) if key.lower() == AUTHORIZATION]
    if not values:
        return None
    if len(values) > 1:
        raise Unauthenticated("more than one authorization header", reason=TOKEN_INVALID)
    value = values[0]
    if isinstance(value, bytes):
        raise Unauthenticated("the authorization header is not text", reason=TOKEN_INVALID)
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("the authorization header is not 'Bearer <token>'",
                              reason=TOKEN_INVALID)
    return str(token)
