"""The SQLAlchemy adapters and the migration, on a throw-away SQLite file: one pass through
the main flows with the real unit of work (the use cases themselves are tested on fakes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from agritrace_kernel import db
from agritrace_kernel.config import DatabaseTarget
from agritrace_kernel.errors import Unauthenticated
from agritrace_sso.adapters.crypto import JoseTokenCodec, signing_key_sealer
from agritrace_sso.adapters.repository import SsoUnitOfWork
from agritrace_sso.adapters.throttle import MemoryLoginThrottle
from agritrace_sso.bootstrap import MIGRATIONS
from agritrace_sso.domain.model import (
    AccountInput,
    AccountKind,
    Caller,
    OnboardingStage,
    PlatformInput,
)
from agritrace_sso.service_layer.services import SsoService

PASSWORD = "correct horse battery"


@pytest.fixture
def sql_service(tmp_path: Path, fake: Any) -> SsoService:
    target = DatabaseTarget(url=f"sqlite:///{tmp_path / 'sso.db'}", schema=None)
    db.migrate(target, MIGRATIONS)
    sessions = db.session_factory(db.create_engine(target))
    return SsoService(lambda: SsoUnitOfWork(sessions), fake.CountingHasher(),
                      JoseTokenCodec(signing_key_sealer(b"k" * 32)), MemoryLoginThrottle())


def test_main_flows_on_sqlite(sql_service: SsoService) -> None:
    service = sql_service
    assert service.ensure_admin(PASSWORD)
    admin_login = service.login("admin", PASSWORD)
    admin = Caller(admin_login.account.account_id, AccountKind.OPS_ADMIN,
                   session_id=admin_login.tokens.session_id)
    op = service.create_account(admin, "r1", AccountInput(
        username="op.one", kind=AccountKind.SUBJECT_OPERATOR, subject_id="S33ABC",
        jurisdiction="330106"), PASSWORD)
    assert service.create_account(admin, "r1", AccountInput(
        username="op.one", kind=AccountKind.SUBJECT_OPERATOR, subject_id="S33ABC",
        jurisdiction="330106"), PASSWORD) == op
    accounts, _ = service.list_accounts(admin, None, 0, "")
    assert [a.username for a in accounts] == ["admin", "op.one"]

    first = service.login("op.one", PASSWORD).tokens
    second = service.refresh(first.refresh_token)
    with pytest.raises(Unauthenticated) as error:
        service.refresh(first.refresh_token)
    assert error.value.reason == "REFRESH_TOKEN_REUSED"
    revocations, cursor = service.list_revocations(admin, "", 0)
    assert [r.session_id for r in revocations] == [second.session_id]
    assert service.list_revocations(admin, cursor, 0)[0] == []

    service.register_platform(admin, PlatformInput("zj", "33", "浙江", "https://zj.example.cn"))
    for stage in (OnboardingStage.TESTING, OnboardingStage.CONNECTED):
        service.update_platform(admin, "zj", PlatformInput(stage=stage), ["stage"])
    operator = service.login("op.one", PASSWORD)
    caller = Caller(op.account_id, op.kind, op.jurisdiction, op.subject_id,
                    session_id=operator.tokens.session_id)
    exchanged = service.exchange_token(caller, "zj")

    old_kid = json.loads(service.jwks())["keys"][0]["kid"]
    new_kid = service.rotate_signing_key(admin)
    keys = KeySet.import_key_set(json.loads(service.jwks()))
    assert jwt.decode(exchanged.access_token, keys, algorithms=["EdDSA"]).claims["aud"] \
        == "platform:zj"
    assert {k["kid"] for k in json.loads(service.jwks())["keys"]} == {old_kid, new_kid}
    assert service.introspect(admin, operator.tokens.access_token).active

    updated = service.update_account(admin, op.account_id, AccountInput(disabled=True),
                                     ["disabled"], expected_version=1)
    assert updated.disabled and updated.version == 2
    assert not service.introspect(admin, operator.tokens.access_token).active
    platforms, _ = service.list_platforms(0, "")
    assert [p.stage.value for p in platforms] == ["CONNECTED"]
