"""The gRPC face of sso: translates messages to use-case calls and back. No business rules
here; domain errors are mapped to statuses by the kernel's interceptor.

The caller comes from `agritrace_kernel.auth.principal.current_principal()`, set by the
authentication interceptor; method-level rules are in `policy.py`."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from agritrace.sso.v1 import sso_pb2 as pb
from agritrace.sso.v1 import sso_pb2_grpc
from agritrace_kernel.auth.principal import Principal, current_principal
from agritrace_kernel.grpc_kit.timestamps import to_timestamp
from agritrace_sso.domain.model import (
    NATIONAL_AUDIENCE,
    Account,
    AccountInput,
    AccountKind,
    Caller,
    OnboardingStage,
    Platform,
    PlatformInput,
    RegulatorRole,
)
from agritrace_sso.service_layer.services import SsoService, TokenSet

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SsoService"].full_name

_KINDS = {number: AccountKind(name.removeprefix("ACCOUNT_KIND_"))
          for name, number in pb.AccountKind.items() if not name.endswith("_UNSPECIFIED")}
_ROLES = {number: RegulatorRole(name.removeprefix("REGULATOR_ROLE_"))
          for name, number in pb.RegulatorRole.items() if not name.endswith("_UNSPECIFIED")}
_STAGES = {number: OnboardingStage(name.removeprefix("ONBOARDING_STAGE_"))
           for name, number in pb.OnboardingStage.items() if not name.endswith("_UNSPECIFIED")}
_KIND_NUMBERS = {kind: number for number, kind in _KINDS.items()}
_ROLE_NUMBERS = {role: number for number, role in _ROLES.items()}
_STAGE_NUMBERS = {stage: number for number, stage in _STAGES.items()}


def caller_from_principal(principal: Principal | None) -> Caller | None:
    """The kernel's Principal as the use cases' Caller."""
    if principal is None:
        return None
    return Caller(
        account_id=principal.account_id,
        kind=AccountKind(principal.kind.value),
        jurisdiction=principal.jurisdiction,
        subject_id=principal.subject_id,
        roles=principal.roles,
        session_id=principal.session_id,
        audience=principal.audience or NATIONAL_AUDIENCE,
    )


def current_caller() -> Caller | None:
    return caller_from_principal(current_principal())


def account_to_proto(account: Account) -> pb.Account:
    return pb.Account(
        account_id=account.account_id,
        username=account.username,
        display_name=account.display_name,
        kind=_KIND_NUMBERS[account.kind],  # type: ignore[arg-type]
        subject_id=account.subject_id,
        jurisdiction=account.jurisdiction,
        roles=[_ROLE_NUMBERS[role] for role in account.roles],  # type: ignore[misc]
        disabled=account.disabled,
        version=account.version,
        create_time=to_timestamp(account.created_at),
    )


def account_from_proto(message: pb.Account) -> AccountInput:
    return AccountInput(
        username=message.username,
        display_name=message.display_name,
        kind=_KINDS.get(message.kind),
        subject_id=message.subject_id,
        jurisdiction=message.jurisdiction,
        roles=tuple(_ROLES[r] for r in message.roles if r in _ROLES),
        disabled=message.disabled,
    )


def platform_to_proto(platform: Platform) -> pb.Platform:
    return pb.Platform(
        platform_id=platform.platform_id,
        province=platform.province,
        name=platform.name,
        url=platform.url,
        stage=_STAGE_NUMBERS[platform.stage],  # type: ignore[arg-type]
        version=platform.version,
    )


def platform_from_proto(message: pb.Platform) -> PlatformInput:
    return PlatformInput(
        platform_id=message.platform_id,
        province=message.province,
        name=message.name,
        url=message.url,
        stage=_STAGES.get(message.stage),
    )


def tokens_to_proto(tokens: TokenSet) -> pb.TokenSet:
    return pb.TokenSet(
        access_token=tokens.access_token,
        expires_in=tokens.expires_in,
        refresh_token=tokens.refresh_token,
        token_type=tokens.token_type,
        session_id=tokens.session_id,
    )


class SsoServicer(sso_pb2_grpc.SsoServiceServicer):
    def __init__(
        self, service: SsoService, caller: Callable[[], Caller | None] = current_caller
    ) -> None:
        self._service = service
        self._caller = caller

    # -- sign-in and sessions ---------------------------------------------------------------

    def Login(self, request: pb.LoginRequest, context: grpc.ServicerContext) -> pb.LoginResponse:
        result = self._service.login(request.username, request.password)
        return pb.LoginResponse(tokens=tokens_to_proto(result.tokens),
                                account=account_to_proto(result.account))

    def Refresh(
        self, request: pb.RefreshRequest, context: grpc.ServicerContext
    ) -> pb.RefreshResponse:
        return pb.RefreshResponse(
            tokens=tokens_to_proto(self._service.refresh(request.refresh_token))
        )

    def Logout(
        self, request: pb.LogoutRequest, context: grpc.ServicerContext
    ) -> pb.LogoutResponse:
        return pb.LogoutResponse(session_id=self._service.logout(self._caller()))

    def RevokeSessions(
        self, request: pb.RevokeSessionsRequest, context: grpc.ServicerContext
    ) -> pb.RevokeSessionsResponse:
        revoked = self._service.revoke_sessions(self._caller(), request.account_id)
        return pb.RevokeSessionsResponse(revoked=revoked)

    def ListRevocations(
        self, request: pb.ListRevocationsRequest, context: grpc.ServicerContext
    ) -> pb.ListRevocationsResponse:
        revocations, cursor = self._service.list_revocations(
            self._caller(), request.cursor, request.page_size
        )
        return pb.ListRevocationsResponse(
            revocations=[
                pb.Revocation(session_id=r.session_id, revoke_time=to_timestamp(r.revoked_at))
                for r in revocations
            ],
            next_cursor=cursor,
        )

    def Introspect(
        self, request: pb.IntrospectRequest, context: grpc.ServicerContext
    ) -> pb.IntrospectResponse:
        result = self._service.introspect(self._caller(), request.token)
        if not result.active or result.account is None:
            return pb.IntrospectResponse(active=False)
        response = pb.IntrospectResponse(
            active=True,
            account=account_to_proto(result.account),
            session_id=result.session_id,
            audience=result.audience,
        )
        if result.expire_time is not None:
            response.expire_time.CopyFrom(to_timestamp(result.expire_time))
        return response

    def GetJwks(
        self, request: pb.GetJwksRequest, context: grpc.ServicerContext
    ) -> pb.GetJwksResponse:
        return pb.GetJwksResponse(jwks_json=self._service.jwks())

    def RotateSigningKey(
        self, request: pb.RotateSigningKeyRequest, context: grpc.ServicerContext
    ) -> pb.RotateSigningKeyResponse:
        return pb.RotateSigningKeyResponse(kid=self._service.rotate_signing_key(self._caller()))

    def ExchangeToken(
        self, request: pb.ExchangeTokenRequest, context: grpc.ServicerContext
    ) -> pb.ExchangeTokenResponse:
        tokens = self._service.exchange_token(self._caller(), request.platform_id)
        return pb.ExchangeTokenResponse(tokens=tokens_to_proto(tokens))

    # -- accounts ---------------------------------------------------------------------------

    def CreateAccount(
        self, request: pb.CreateAccountRequest, context: grpc.ServicerContext
    ) -> pb.CreateAccountResponse:
        account = self._service.create_account(
            self._caller(), request.request_id, account_from_proto(request.account),
            request.password,
        )
        return pb.CreateAccountResponse(account=account_to_proto(account))

    def GetAccount(
        self, request: pb.GetAccountRequest, context: grpc.ServicerContext
    ) -> pb.GetAccountResponse:
        account = self._service.get_account(self._caller(), request.account_id)
        return pb.GetAccountResponse(account=account_to_proto(account))

    def ListAccounts(
        self, request: pb.ListAccountsRequest, context: grpc.ServicerContext
    ) -> pb.ListAccountsResponse:
        accounts, next_token = self._service.list_accounts(
            self._caller(), _KINDS.get(request.kind), request.page_size, request.page_token
        )
        return pb.ListAccountsResponse(
            accounts=[account_to_proto(a) for a in accounts], next_page_token=next_token
        )

    def UpdateAccount(
        self, request: pb.UpdateAccountRequest, context: grpc.ServicerContext
    ) -> pb.UpdateAccountResponse:
        account = self._service.update_account(
            self._caller(),
            request.account.account_id,
            account_from_proto(request.account),
            list(request.update_mask.paths),
            request.password,
            request.account.version,
        )
        return pb.UpdateAccountResponse(account=account_to_proto(account))

    # -- platforms --------------------------------------------------------------------------

    def RegisterPlatform(
        self, request: pb.RegisterPlatformRequest, context: grpc.ServicerContext
    ) -> pb.RegisterPlatformResponse:
        platform = self._service.register_platform(
            self._caller(), platform_from_proto(request.platform)
        )
        return pb.RegisterPlatformResponse(platform=platform_to_proto(platform))

    def UpdatePlatform(
        self, request: pb.UpdatePlatformRequest, context: grpc.ServicerContext
    ) -> pb.UpdatePlatformResponse:
        platform = self._service.update_platform(
            self._caller(),
            request.platform.platform_id,
            platform_from_proto(request.platform),
            list(request.update_mask.paths),
            request.platform.version,
        )
        return pb.UpdatePlatformResponse(platform=platform_to_proto(platform))

    def ListPlatforms(
        self, request: pb.ListPlatformsRequest, context: grpc.ServicerContext
    ) -> pb.ListPlatformsResponse:
        platforms, next_token = self._service.list_platforms(
            request.page_size, request.page_token
        )
        return pb.ListPlatformsResponse(
            platforms=[platform_to_proto(p) for p in platforms], next_page_token=next_token
        )
