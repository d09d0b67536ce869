"""Account management: validation, who may manage whom, idempotent creation, updates with
their session side effects, password storage, the first administrator, event payloads."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from agritrace_kernel.errors import (
    AlreadyExists,
    ConcurrencyConflict,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)
from agritrace_sso.domain.model import AccountInput, AccountKind, Caller, RegulatorRole
from agritrace_sso.service_layer.services import SsoService

PASSWORD = "correct horse battery"
ADMIN = Caller("acct_admin", AccountKind.OPS_ADMIN)
# Managing regulators hold the roles the accounts they create get (they grant only those).
MANAGER_ROLES = frozenset({"REVIEWER", "AUDITOR"})
NATIONAL = Caller("acct_nat", AccountKind.REGULATOR, "", roles=MANAGER_ROLES)
ZHEJIANG = Caller("acct_zj", AccountKind.REGULATOR, "33", roles=MANAGER_ROLES)
HANGZHOU = Caller("acct_hz", AccountKind.REGULATOR, "3301", roles=MANAGER_ROLES)
OPERATOR = Caller("acct_op", AccountKind.SUBJECT_OPERATOR, "330106", subject_id="S33ABC")
PLATFORM = Caller("acct_pc", AccountKind.PLATFORM_CLIENT, "33")
SERVICE_CALLER = Caller("acct_svc", AccountKind.SERVICE)


def operator_input(username: str = "op.one", county: str = "330106") -> AccountInput:
    return AccountInput(username=username, display_name="Operator",
                        kind=AccountKind.SUBJECT_OPERATOR, subject_id="S33ABCDEF",
                        jurisdiction=county)


def regulator_input(username: str = "reg.one", jurisdiction: str = "33") -> AccountInput:
    return AccountInput(username=username, display_name="Regulator",
                        kind=AccountKind.REGULATOR, jurisdiction=jurisdiction,
                        roles=(RegulatorRole.REVIEWER, RegulatorRole.AUDITOR))


def fields_of(error: pytest.ExceptionInfo[InvalidArgument]) -> list[str]:
    return [v.field for v in error.value.violations]


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        (AccountInput(username="ab", kind=AccountKind.OPS_ADMIN), ["account.username"]),
        (AccountInput(username="Has Space", kind=AccountKind.OPS_ADMIN), ["account.username"]),
        (AccountInput(username="abc"), ["account.kind"]),
        # An operator needs its county; its subject may come later (registration binds it).
        (AccountInput(username="abc", kind=AccountKind.SUBJECT_OPERATOR),
         ["account.jurisdiction"]),
        (AccountInput(username="abc", kind=AccountKind.SUBJECT_OPERATOR, subject_id="s-1!",
                      jurisdiction="330106"), ["account.subject_id"]),
        (AccountInput(username="abc", kind=AccountKind.SUBJECT_OPERATOR, subject_id="S1",
                      jurisdiction="33"), ["account.jurisdiction"]),
        (AccountInput(username="abc", kind=AccountKind.REGULATOR, jurisdiction="331"),
         ["account.jurisdiction", "account.roles"]),
        (AccountInput(username="abc", kind=AccountKind.REGULATOR, jurisdiction="99",
                      roles=(RegulatorRole.AUDITOR,)), ["account.jurisdiction"]),
        (AccountInput(username="abc", kind=AccountKind.PLATFORM_CLIENT, jurisdiction="3301"),
         ["account.jurisdiction"]),
        (AccountInput(username="abc", kind=AccountKind.OPS_ADMIN, jurisdiction="33",
                      roles=(RegulatorRole.AUDITOR,), subject_id="S1"),
         ["account.subject_id", "account.roles", "account.jurisdiction"]),
    ],
)
def test_account_validation(service: SsoService, data: AccountInput, fields: list[str]) -> None:
    with pytest.raises(InvalidArgument) as error:
        service.create_account(ADMIN, "r1", data, PASSWORD)
    assert fields_of(error) == fields


def test_passwords_need_twelve_characters(service: SsoService) -> None:
    with pytest.raises(InvalidArgument) as error:
        service.create_account(ADMIN, "r1", regulator_input(), "short pass")
    assert fields_of(error) == ["password"]


def test_anonymous_callers_manage_nothing(service: SsoService) -> None:
    with pytest.raises(Unauthenticated):
        service.create_account(None, "r1", regulator_input(), PASSWORD)


# -- who may manage whom -----------------------------------------------------------------------

SCOPES = [
    # (caller, kind of the new account, its jurisdiction, allowed)
    (ADMIN, AccountKind.OPS_ADMIN, "", True),
    (ADMIN, AccountKind.SERVICE, "", True),
    (ADMIN, AccountKind.REGULATOR, "", True),
    (ADMIN, AccountKind.SUBJECT_OPERATOR, "330106", True),
    (NATIONAL, AccountKind.REGULATOR, "", True),
    (NATIONAL, AccountKind.REGULATOR, "44", True),
    (NATIONAL, AccountKind.SUBJECT_OPERATOR, "440106", True),
    (NATIONAL, AccountKind.PLATFORM_CLIENT, "44", True),
    (NATIONAL, AccountKind.OPS_ADMIN, "", False),
    (NATIONAL, AccountKind.SERVICE, "", False),
    (ZHEJIANG, AccountKind.REGULATOR, "3301", True),
    (ZHEJIANG, AccountKind.SUBJECT_OPERATOR, "330106", True),
    (ZHEJIANG, AccountKind.PLATFORM_CLIENT, "33", True),
    (ZHEJIANG, AccountKind.REGULATOR, "", False),
    (ZHEJIANG, AccountKind.REGULATOR, "32", False),
    (ZHEJIANG, AccountKind.SUBJECT_OPERATOR, "320106", False),
    (ZHEJIANG, AccountKind.PLATFORM_CLIENT, "32", False),
    (HANGZHOU, AccountKind.SUBJECT_OPERATOR, "330106", True),
    (HANGZHOU, AccountKind.SUBJECT_OPERATOR, "330206", False),
    (HANGZHOU, AccountKind.REGULATOR, "33", False),
    (HANGZHOU, AccountKind.PLATFORM_CLIENT, "33", False),
    (OPERATOR, AccountKind.SUBJECT_OPERATOR, "330106", False),
    (PLATFORM, AccountKind.SUBJECT_OPERATOR, "330106", False),
    (SERVICE_CALLER, AccountKind.SUBJECT_OPERATOR, "330106", False),
]


def _input(kind: AccountKind, jurisdiction: str) -> AccountInput:
    if kind is AccountKind.SUBJECT_OPERATOR:
        return operator_input("new.account", jurisdiction)
    if kind is AccountKind.REGULATOR:
        return regulator_input("new.account", jurisdiction)
    return AccountInput(username="new.account", kind=kind, jurisdiction=jurisdiction)


@pytest.mark.parametrize(("caller", "kind", "jurisdiction", "allowed"), SCOPES)
def test_create_account_permission_matrix(
    service: SsoService, caller: Caller, kind: AccountKind, jurisdiction: str, allowed: bool
) -> None:
    data = _input(kind, jurisdiction)
    if allowed:
        account = service.create_account(caller, "r1", data, PASSWORD)
        assert account.kind is kind and account.jurisdiction == jurisdiction
    else:
        with pytest.raises(PermissionDenied):
            service.create_account(caller, "r1", data, PASSWORD)


@pytest.mark.parametrize(("caller", "kind", "jurisdiction", "allowed"), SCOPES)
def test_get_update_and_revoke_follow_the_same_matrix(
    service: SsoService, caller: Caller, kind: AccountKind, jurisdiction: str, allowed: bool
) -> None:
    account = service.create_account(ADMIN, "r1", _input(kind, jurisdiction), PASSWORD)
    change = AccountInput(display_name="Renamed")
    if allowed:
        assert service.get_account(caller, account.account_id) == account
        assert service.update_account(caller, account.account_id, change,
                                      ["display_name"]).display_name == "Renamed"
        assert service.revoke_sessions(caller, account.account_id) == 0
    else:
        with pytest.raises(PermissionDenied):
            service.get_account(caller, account.account_id)
        with pytest.raises(PermissionDenied):
            service.update_account(caller, account.account_id, change, ["display_name"])
        with pytest.raises(PermissionDenied):
            service.revoke_sessions(caller, account.account_id)


def test_list_accounts_shows_what_the_caller_manages(service: SsoService) -> None:
    service.create_account(ADMIN, "r1", operator_input("op.hz", "330106"), PASSWORD)
    service.create_account(ADMIN, "r2", operator_input("op.nb", "330206"), PASSWORD)
    service.create_account(ADMIN, "r3", operator_input("op.js", "320106"), PASSWORD)
    service.create_account(ADMIN, "r4", regulator_input("reg.zj", "33"), PASSWORD)
    service.create_account(ADMIN, "r5", AccountInput(username="ops.two",
                                                     kind=AccountKind.OPS_ADMIN), PASSWORD)

    def names(caller: Caller, kind: AccountKind | None = None) -> list[str]:
        accounts, _ = service.list_accounts(caller, kind, 0, "")
        return [a.username for a in accounts]

    assert names(ADMIN) == ["op.hz", "op.js", "op.nb", "ops.two", "reg.zj"]
    assert names(NATIONAL) == ["op.hz", "op.js", "op.nb", "reg.zj"]
    assert names(ZHEJIANG) == ["op.hz", "op.nb", "reg.zj"]
    assert names(ZHEJIANG, AccountKind.SUBJECT_OPERATOR) == ["op.hz", "op.nb"]
    assert names(ZHEJIANG, AccountKind.OPS_ADMIN) == []
    assert names(HANGZHOU) == ["op.hz"]
    with pytest.raises(PermissionDenied):
        service.list_accounts(OPERATOR, None, 0, "")


def test_list_accounts_pages(service: SsoService) -> None:
    for n in range(5):
        service.create_account(ADMIN, f"r{n}", operator_input(f"op.{n}"), PASSWORD)
    seen, token = [], ""
    while True:
        page, token = service.list_accounts(ADMIN, None, 2, token)
        seen += [a.username for a in page]
        if not token:
            break
    assert seen == [f"op.{n}" for n in range(5)]
    _, token = service.list_accounts(ADMIN, None, 2, "")
    with pytest.raises(InvalidArgument):
        service.list_accounts(ADMIN, AccountKind.REGULATOR, 2, token)


# -- creation ----------------------------------------------------------------------------------


def test_create_is_idempotent_by_request_id(service: SsoService, database: Any) -> None:
    first = service.create_account(ADMIN, "req-1", operator_input(), PASSWORD)
    again = service.create_account(ADMIN, "req-1", operator_input(), PASSWORD)
    assert again == first
    assert len(database.committed.accounts) == 1
    assert len(database.events_named("account_created")) == 1
    with pytest.raises(FailedPrecondition) as error:
        service.create_account(ADMIN, "req-1", operator_input("op.two"), PASSWORD)
    assert error.value.reason == "REQUEST_ID_REUSED"


def test_usernames_are_unique(service: SsoService) -> None:
    service.create_account(ADMIN, "req-1", operator_input(), PASSWORD)
    with pytest.raises(AlreadyExists) as error:
        service.create_account(ADMIN, "req-2", operator_input(), PASSWORD)
    assert error.value.reason == "USERNAME_TAKEN"


def test_passwords_are_stored_as_argon2_hashes_only(
    service: SsoService, database: Any, hasher: Any
) -> None:
    account = service.create_account(ADMIN, "req-1", operator_input(), PASSWORD)
    stored = database.committed.accounts[account.account_id]
    assert stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in repr(database.committed)
    assert hasher.verify(stored.password_hash, PASSWORD)


# -- updates -----------------------------------------------------------------------------------


def test_disabling_revokes_every_session(service: SsoService, database: Any) -> None:
    account = service.create_account(ADMIN, "r", operator_input(), PASSWORD)
    service.login("op.one", PASSWORD)
    service.login("op.one", PASSWORD)
    updated = service.update_account(ADMIN, account.account_id, AccountInput(disabled=True),
                                     ["disabled"], expected_version=1)
    assert updated.disabled and updated.version == 2
    assert all(s.revoked_at for s in database.committed.sessions.values())
    (event,) = database.events_named("sessions_revoked")
    assert event.payload["reason"] == "account_disabled"
    assert len(event.payload["session_ids"]) == 2
    (changed,) = database.events_named("account_updated")
    assert changed.payload["changed_fields"] == ["disabled"]


def test_a_password_change_revokes_the_other_sessions(service: SsoService, database: Any) -> None:
    account = service.create_account(ADMIN, "r", operator_input(), PASSWORD)
    mine = service.login("op.one", PASSWORD)
    other = service.login("op.one", PASSWORD)
    me = Caller(account.account_id, account.kind, account.jurisdiction, account.subject_id,
                session_id=mine.tokens.session_id)
    service.update_account(me, account.account_id, AccountInput(), ["password"],
                           password="a brand new secret")
    sessions = database.committed.sessions
    assert sessions[mine.tokens.session_id].revoked_at is None
    assert sessions[other.tokens.session_id].revoked_at is not None
    assert service.login("op.one", "a brand new secret").account.account_id == account.account_id


def test_an_account_may_not_change_its_own_roles_or_disable_itself(service: SsoService) -> None:
    account = service.create_account(ADMIN, "r", regulator_input("reg.one", "3301"), PASSWORD)
    me = Caller(account.account_id, AccountKind.REGULATOR, "3301")
    with pytest.raises(PermissionDenied) as denied:
        service.update_account(me, account.account_id,
                               AccountInput(roles=(RegulatorRole.INSPECTOR,)), ["roles"])
    assert denied.value.reason == "SELF_CHANGE_NOT_ALLOWED"
    admin_account = service.create_account(
        ADMIN, "r2", AccountInput(username="ops.two", kind=AccountKind.OPS_ADMIN), PASSWORD)
    admin = Caller(admin_account.account_id, AccountKind.OPS_ADMIN)
    with pytest.raises(PermissionDenied) as error:
        service.update_account(admin, admin_account.account_id, AccountInput(disabled=True),
                               ["disabled"])
    assert error.value.reason == "SELF_CHANGE_NOT_ALLOWED"
    operator = service.create_account(ADMIN, "r3", operator_input(), PASSWORD)
    op = Caller(operator.account_id, AccountKind.SUBJECT_OPERATOR, "330106")
    with pytest.raises(PermissionDenied):
        service.update_account(op, operator.account_id, AccountInput(disabled=False),
                               ["disabled"])
    assert service.update_account(op, operator.account_id, AccountInput(display_name="Me"),
                                  ["display_name"]).display_name == "Me"


def test_update_checks_mask_roles_and_version(service: SsoService) -> None:
    account = service.create_account(ADMIN, "r", regulator_input(), PASSWORD)
    with pytest.raises(InvalidArgument):
        service.update_account(ADMIN, account.account_id, AccountInput(), [])
    with pytest.raises(InvalidArgument):
        service.update_account(ADMIN, account.account_id, AccountInput(), ["username"])
    with pytest.raises(InvalidArgument):
        service.update_account(ADMIN, account.account_id, AccountInput(roles=()), ["roles"])
    with pytest.raises(ConcurrencyConflict):
        service.update_account(ADMIN, account.account_id, AccountInput(display_name="x"),
                               ["display_name"], expected_version=7)
    updated = service.update_account(
        ADMIN, account.account_id, AccountInput(roles=(RegulatorRole.INSPECTOR,)), ["roles"])
    assert updated.roles == (RegulatorRole.INSPECTOR,)


# -- the first administrator -------------------------------------------------------------------


def test_ensure_admin_creates_once(service: SsoService, database: Any) -> None:
    assert service.ensure_admin(PASSWORD) is True
    assert service.ensure_admin("another password!") is False
    (admin,) = database.committed.accounts.values()
    assert admin.username == "admin" and admin.kind is AccountKind.OPS_ADMIN
    assert service.login("admin", PASSWORD).account.kind is AccountKind.OPS_ADMIN


# -- events ------------------------------------------------------------------------------------


def test_no_secret_or_personal_data_in_any_event(service: SsoService, database: Any) -> None:
    service.ensure_admin(PASSWORD)
    account = service.create_account(ADMIN, "r", operator_input(), PASSWORD)
    login = service.login("op.one", PASSWORD)
    service.refresh(login.tokens.refresh_token)
    service.update_account(ADMIN, account.account_id, AccountInput(display_name="Zhang San"),
                           ["display_name", "password"], password="another secret!!")
    service.revoke_sessions(ADMIN, account.account_id)
    assert database.published
    stored = database.committed.accounts[account.account_id]
    secrets_and_names = [PASSWORD, "another secret!!", stored.password_hash,
                         login.tokens.refresh_token, login.tokens.access_token,
                         "op.one", "Zhang San", '"admin"']
    for event in database.published:
        wire = json.dumps(event.to_wire(), ensure_ascii=False)
        for value in secrets_and_names:
            assert value not in wire, (event.name, value)
        assert event.name in {"account_created", "account_updated", "sessions_revoked",
                              "platform_registered", "platform_updated"}


def test_an_operator_is_bound_to_the_subject_it_registers(
    service: SsoService, uow_factory: Any
) -> None:
    from agritrace_kernel.events.model import Event

    unbound = dataclasses.replace(operator_input(), subject_id="")
    created = service.create_account(ADMIN, "req-op", unbound, PASSWORD)
    assert created.subject_id == ""

    def registered(subject_id: str, by: str) -> Event:
        return Event("registry", "subject_registered",
                     {"subject_id": subject_id, "registered_by_operator": by})

    with uow_factory() as uow:
        service.bind_registering_operator(registered("S33AAAAAAAAAAAAA", created.account_id),
                                          uow)
        uow.commit()
    login = service.login("op.one", PASSWORD)
    assert login.account.subject_id == "S33AAAAAAAAAAAAA"
    # Bound once: a later registration does not rebind it; other accounts are untouched.
    with uow_factory() as uow:
        service.bind_registering_operator(registered("S33BBBBBBBBBBBBB", created.account_id),
                                          uow)
        service.bind_registering_operator(registered("S33CCCCCCCCCCCCC", "acct_nobody"), uow)
        uow.commit()
    assert service.login("op.one", PASSWORD).account.subject_id == "S33AAAAAAAAAAAAA"


def test_a_regulator_grants_only_roles_it_holds(service: SsoService) -> None:
    inspector = service.create_account(ADMIN, "req-insp", dataclasses.replace(
        regulator_input("insp.zj", "33"), roles=(RegulatorRole.INSPECTOR,)), PASSWORD)
    caller = Caller(inspector.account_id, AccountKind.REGULATOR, "33",
                    roles=frozenset({"INSPECTOR"}))
    with pytest.raises(PermissionDenied) as denied:
        service.create_account(caller, "req-rev", dataclasses.replace(
            regulator_input("rev.hz", "3301"), roles=(RegulatorRole.REVIEWER,)), PASSWORD)
    assert denied.value.reason == "ROLE_NOT_HELD"
    colleague = service.create_account(caller, "req-insp2", dataclasses.replace(
        regulator_input("insp.hz", "3301"), roles=(RegulatorRole.INSPECTOR,)), PASSWORD)
    with pytest.raises(PermissionDenied) as promoted:
        service.update_account(caller, colleague.account_id,
                               AccountInput(roles=(RegulatorRole.AUDITOR,)), ["roles"], "")
    assert promoted.value.reason == "ROLE_NOT_HELD"
