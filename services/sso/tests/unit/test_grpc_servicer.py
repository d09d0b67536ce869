"""The servicer's message mapping (no server: the methods are called directly) and the
conversion of the kernel's Principal into a Caller."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from google.protobuf.field_mask_pb2 import FieldMask

from agritrace.sso.v1 import sso_pb2 as pb
from agritrace_sso.domain.model import AccountKind, Caller
from agritrace_sso.entrypoints.grpc_servicer import SsoServicer, caller_from_principal
from agritrace_sso.service_layer.services import SsoService

PASSWORD = "correct horse battery"


class Kind(enum.StrEnum):
    REGULATOR = "REGULATOR"


@dataclass(frozen=True)
class Principal:
    account_id: str
    kind: Kind
    username: str
    subject_id: str
    jurisdiction: str
    roles: frozenset[str]
    session_id: str
    audience: str


def test_principal_becomes_caller() -> None:
    caller = caller_from_principal(Principal("acct_1", Kind.REGULATOR, "r", "", "33",
                                             frozenset({"AUDITOR"}), "ses_1", "agritrace"))
    assert caller == Caller("acct_1", AccountKind.REGULATOR, "33", "",
                            frozenset({"AUDITOR"}), "ses_1", "agritrace")
    assert caller_from_principal(None) is None


def test_rpcs_map_messages(service: SsoService) -> None:
    admin = Caller("acct_admin", AccountKind.OPS_ADMIN)
    servicer = SsoServicer(service, caller=lambda: admin)
    context: Any = None
    created = servicer.CreateAccount(pb.CreateAccountRequest(
        request_id="r1", password=PASSWORD,
        account=pb.Account(username="reg.zj", display_name="Reg",
                           kind=pb.ACCOUNT_KIND_REGULATOR, jurisdiction="33",
                           roles=[pb.REGULATOR_ROLE_AUDITOR, pb.REGULATOR_ROLE_REVIEWER]),
    ), context).account
    assert created.kind == pb.ACCOUNT_KIND_REGULATOR and created.version == 1
    assert list(created.roles) == [pb.REGULATOR_ROLE_REVIEWER, pb.REGULATOR_ROLE_AUDITOR]
    login = servicer.Login(pb.LoginRequest(username="reg.zj", password=PASSWORD), context)
    assert login.tokens.token_type == "Bearer" and login.account.account_id == created.account_id
    jwks = json.loads(servicer.GetJwks(pb.GetJwksRequest(), context).jwks_json)
    assert jwks["keys"][0]["kty"] == "OKP"
    updated = servicer.UpdateAccount(pb.UpdateAccountRequest(
        account=pb.Account(account_id=created.account_id, display_name="New", version=1),
        update_mask=FieldMask(paths=["display_name"]),
    ), context).account
    assert updated.display_name == "New" and updated.version == 2
    platform = servicer.RegisterPlatform(pb.RegisterPlatformRequest(platform=pb.Platform(
        platform_id="zj", province="33", name="浙江", url="https://zj.example.cn")),
        context).platform
    assert platform.stage == pb.ONBOARDING_STAGE_APPLIED
    listed = servicer.ListPlatforms(pb.ListPlatformsRequest(), context)
    assert [p.platform_id for p in listed.platforms] == ["zj"]
    active = servicer.Introspect(pb.IntrospectRequest(token=login.tokens.access_token), context)
    assert active.active and active.expire_time.seconds > 0
    assert not servicer.Introspect(pb.IntrospectRequest(token="x.y.z"), context).active


def test_current_caller_reads_the_kernel_principal() -> None:
    from agritrace_kernel.auth.principal import Principal as KernelPrincipal
    from agritrace_kernel.auth.principal import PrincipalKind, acting_as
    from agritrace_sso.entrypoints.grpc_servicer import current_caller

    principal = KernelPrincipal("acct_9", PrincipalKind("OPS_ADMIN"), "admin", "", "",
                                frozenset(), "ses_9", "agritrace")
    assert current_caller() is None
    with acting_as(principal):
        assert current_caller() == Caller("acct_9", AccountKind.OPS_ADMIN, session_id="ses_9")
