"""Building a server's authentication from settings: keys and revocations come from the sso
service over gRPC (microservices mode), or from sources in the same process (all-in-one, and
the sso server itself)."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from agritrace_kernel.auth.interceptor import AuthInterceptor
from agritrace_kernel.auth.policy import PolicyTable
from agritrace_kernel.auth.sso_client import (
    BearerTokenClientInterceptor,
    ServiceTokenProvider,
    SsoKeySetSource,
    SsoRevocationSource,
)
from agritrace_kernel.auth.tokens import (
    KeySetCache,
    KeySetSource,
    RevocationCache,
    RevocationSource,
    TokenVerifier,
)
from agritrace_kernel.config import Settings


@dataclass
class Authentication:
    """The interceptor for a server, and what must start and stop with it."""

    interceptor: AuthInterceptor
    revocations: RevocationCache
    channels: list[grpc.Channel] = field(default_factory=list)

    def start(self) -> None:
        self.revocations.start()

    def stop(self) -> None:
        self.revocations.stop()
        for channel in self.channels:
            channel.close()

    def recently_synced(self) -> bool:
        """Readiness: revocations were fetched recently (a server that cannot learn of
        revoked sessions should not take traffic)."""
        return self.revocations.last_success is not None


def local_authentication(
    policies: PolicyTable, keys: KeySetSource, revocations: RevocationSource
) -> Authentication:
    cache = RevocationCache(revocations)
    verifier = TokenVerifier(KeySetCache(keys))
    return Authentication(AuthInterceptor(verifier, cache, policies), cache)


def remote_authentication(settings: Settings, policies: PolicyTable) -> Authentication:
    """Keys from sso's GetJwks, revocations from ListRevocations as this process's service
    account (AGRITRACE_SERVICE_USERNAME / AGRITRACE_SERVICE_PASSWORD)."""
    if not settings.sso_address:
        raise ValueError("AGRITRACE_SSO_ADDRESS is required when sso runs elsewhere")
    if not settings.service_username or settings.service_password is None:
        raise ValueError(
            "AGRITRACE_SERVICE_USERNAME and AGRITRACE_SERVICE_PASSWORD are required to read "
            "revocations from sso"
        )
    channel = grpc.insecure_channel(settings.sso_address)
    tokens = ServiceTokenProvider(
        channel, settings.service_username, settings.service_password.get_secret_value()
    )
    cache = RevocationCache(SsoRevocationSource(channel, tokens))
    verifier = TokenVerifier(KeySetCache(SsoKeySetSource(channel)))
    return Authentication(AuthInterceptor(verifier, cache, policies), cache, [channel])


def service_channel(settings: Settings, address: str | None,
                    variable: str) -> tuple[grpc.Channel, list[grpc.Channel]]:
    """A channel to another service at `address` whose calls carry this process's service
    account token (signed in to sso, refreshed as needed); and the channels to close on
    shutdown. `variable` names the setting of the address, for the error message."""
    if not address or not settings.sso_address:
        raise ValueError(f"{variable} and AGRITRACE_SSO_ADDRESS are required when that "
                         "service runs elsewhere")
    if not settings.service_username or settings.service_password is None:
        raise ValueError("AGRITRACE_SERVICE_USERNAME and AGRITRACE_SERVICE_PASSWORD are "
                         "required to call other services")
    sso_channel = grpc.insecure_channel(settings.sso_address)
    tokens = ServiceTokenProvider(sso_channel, settings.service_username,
                                  settings.service_password.get_secret_value())
    target = grpc.insecure_channel(address)
    channel = grpc.intercept_channel(target, BearerTokenClientInterceptor(tokens))
    return channel, [target, sso_channel]
