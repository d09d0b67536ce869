"""Single sign-on end to end, in both run modes: sign in nationally, exchange the token for a
provincial platform, and let a simulated provincial platform verify it against the published
key set - the way a provincial UI accepts a user without a second sign-in."""

from __future__ import annotations

import base64
import json
import time
import uuid

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from joserfc import jwt
from joserfc.jwk import KeySet

from agritrace.sso.v1 import sso_pb2 as pb
from agritrace.sso.v1 import sso_pb2_grpc
from agritrace_registry.domain import identifiers
from agritrace_testing.polling import eventually

pytestmark = pytest.mark.integration


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


class SimulatedProvincialPlatform:
    """What a provincial platform does with a token the national side exchanged for it:
    verify the signature against the national key set, the issuer and its own audience."""

    def __init__(self, platform_id: str, sso: sso_pb2_grpc.SsoServiceStub) -> None:
        self.audience = f"platform:{platform_id}"
        self._sso = sso

    def accept(self, token: str) -> dict[str, object]:
        keys = KeySet.import_key_set(json.loads(self._sso.GetJwks(pb.GetJwksRequest()).jwks_json))
        decoded = jwt.decode(token, keys, algorithms=["EdDSA"])
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": "agritrace-sso"},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
        ).validate(decoded.claims)
        return dict(decoded.claims)


@pytest.fixture(scope="module")
def sso(platform) -> sso_pb2_grpc.SsoServiceStub:  # type: ignore[no-untyped-def]
    return sso_pb2_grpc.SsoServiceStub(platform.sso_channel)


@pytest.fixture(scope="module")
def admin_token(platform, sso) -> str:  # type: ignore[no-untyped-def]
    answer = sso.Login(pb.LoginRequest(username="admin", password=platform.admin_password))
    assert answer.account.kind == pb.ACCOUNT_KIND_OPS_ADMIN
    return str(answer.tokens.access_token)


def test_wrong_password_and_unknown_user_look_the_same(sso) -> None:  # type: ignore[no-untyped-def]
    codes = []
    for username in ("admin", f"nobody-{uuid.uuid4().hex[:6]}"):
        with pytest.raises(grpc.RpcError) as refused:
            sso.Login(pb.LoginRequest(username=username, password="not the password at all"))
        codes.append((refused.value.code(), refused.value.details()))
    assert codes[0] == codes[1]
    assert codes[0][0] is grpc.StatusCode.UNAUTHENTICATED


def test_exchanged_token_is_accepted_by_the_provincial_platform(  # type: ignore[no-untyped-def]
    sso, admin_token
) -> None:
    suffix = uuid.uuid4().hex[:6]
    platform_id = f"zj-{suffix}"
    sso.RegisterPlatform(pb.RegisterPlatformRequest(platform=pb.Platform(
        platform_id=platform_id, province="33", name="浙江省农产品质量安全追溯平台",
        url="https://zj.example.gov.cn")), metadata=bearer(admin_token))
    for stage in (pb.ONBOARDING_STAGE_TESTING, pb.ONBOARDING_STAGE_CONNECTED):
        sso.UpdatePlatform(pb.UpdatePlatformRequest(
            platform=pb.Platform(platform_id=platform_id, stage=stage),
            update_mask=FieldMask(paths=["stage"])), metadata=bearer(admin_token))
    listed = sso.ListPlatforms(pb.ListPlatformsRequest())  # public: no token
    assert platform_id in {p.platform_id for p in listed.platforms}

    username = f"reg33-{suffix}"
    sso.CreateAccount(pb.CreateAccountRequest(
        request_id=f"create-{suffix}", password="a long enough password",
        account=pb.Account(username=username, display_name="浙江省监管员",
                           kind=pb.ACCOUNT_KIND_REGULATOR, jurisdiction="33",
                           roles=[pb.REGULATOR_ROLE_REVIEWER])), metadata=bearer(admin_token))
    regulator = sso.Login(pb.LoginRequest(username=username, password="a long enough password"))

    exchanged = sso.ExchangeToken(pb.ExchangeTokenRequest(platform_id=platform_id),
                                  metadata=bearer(regulator.tokens.access_token))
    claims = SimulatedProvincialPlatform(platform_id, sso).accept(exchanged.tokens.access_token)
    assert claims["sub"] == regulator.account.account_id
    assert claims["jurisdiction"] == "33"

    # Another province's platform must not accept it.
    with pytest.raises(Exception):  # noqa: B017 - joserfc's claim error
        SimulatedProvincialPlatform("js-other", sso).accept(exchanged.tokens.access_token)

    # A platform that is not connected refuses the exchange.
    sso.UpdatePlatform(pb.UpdatePlatformRequest(
        platform=pb.Platform(platform_id=platform_id, stage=pb.ONBOARDING_STAGE_SUSPENDED),
        update_mask=FieldMask(paths=["stage"])), metadata=bearer(admin_token))
    with pytest.raises(grpc.RpcError) as refused:
        sso.ExchangeToken(pb.ExchangeTokenRequest(platform_id=platform_id),
                          metadata=bearer(regulator.tokens.access_token))
    assert refused.value.code() in (grpc.StatusCode.FAILED_PRECONDITION,
                                    grpc.StatusCode.PERMISSION_DENIED)


def test_refresh_rotates_and_reuse_revokes_the_session(sso, platform) -> None:  # type: ignore[no-untyped-def]
    first = sso.Login(pb.LoginRequest(username="admin", password=platform.admin_password))
    second = sso.Refresh(pb.RefreshRequest(refresh_token=first.tokens.refresh_token))
    assert second.tokens.refresh_token != first.tokens.refresh_token
    assert sso.Introspect(pb.IntrospectRequest(token=second.tokens.access_token),
                          metadata=bearer(second.tokens.access_token)).active

    with pytest.raises(grpc.RpcError) as reused:
        sso.Refresh(pb.RefreshRequest(refresh_token=first.tokens.refresh_token))
    assert reused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    # The whole family is gone: the newest refresh token fails too.
    with pytest.raises(grpc.RpcError):
        sso.Refresh(pb.RefreshRequest(refresh_token=second.tokens.refresh_token))
    other = sso.Login(pb.LoginRequest(username="admin", password=platform.admin_password))
    eventually(lambda: not sso.Introspect(pb.IntrospectRequest(
        token=second.tokens.access_token), metadata=bearer(other.tokens.access_token)).active,
        timeout=10, what="the family's access token inactive")


def test_jwks_publishes_public_keys_only(sso) -> None:  # type: ignore[no-untyped-def]
    keys = json.loads(sso.GetJwks(pb.GetJwksRequest()).jwks_json)["keys"]
    assert keys and all(key["kty"] == "OKP" and "d" not in key and key.get("kid")
                        for key in keys)


def _status_reason(error: grpc.RpcError) -> str:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


def test_the_registry_enforces_tokens_jurisdiction_and_revocation(  # type: ignore[no-untyped-def]
    platform, sso, admin_token
) -> None:
    """Through the real servers: no token, a platform-audience token, a county regulator
    outside its county, and a revoked session are all refused by the registry."""
    from agritrace.registry.v1 import registry_pb2 as rpb
    from agritrace.registry.v1 import registry_pb2_grpc

    registry = registry_pb2_grpc.RegistryServiceStub(platform.channel)
    suffix = uuid.uuid4().hex[:6]
    with pytest.raises(grpc.RpcError) as anonymous:
        registry.ListSubjects(rpb.ListSubjectsRequest())
    assert anonymous.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert _status_reason(anonymous.value) == "TOKEN_MISSING"

    username = f"county-{suffix}"
    sso.CreateAccount(pb.CreateAccountRequest(
        request_id=f"county-{suffix}", password="a long enough password",
        account=pb.Account(username=username, display_name="县监管员",
                           kind=pb.ACCOUNT_KIND_REGULATOR, jurisdiction="330106",
                           roles=[pb.REGULATOR_ROLE_REVIEWER])), metadata=bearer(admin_token))
    county = sso.Login(pb.LoginRequest(username=username, password="a long enough password"))
    token = county.tokens.access_token

    # A subject of another county, registered by the administrator.
    body = "93330102" + suffix.upper().replace("O", "0").replace("I", "1")[:6].ljust(9, "0")
    body = "".join(c if c in identifiers.CREDIT_CODE_ALPHABET else "0" for c in body)
    other = registry.RegisterSubject(rpb.RegisterSubjectRequest(
        request_id=f"other-county-{suffix}",
        registration=rpb.SubjectRegistration(
            kind=rpb.SUBJECT_KIND_COOPERATIVE, name=f"邻县合作社{suffix}",
            credit_code=body + identifiers.credit_code_check_char(body),
            division_code="330102")),
        metadata=bearer(admin_token)).subject
    with pytest.raises(grpc.RpcError) as outside:
        registry.ReviewSubject(rpb.ReviewSubjectRequest(
            subject_id=other.subject_id, decision=rpb.REVIEW_DECISION_APPROVE),
            metadata=bearer(token))
    assert outside.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert _status_reason(outside.value) == "OUTSIDE_JURISDICTION"
    listed = registry.ListSubjects(rpb.ListSubjectsRequest(page_size=1000),
                                   metadata=bearer(token))
    assert all(s.division_code == "330106" for s in listed.subjects)

    sso.RevokeSessions(pb.RevokeSessionsRequest(account_id=county.account.account_id),
                       metadata=bearer(admin_token))
    deadline = time.monotonic() + 10  # services poll revocations every 2 s
    refused = None
    while time.monotonic() < deadline:
        try:
            registry.ListSubjects(rpb.ListSubjectsRequest(), metadata=bearer(token))
        except grpc.RpcError as error:
            refused = error
            break
        time.sleep(0.2)
    assert refused is not None, "a revoked session was still accepted after 10 s"
    assert refused.code() is grpc.StatusCode.UNAUTHENTICATED
    assert _status_reason(refused) == "TOKEN_REVOKED"


def test_key_rotation_keeps_old_and_new_tokens_working_at_the_registry(  # type: ignore[no-untyped-def]
    platform, sso, admin_token
) -> None:
    """RotateSigningKey while the registry is serving: the new key is published at once and
    signs only after the activation delay; a token signed with the old key still works, and
    one signed with the new key (an unknown kid to the registry's cache) works at once - the
    registry fetches the key set again - and the JWKS carries both keys."""
    from agritrace.registry.v1 import registry_pb2 as rpb
    from agritrace.registry.v1 import registry_pb2_grpc

    registry = registry_pb2_grpc.RegistryServiceStub(platform.channel)
    registry.ListSubjects(rpb.ListSubjectsRequest(page_size=1), metadata=bearer(admin_token))
    before = {k["kid"] for k in json.loads(sso.GetJwks(pb.GetJwksRequest()).jwks_json)["keys"]}
    kid = sso.RotateSigningKey(pb.RotateSigningKeyRequest(), metadata=bearer(admin_token)).kid
    after = {k["kid"] for k in json.loads(sso.GetJwks(pb.GetJwksRequest()).jwks_json)["keys"]}
    assert kid not in before and before <= after and kid in after

    # The new key signs once it has been published for the activation delay (10 s).
    time.sleep(10.5)
    fresh = sso.Login(pb.LoginRequest(username="admin", password=platform.admin_password))
    header = json.loads(base64.urlsafe_b64decode(fresh.tokens.access_token.split(".")[0] + "=="))
    assert header["kid"] == kid
    for token in (admin_token, fresh.tokens.access_token):  # old key, new key
        registry.ListSubjects(rpb.ListSubjectsRequest(page_size=1), metadata=bearer(token))


def test_an_operator_registers_its_subject_and_then_updates_it(  # type: ignore[no-untyped-def]
    platform, sso, admin_token
) -> None:
    """A producer's operator account starts unbound; registering a subject binds it (the
    registry's subject_registered event reaching sso's consumer), after which the operator
    may update that subject - and register no other."""
    from google.protobuf.field_mask_pb2 import FieldMask as Mask

    from agritrace.registry.v1 import registry_pb2 as rpb
    from agritrace.registry.v1 import registry_pb2_grpc

    registry = registry_pb2_grpc.RegistryServiceStub(platform.channel)
    suffix = uuid.uuid4().hex[:6]
    username = f"farmer-{suffix}"
    account = sso.CreateAccount(pb.CreateAccountRequest(
        request_id=f"op-{suffix}", password="a long enough password",
        account=pb.Account(username=username, display_name="茶农",
                           kind=pb.ACCOUNT_KIND_SUBJECT_OPERATOR, jurisdiction="330106")),
        metadata=bearer(admin_token)).account
    operator = sso.Login(pb.LoginRequest(username=username, password="a long enough password"))

    def registration(name: str) -> rpb.SubjectRegistration:
        body = "92330106" + uuid.uuid4().hex[:9].upper().replace("O", "0").replace("I", "1")
        body = "".join(c if c in identifiers.CREDIT_CODE_ALPHABET else "1" for c in body)
        return rpb.SubjectRegistration(
            kind=rpb.SUBJECT_KIND_FAMILY_FARM, name=name, division_code="330106",
            credit_code=body + identifiers.credit_code_check_char(body))

    subject = registry.RegisterSubject(rpb.RegisterSubjectRequest(
        request_id=f"own-{suffix}", registration=registration(f"龙井家庭农场{suffix}")),
        metadata=bearer(operator.tokens.access_token)).subject

    bound = eventually(lambda: (a := sso.GetAccount(pb.GetAccountRequest(
        account_id=account.account_id), metadata=bearer(admin_token)).account).subject_id
        and a, timeout=30, what="sso bound the account to its subject")
    assert bound.subject_id == subject.subject_id

    renewed = sso.Refresh(pb.RefreshRequest(refresh_token=operator.tokens.refresh_token))
    token = renewed.tokens.access_token
    updated = registry.UpdateSubject(rpb.UpdateSubjectRequest(
        subject_id=subject.subject_id, version=subject.version,
        registration=rpb.SubjectRegistration(address="西湖区龙井村"),
        update_mask=Mask(paths=["address"])), metadata=bearer(token)).subject
    assert updated.address == "西湖区龙井村"
    with pytest.raises(grpc.RpcError) as second:
        registry.RegisterSubject(rpb.RegisterSubjectRequest(
            request_id=f"second-{suffix}", registration=registration(f"另一农场{suffix}")),
            metadata=bearer(token))
    assert second.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert _status_reason(second.value) == "ALREADY_BOUND_TO_SUBJECT"
