"""Sign-in, refresh-token families, logout and revocations, tokens and signing keys."""

from __future__ import annotations

import json
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from agritrace_kernel.errors import InvalidArgument, PermissionDenied, Unauthenticated
from agritrace_sso.domain.model import AccountInput, AccountKind, Caller, RegulatorRole
from agritrace_sso.service_layer.services import SsoService, refresh_digest

PASSWORD = "correct horse battery"
ADMIN = Caller("acct_admin", AccountKind.OPS_ADMIN)
SERVICE_CALLER = Caller("acct_svc", AccountKind.SERVICE)


def regulator(service: SsoService, username: str = "reg.zj", jurisdiction: str = "33") -> Any:
    return service.create_account(
        ADMIN, f"req-{username}",
        AccountInput(username=username, display_name="Regulator", kind=AccountKind.REGULATOR,
                     jurisdiction=jurisdiction, roles=(RegulatorRole.INSPECTOR,)),
        PASSWORD,
    )


def caller_of(login: Any) -> Caller:
    account = login.account
    return Caller(account.account_id, account.kind, account.jurisdiction, account.subject_id,
                  frozenset(account.role_names), login.tokens.session_id)


def decode(service: SsoService, token: str) -> Any:
    keys = KeySet.import_key_set(json.loads(service.jwks()))
    return jwt.decode(token, keys, algorithms=["EdDSA"])


# -- login -------------------------------------------------------------------------------------


def test_login_issues_tokens_with_the_exact_claims(service: SsoService, clock: Any) -> None:
    account = regulator(service)
    result = service.login("Reg.ZJ ", PASSWORD)
    assert result.account.account_id == account.account_id
    tokens = result.tokens
    assert tokens.token_type == "Bearer" and tokens.expires_in == 900
    assert tokens.refresh_token and tokens.session_id
    token = decode(service, tokens.access_token)
    assert token.header["alg"] == "EdDSA"
    assert token.header["kid"] == json.loads(service.jwks())["keys"][0]["kid"]
    now = int(clock().timestamp())
    claims = dict(token.claims)
    jti = claims.pop("jti")
    assert isinstance(jti, str) and len(jti) >= 16
    assert claims == {
        "iss": "agritrace-sso", "sub": account.account_id, "aud": "agritrace",
        "iat": now, "exp": now + 900, "sid": tokens.session_id, "kind": "REGULATOR",
        "username": "reg.zj", "subject_id": "", "jurisdiction": "33",
        "roles": ["INSPECTOR"],
    }


def test_jwks_holds_public_keys_only(service: SsoService) -> None:
    service.ensure_signing_key()
    (key,) = json.loads(service.jwks())["keys"]
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and "d" not in key


def test_signing_keys_are_sealed_at_rest(
    service: SsoService, database: Any, sealer: Any
) -> None:
    service.ensure_signing_key()
    (stored,) = database.committed.keys.values()
    private = json.loads(sealer.unseal(stored.private_sealed))
    assert stored.private_sealed.startswith("sealed:") and private["d"]
    assert private["d"] not in stored.private_sealed and "d" not in json.loads(stored.public_jwk)


def test_wrong_password_and_unknown_user_fail_alike(
    service: SsoService, hasher: Any
) -> None:
    regulator(service)
    with pytest.raises(Unauthenticated) as wrong:
        service.login("reg.zj", "not the password!")
    before = hasher.verifications
    with pytest.raises(Unauthenticated) as unknown:
        service.login("nobody.here", PASSWORD)
    assert hasher.verifications == before + 1  # a dummy hash was checked: comparable time
    assert wrong.value.reason == unknown.value.reason == "INVALID_CREDENTIALS"
    assert wrong.value.message == unknown.value.message


def test_login_requires_both_fields(service: SsoService) -> None:
    with pytest.raises(InvalidArgument) as error:
        service.login("", "")
    assert [v.field for v in error.value.violations] == ["username", "password"]


def test_five_failures_lock_the_account_for_fifteen_minutes(
    service: SsoService, clock: Any
) -> None:
    regulator(service)
    for _ in range(4):
        with pytest.raises(Unauthenticated) as error:
            service.login("reg.zj", "wrong password 1")
        assert error.value.reason == "INVALID_CREDENTIALS"
    with pytest.raises(Unauthenticated) as error:
        service.login("reg.zj", "wrong password 1")
    assert error.value.reason == "ACCOUNT_LOCKED"
    clock.advance(minutes=14)
    with pytest.raises(Unauthenticated) as error:
        service.login("reg.zj", PASSWORD)  # even the right password, while locked
    assert error.value.reason == "ACCOUNT_LOCKED"
    clock.advance(minutes=1)
    assert service.login("reg.zj", PASSWORD).tokens.access_token


def test_failures_outside_the_window_do_not_add_up(service: SsoService, clock: Any) -> None:
    regulator(service)
    for _ in range(4):
        with pytest.raises(Unauthenticated):
            service.login("reg.zj", "wrong password 1")
    clock.advance(minutes=16)
    with pytest.raises(Unauthenticated) as error:
        service.login("reg.zj", "wrong password 1")
    assert error.value.reason == "INVALID_CREDENTIALS"


def test_unknown_usernames_lock_too(service: SsoService) -> None:
    for _ in range(4):
        with pytest.raises(Unauthenticated):
            service.login("ghost", PASSWORD)
    with pytest.raises(Unauthenticated) as error:
        service.login("ghost", PASSWORD)
    assert error.value.reason == "ACCOUNT_LOCKED"


def test_disabled_accounts_cannot_sign_in(service: SsoService) -> None:
    account = regulator(service)
    service.update_account(ADMIN, account.account_id, AccountInput(disabled=True), ["disabled"])
    with pytest.raises(Unauthenticated) as error:
        service.login("reg.zj", PASSWORD)
    assert error.value.reason == "ACCOUNT_DISABLED"


def test_outdated_hashes_are_rehashed_at_sign_in(
    service: SsoService, database: Any, hasher: Any
) -> None:
    account = regulator(service)
    import argon2

    old = argon2.PasswordHasher(time_cost=2, memory_cost=64, parallelism=1).hash(PASSWORD)
    database.committed.accounts[account.account_id].password_hash = old
    service.login("reg.zj", PASSWORD)
    rehashed = database.committed.accounts[account.account_id].password_hash
    assert rehashed != old and not hasher.needs_rehash(rehashed)


# -- refresh -----------------------------------------------------------------------------------


def test_refresh_spends_the_token_and_issues_the_next(
    service: SsoService, database: Any, clock: Any
) -> None:
    regulator(service)
    first = service.login("reg.zj", PASSWORD).tokens
    clock.advance(minutes=10)
    second = service.refresh(first.refresh_token)
    assert second.session_id == first.session_id
    assert second.refresh_token != first.refresh_token
    assert decode(service, second.access_token).claims["iat"] == int(clock().timestamp())
    # Only digests are stored.
    stored = database.committed.refresh
    assert first.refresh_token not in stored and refresh_digest(first.refresh_token) in stored
    third = service.refresh(second.refresh_token)
    assert third.session_id == first.session_id


def test_reusing_a_spent_refresh_token_revokes_the_session(
    service: SsoService, database: Any
) -> None:
    regulator(service)
    first = service.login("reg.zj", PASSWORD).tokens
    second = service.refresh(first.refresh_token)
    with pytest.raises(Unauthenticated) as error:
        service.refresh(first.refresh_token)
    assert error.value.reason == "REFRESH_TOKEN_REUSED"
    assert database.committed.sessions[first.session_id].revoked_at is not None
    (event,) = database.events_named("sessions_revoked")
    assert event.payload["session_ids"] == [first.session_id]
    assert event.payload["reason"] == "refresh_token_reused"
    with pytest.raises(Unauthenticated) as error:
        service.refresh(second.refresh_token)  # the whole family is dead
    assert error.value.reason == "SESSION_REVOKED"


def test_unknown_refresh_token(service: SsoService) -> None:
    with pytest.raises(Unauthenticated) as error:
        service.refresh("made-up")
    assert error.value.reason == "INVALID_REFRESH_TOKEN"


def test_sessions_expire_after_twelve_hours(service: SsoService, clock: Any) -> None:
    regulator(service)
    tokens = service.login("reg.zj", PASSWORD).tokens
    clock.advance(hours=11, minutes=59)
    tokens = service.refresh(tokens.refresh_token)
    clock.advance(minutes=1)
    with pytest.raises(Unauthenticated) as error:
        service.refresh(tokens.refresh_token)
    assert error.value.reason == "SESSION_EXPIRED"


# -- logout, revocations -----------------------------------------------------------------------


def test_logout_and_revoke_sessions_show_in_revocations_with_a_cursor(
    service: SsoService, clock: Any
) -> None:
    account = regulator(service)
    one = service.login("reg.zj", PASSWORD)
    two = service.login("reg.zj", PASSWORD)
    three = service.login("reg.zj", PASSWORD)
    clock.advance(seconds=1)
    assert service.logout(caller_of(one)) == one.tokens.session_id
    clock.advance(seconds=1)
    assert service.revoke_sessions(ADMIN, account.account_id) == 2
    assert service.revoke_sessions(ADMIN, account.account_id) == 0

    page, cursor = service.list_revocations(SERVICE_CALLER, "", 2)
    assert [r.session_id for r in page] == [one.tokens.session_id, two.tokens.session_id]
    page, cursor = service.list_revocations(SERVICE_CALLER, cursor, 2)
    assert [r.session_id for r in page] == [three.tokens.session_id]
    page, same = service.list_revocations(SERVICE_CALLER, cursor, 2)
    assert page == [] and same == cursor

    four = service.login("reg.zj", PASSWORD)
    service.logout(caller_of(four))
    page, _ = service.list_revocations(SERVICE_CALLER, cursor, 0)
    assert [r.session_id for r in page] == [four.tokens.session_id]


def test_an_empty_cursor_lists_only_revocations_still_relevant(
    service: SsoService, clock: Any
) -> None:
    regulator(service)
    old = service.login("reg.zj", PASSWORD)
    service.logout(caller_of(old))
    clock.advance(seconds=901)
    recent = service.login("reg.zj", PASSWORD)
    service.logout(caller_of(recent))
    page, _ = service.list_revocations(SERVICE_CALLER, "", 0)
    assert [r.session_id for r in page] == [recent.tokens.session_id]


def test_revocations_are_for_services_and_bad_cursors_are_refused(service: SsoService) -> None:
    with pytest.raises(PermissionDenied):
        service.list_revocations(Caller("a", AccountKind.REGULATOR), "", 0)
    with pytest.raises(Unauthenticated):
        service.list_revocations(None, "", 0)
    with pytest.raises(InvalidArgument) as error:
        service.list_revocations(SERVICE_CALLER, "garbage!", 0)
    assert error.value.violations[0].field == "cursor"


def test_an_account_may_revoke_its_own_sessions_but_not_others(service: SsoService) -> None:
    mine = regulator(service)
    other = regulator(service, "reg.js", "32")
    me = caller_of(service.login("reg.zj", PASSWORD))
    service.login("reg.zj", PASSWORD)
    assert service.revoke_sessions(me, mine.account_id) == 2
    with pytest.raises(PermissionDenied):
        service.revoke_sessions(me, other.account_id)


# -- introspection -----------------------------------------------------------------------------


def test_introspect_active_then_inactive_after_logout(service: SsoService, clock: Any) -> None:
    regulator(service)
    login = service.login("reg.zj", PASSWORD)
    result = service.introspect(SERVICE_CALLER, login.tokens.access_token)
    assert result.active and result.account is not None
    assert result.account.username == "reg.zj" and result.audience == "agritrace"
    assert result.session_id == login.tokens.session_id
    assert int(result.expire_time.timestamp()) == int(clock().timestamp()) + 900
    service.logout(caller_of(login))
    assert not service.introspect(SERVICE_CALLER, login.tokens.access_token).active


def test_introspect_expired_forged_and_garbage_tokens(service: SsoService, clock: Any) -> None:
    regulator(service)
    token = service.login("reg.zj", PASSWORD).tokens.access_token
    header, payload, signature = token.split(".")
    forged = ".".join([header, payload, signature[::-1]])
    assert not service.introspect(SERVICE_CALLER, forged).active
    assert not service.introspect(SERVICE_CALLER, "not-a-jwt").active
    clock.advance(seconds=900)
    assert not service.introspect(SERVICE_CALLER, token).active
    with pytest.raises(PermissionDenied):
        service.introspect(Caller("x", AccountKind.SUBJECT_OPERATOR), token)


# -- key rotation ------------------------------------------------------------------------------


def test_rotation_keeps_old_tokens_verifiable_and_signs_with_the_new_key(
    service: SsoService, clock: Any
) -> None:
    regulator(service)
    before = service.login("reg.zj", PASSWORD).tokens
    old_kid = decode(service, before.access_token).header["kid"]
    clock.advance(minutes=5)
    new_kid = service.rotate_signing_key(ADMIN)
    assert new_kid != old_kid
    assert decode(service, before.access_token).claims["sid"] == before.session_id
    # Published at once, signing only after the activation delay: services fetch it first.
    kids = [key["kid"] for key in json.loads(service.jwks())["keys"]]
    assert kids == [new_kid, old_kid]
    meanwhile = service.login("reg.zj", PASSWORD).tokens
    assert decode(service, meanwhile.access_token).header["kid"] == old_kid
    clock.advance(seconds=10)
    after = service.login("reg.zj", PASSWORD).tokens
    assert decode(service, after.access_token).header["kid"] == new_kid
    kids = [key["kid"] for key in json.loads(service.jwks())["keys"]]
    assert kids == [new_kid, old_kid]
    # The retired key leaves the set once its last tokens have expired, plus an hour.
    clock.advance(minutes=75, seconds=1)
    assert [key["kid"] for key in json.loads(service.jwks())["keys"]] == [new_kid]


def test_a_long_lived_key_still_verifies_right_after_rotation(
    service: SsoService, clock: Any
) -> None:
    regulator(service)
    service.ensure_signing_key()
    clock.advance(days=30)
    token = service.login("reg.zj", PASSWORD).tokens.access_token
    service.rotate_signing_key(ADMIN)
    assert decode(service, token).claims["username"] == "reg.zj"


def test_only_administrators_rotate(service: SsoService) -> None:
    with pytest.raises(PermissionDenied):
        service.rotate_signing_key(Caller("r", AccountKind.REGULATOR))
    with pytest.raises(Unauthenticated):
        service.rotate_signing_key(None)


def test_ensure_signing_key_is_idempotent(service: SsoService) -> None:
    assert service.ensure_signing_key() == service.ensure_signing_key()
