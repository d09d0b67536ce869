"""The sso use cases. Each runs in one unit of work: the state change, the idempotency record
and the event announcing it commit together, or nothing does.

Authorization of each use case (who may call what) lives here; the caller is a plain
`Caller` value, or None for an anonymous call. Events carry identifiers and public facts
only: never usernames, display names, passwords, hashes or tokens."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from agritrace_kernel import paging
from agritrace_kernel.errors import (
    AlreadyExists,
    ConcurrencyConflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    ViolationCollector,
)
from agritrace_kernel.events.model import Event
from agritrace_kernel.idempotency import RequestRecord, check_request_id, fingerprint
from agritrace_kernel.paging import decode_token, encode_token
from agritrace_sso.domain.model import (
    ACCESS_TOKEN_LIFETIME,
    ISSUER,
    KEY_PUBLICATION_GRACE,
    MAX_DISPLAY_NAME,
    MAX_PASSWORD,
    NATIONAL_AUDIENCE,
    REFRESH_LIFETIME,
    REGULATOR_MANAGEABLE,
    SELF_UPDATABLE_FIELDS,
    UPDATABLE_ACCOUNT_FIELDS,
    UPDATABLE_PLATFORM_FIELDS,
    USERNAME,
    AccessClaims,
    Account,
    AccountInput,
    AccountKind,
    Caller,
    OnboardingStage,
    Platform,
    PlatformInput,
    RefreshToken,
    Revocation,
    Session,
    check_exchange,
    check_password,
    normalize_username,
    require_grantable,
    require_manage,
    validate_account,
    validate_platform,
    validate_roles,
)
from agritrace_sso.service_layer.ports import (
    AccountQuery,
    InvalidToken,
    LoginThrottle,
    PasswordHasher,
    SigningKey,
    TokenCodec,
    UnitOfWork,
)

SERVICE = "sso"
DEFAULT_ACCOUNT_PAGE, MAX_ACCOUNT_PAGE = 50, 500
DEFAULT_PLATFORM_PAGE, MAX_PLATFORM_PAGE = 50, 100
DEFAULT_REVOCATION_PAGE, MAX_REVOCATION_PAGE = 1000, 5000
ACCESS_SECONDS = int(ACCESS_TOKEN_LIFETIME.total_seconds())

Clock = Callable[[], datetime]
IdGenerator = Callable[[str], str]


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def refresh_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()




def account_payload(account: Account) -> dict[str, object]:
    """What events say about an account: no username, display name or secret."""
    return {
        "account_id": account.account_id,
        "kind": account.kind.value,
        "subject_id": account.subject_id,
        "jurisdiction": account.jurisdiction,
        "roles": account.role_names,
        "disabled": account.disabled,
        "version": account.version,
    }


def platform_payload(platform: Platform) -> dict[str, object]:
    return {
        "platform_id": platform.platform_id,
        "province": platform.province,
        "name": platform.name,
        "url": platform.url,
        "stage": platform.stage.value,
        "version": platform.version,
    }


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    expires_in: int
    refresh_token: str
    session_id: str
    token_type: str = "Bearer"


@dataclass(frozen=True)
class LoginResult:
    tokens: TokenSet
    account: Account


@dataclass(frozen=True)
class IntrospectResult:
    active: bool
    account: Account | None = None
    session_id: str = ""
    audience: str = ""
    expire_time: datetime | None = None


INACTIVE = IntrospectResult(active=False)


def _invalid_credentials() -> Unauthenticated:
    # One error for an unknown username and a wrong password.
    return Unauthenticated("wrong username or password", reason="INVALID_CREDENTIALS")


def _locked() -> Unauthenticated:
    return Unauthenticated(
        "too many failed sign-ins: try again in 15 minutes", reason="ACCOUNT_LOCKED"
    )


def _authenticated(caller: Caller | None) -> Caller:
    if caller is None:
        raise Unauthenticated("sign in first", reason="AUTHENTICATION_REQUIRED")
    return caller


def _require_kind(caller: Caller | None, kinds: Collection[AccountKind], what: str) -> Caller:
    caller = _authenticated(caller)
    if caller.kind not in kinds:
        raise PermissionDenied(
            f"{what} is reserved to {', '.join(sorted(k.value for k in kinds))} accounts",
            reason="CALLER_KIND_NOT_ALLOWED",
            metadata={"kind": caller.kind.value},
        )
    return caller


# Stages in which a provincial platform (and its bridge) may act.
OPEN_STAGES = frozenset({OnboardingStage.TESTING, OnboardingStage.CONNECTED})


def _open_platform_in(uow: UnitOfWork, province: str) -> bool:
    after: tuple[str, str] | None = None
    while True:
        page = uow.platforms.page(after, 100)
        if any(p.province == province and p.stage in OPEN_STAGES for p in page):
            return True
        if len(page) < 100:
            return False
        after = (page[-1].province, page[-1].platform_id)


# A rotated key is published this long before it signs: longer than a service waits between
# two fetches of the key set when it meets an unknown kid (agritrace_kernel.auth.tokens).
KEY_ACTIVATION_DELAY = timedelta(seconds=10)


class SsoService:
    """Application service: the use cases, with their collaborators injected."""

    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        hasher: PasswordHasher,
        codec: TokenCodec,
        throttle: LoginThrottle,
        *,
        clock: Clock = utc_now,
        new_id: IdGenerator = new_id,
        new_refresh_token: Callable[[], str] = new_refresh_token,
    ) -> None:
        self.uow_factory = uow_factory
        self.hasher = hasher
        self.codec = codec
        self.throttle = throttle
        self.clock = clock
        self.new_id = new_id
        self.new_refresh_token = new_refresh_token
        # Unknown usernames are checked against this, so they cost what a wrong password does.
        self._dummy_hash = hasher.hash(secrets.token_urlsafe(24))

    # -- sign-in and sessions ---------------------------------------------------------------

    def login(self, username: str, password: str) -> LoginResult:
        name = normalize_username(username)
        collector = ViolationCollector()
        if not name:
            collector.add("username", "is required")
        if not password:
            collector.add("password", "is required")
        collector.raise_if_any()
        now = self.clock()
        if self.throttle.is_locked(name, now):
            raise _locked()
        with self.uow_factory() as uow:
            account = uow.accounts.by_username(name) if USERNAME.fullmatch(name) else None
            if len(password) > MAX_PASSWORD:
                verified = False
            elif account is None:
                self.hasher.verify(self._dummy_hash, password)
                verified = False
            else:
                verified = self.hasher.verify(account.password_hash, password)
            if account is None or not verified:
                if self.throttle.record_failure(name, now):
                    raise _locked()
                raise _invalid_credentials()
            self.throttle.reset(name)
            if account.disabled:
                raise Unauthenticated("this account is disabled", reason="ACCOUNT_DISABLED")
            self._require_open_platform(uow, account)
            if self.hasher.needs_rehash(account.password_hash):
                account.password_hash = self.hasher.hash(password)
                uow.accounts.save(account, account.version)
            session = Session(self.new_id("ses_"), account.account_id, now, now + REFRESH_LIFETIME)
            uow.sessions.add(session)
            tokens = self._tokens(uow, account, session, now)
            uow.commit()
        return LoginResult(tokens, account)

    def refresh(self, refresh_token: str) -> TokenSet:
        if not refresh_token:
            raise InvalidArgument.of("refresh_token", "is required")
        digest = refresh_digest(refresh_token)
        now = self.clock()
        with self.uow_factory() as uow:
            record = uow.sessions.refresh_by_digest(digest)
            session = uow.sessions.get(record.session_id) if record is not None else None
            if record is None or session is None:
                raise Unauthenticated("unknown refresh token", reason="INVALID_REFRESH_TOKEN")
            if record.spent_at is not None or not uow.sessions.spend_refresh(digest, now):
                # A stolen token, or its thief's: end the session for everybody.
                if self._revoke(uow, session.account_id, [session], now, "refresh_token_reused"):
                    uow.commit()
                raise Unauthenticated(
                    "this refresh token was already used: the session is revoked",
                    reason="REFRESH_TOKEN_REUSED",
                )
            if session.revoked_at is not None:
                raise Unauthenticated("the session was revoked", reason="SESSION_REVOKED")
            if now >= session.expires_at:
                raise Unauthenticated("the session expired: sign in again",
                                      reason="SESSION_EXPIRED")
            account = uow.accounts.get(session.account_id)
            if account is None or account.disabled:
                raise Unauthenticated("this account is disabled", reason="ACCOUNT_DISABLED")
            self._require_open_platform(uow, account)
            tokens = self._tokens(uow, account, session, now)
            uow.commit()
        return tokens

    def logout(self, caller: Caller | None) -> str:
        caller = _authenticated(caller)
        if not caller.session_id:
            raise FailedPrecondition("the caller's token has no session", reason="NO_SESSION")
        now = self.clock()
        with self.uow_factory() as uow:
            session = uow.sessions.get(caller.session_id)
            if session is None or session.account_id != caller.account_id:
                raise NotFound("no such session", reason="SESSION_NOT_FOUND")
            if self._revoke(uow, session.account_id, [session], now, "logout"):
                uow.commit()
        return session.session_id

    def revoke_sessions(self, caller: Caller | None, account_id: str) -> int:
        """The account itself, or whoever may manage it."""
        caller = _authenticated(caller)
        now = self.clock()
        with self.uow_factory() as uow:
            account = self._require_account(uow, account_id)
            if caller.account_id != account.account_id:
                require_manage(caller, account.kind, account.jurisdiction)
            sessions = uow.sessions.unrevoked_of(account.account_id,
                                                 now - ACCESS_TOKEN_LIFETIME)
            revoked = self._revoke(uow, account.account_id, sessions, now, "revoked")
            uow.commit()
        return revoked

    def list_revocations(
        self, caller: Caller | None, cursor: str, page_size: int
    ) -> tuple[list[Revocation], str]:
        """Revocations after the cursor, oldest first. An empty cursor starts at the oldest
        revocation whose access tokens may still be alive."""
        _require_kind(caller, {AccountKind.SERVICE, AccountKind.OPS_ADMIN,
                               AccountKind.PLATFORM_CLIENT}, "listing revocations")
        size = paging.page_size(page_size, DEFAULT_REVOCATION_PAGE, MAX_REVOCATION_PAGE)
        if cursor:
            raw_time, raw_seq = decode_token(cursor, "cursor", 2)
            try:
                after = datetime.fromisoformat(str(raw_time))
                seq = int(str(raw_seq))
            except ValueError:
                raise InvalidArgument.of("cursor", "is not a token this service issued") from None
        else:
            after, seq = self.clock() - ACCESS_TOKEN_LIFETIME, 0
        with self.uow_factory() as uow:
            page = uow.revocations.after(after, seq, size)
        if page:
            after, seq = page[-1].revoked_at, page[-1].seq
        return page, encode_token([after.isoformat(), seq])

    def introspect(self, caller: Caller | None, token: str) -> IntrospectResult:
        _require_kind(caller, {AccountKind.SERVICE, AccountKind.OPS_ADMIN}, "introspection")
        if not token:
            raise InvalidArgument.of("token", "is required")
        now = self.clock()
        with self.uow_factory() as uow:
            keys = self._published(uow.keys.all(), now)
            try:
                claims = self.codec.verify(token, [key.public_jwk for key in keys])
            except InvalidToken:
                return INACTIVE
            expires = claims.get("exp")
            if (
                claims.get("iss") != ISSUER
                or not isinstance(expires, int)
                or expires <= now.timestamp()
            ):
                return INACTIVE
            session = uow.sessions.get(str(claims.get("sid", "")))
            account = uow.accounts.get(str(claims.get("sub", "")))
            if session is None or session.revoked_at is not None or account is None \
                    or account.disabled or session.account_id != account.account_id:
                return INACTIVE
        return IntrospectResult(
            active=True,
            account=account,
            session_id=session.session_id,
            audience=str(claims.get("aud", "")),
            expire_time=datetime.fromtimestamp(expires, UTC),
        )

    # -- signing keys -----------------------------------------------------------------------

    def jwks(self) -> str:
        """The public keys of the current key and of keys retired too recently for their
        tokens to have expired, as a JWK set (JSON)."""
        now = self.clock()
        with self.uow_factory() as uow:
            keys = self._published(uow.keys.all(), now)
        return json.dumps({"keys": [json.loads(key.public_jwk) for key in keys]},
                          sort_keys=True)

    def rotate_signing_key(self, caller: Caller | None) -> str:
        _require_kind(caller, {AccountKind.OPS_ADMIN}, "rotating the signing key")
        now = self.clock()
        with self.uow_factory() as uow:
            # The new key is published now and signs from KEY_ACTIVATION_DELAY on; until
            # then the old one keeps signing, so no service meets a kid it cannot fetch yet.
            for key in uow.keys.all():
                if key.retired_at is None or key.retired_at > now + KEY_ACTIVATION_DELAY:
                    key.retired_at = now + KEY_ACTIVATION_DELAY
                    uow.keys.save(key)
            key = self.codec.new_key(self._new_kid(now), now)
            uow.keys.add(key)
            uow.commit()
        return key.kid

    def ensure_signing_key(self) -> str:
        """Start-up: creates the first signing key if there is none; the current key id."""
        now = self.clock()
        with self.uow_factory() as uow:
            key = self._current_key(uow, now)
            uow.commit()
        return key.kid

    # -- token exchange ---------------------------------------------------------------------

    def exchange_token(self, caller: Caller | None, platform_id: str) -> TokenSet:
        caller = _authenticated(caller)
        if caller.audience != NATIONAL_AUDIENCE:
            raise PermissionDenied("only national access tokens can be exchanged",
                                   reason="TOKEN_NOT_EXCHANGEABLE")
        if not caller.session_id:
            raise FailedPrecondition("the caller's token has no session", reason="NO_SESSION")
        if not platform_id.strip():
            raise InvalidArgument.of("platform_id", "is required")
        now = self.clock()
        with self.uow_factory() as uow:
            platform = self._require_platform(uow, platform_id.strip())
            session = uow.sessions.get(caller.session_id)
            if session is None or session.revoked_at is not None \
                    or session.account_id != caller.account_id:
                raise Unauthenticated("the session was revoked", reason="SESSION_REVOKED")
            account = uow.accounts.get(caller.account_id)
            if account is None or account.disabled:
                raise Unauthenticated("this account is disabled", reason="ACCOUNT_DISABLED")
            # The stored account, not the token's claims, decides: it may have changed.
            check_exchange(account.kind, account.jurisdiction, platform)
            access = self._sign(uow, account, session.session_id, platform.audience, now)
            uow.commit()
        return TokenSet(access, ACCESS_SECONDS, "", session.session_id)

    # -- accounts ---------------------------------------------------------------------------

    def create_account(
        self, caller: Caller | None, request_id: str, data: AccountInput, password: str
    ) -> Account:
        """Administrators; regulators for operators, regulators and platform clients within
        their jurisdiction. Idempotent by request_id."""
        caller = _authenticated(caller)
        request_id = check_request_id(request_id)
        data = validate_account(data)
        check_password(password)
        assert data.kind is not None
        require_manage(caller, data.kind, data.jurisdiction)
        require_grantable(caller, data.roles)
        # The password is not part of the fingerprint: a retry need not resend it exactly.
        request_fingerprint = fingerprint("create_account", asdict(data))
        password_hash = self.hasher.hash(password)
        now = self.clock()
        with self.uow_factory() as uow:
            record = uow.requests.find(request_id)
            if record is not None:
                if record.operation != "create_account" \
                        or record.fingerprint != request_fingerprint:
                    raise FailedPrecondition(
                        "request_id was already used for a different request",
                        reason="REQUEST_ID_REUSED",
                    )
                return self._require_account(uow, record.result_id)
            if uow.accounts.by_username(data.username) is not None:
                raise AlreadyExists("this username is taken", reason="USERNAME_TAKEN",
                                    metadata={"field": "account.username"})
            account = Account(
                account_id=self.new_id("acct_"),
                username=data.username,
                display_name=data.display_name,
                kind=data.kind,
                password_hash=password_hash,
                created_at=now,
                updated_at=now,
                subject_id=data.subject_id,
                jurisdiction=data.jurisdiction,
                roles=data.roles,
                disabled=data.disabled,
            )
            uow.accounts.add(account)
            uow.requests.record(
                request_id, RequestRecord("create_account", request_fingerprint,
                                          account.account_id)
            )
            uow.publish(Event(SERVICE, "account_created", account_payload(account)))
            uow.commit()
        return account

    def ensure_admin(self, password: str, username: str = "admin") -> bool:
        """First start: creates the first OPS_ADMIN unless an account of that username
        exists. True if it created one."""
        name = normalize_username(username)
        if not USERNAME.fullmatch(name):
            raise InvalidArgument.of("username", "is not a valid username")
        check_password(password)
        password_hash = self.hasher.hash(password)
        now = self.clock()
        try:
            with self.uow_factory() as uow:
                if uow.accounts.by_username(name) is not None:
                    return False
                account = Account(self.new_id("acct_"), name, "Administrator",
                                  AccountKind.OPS_ADMIN, password_hash, now, now)
                uow.accounts.add(account)
                uow.publish(Event(SERVICE, "account_created", account_payload(account)))
                uow.commit()
        except AlreadyExists:  # another replica created it at the same moment
            return False
        return True

    def get_account(self, caller: Caller | None, account_id: str) -> Account:
        """The account itself, or whoever may manage it."""
        caller = _authenticated(caller)
        with self.uow_factory() as uow:
            account = self._require_account(uow, account_id)
        if caller.account_id != account.account_id:
            require_manage(caller, account.kind, account.jurisdiction)
        return account

    def list_accounts(
        self, caller: Caller | None, kind: AccountKind | None, page_size: int, page_token: str
    ) -> tuple[list[Account], str]:
        """The accounts the caller may manage, by username."""
        caller = _require_kind(caller, {AccountKind.OPS_ADMIN, AccountKind.REGULATOR},
                               "listing accounts")
        size = paging.page_size(page_size, DEFAULT_ACCOUNT_PAGE, MAX_ACCOUNT_PAGE)
        if caller.is_admin:
            kinds = frozenset({kind}) if kind is not None else frozenset()
            prefix = ""
        else:
            kinds = REGULATOR_MANAGEABLE & {kind} if kind is not None else REGULATOR_MANAGEABLE
            prefix = caller.jurisdiction
            if not kinds:
                return [], ""
        filters = fingerprint(sorted(kinds), prefix)[:16]
        after = ""
        if page_token:
            after_raw, filters_raw = decode_token(page_token, "page_token", 2)
            if filters_raw != filters:
                raise InvalidArgument.of(
                    "page_token", "was issued for different filters; start from the first page"
                )
            after = str(after_raw)
        with self.uow_factory() as uow:
            found = uow.accounts.find(AccountQuery(kinds, prefix, after, size + 1))
        page, more = found[:size], len(found) > size
        return page, encode_token([page[-1].username, filters]) if more else ""

    def update_account(
        self,
        caller: Caller | None,
        account_id: str,
        data: AccountInput,
        fields: Sequence[str],
        password: str = "",
        expected_version: int = 0,
    ) -> Account:
        """Managers change display_name, roles, disabled and password; an account itself its
        display_name and password. Disabling revokes every session; a password change every
        session but the caller's own."""
        caller = _authenticated(caller)
        changed = set(fields)
        if not changed:
            raise InvalidArgument.of("update_mask", "names no field to change")
        unknown = sorted(changed - UPDATABLE_ACCOUNT_FIELDS)
        if unknown:
            raise InvalidArgument.of(
                "update_mask",
                f"cannot change {', '.join(unknown)}; changeable: "
                + ", ".join(sorted(UPDATABLE_ACCOUNT_FIELDS)),
            )
        display_name = data.display_name.strip()
        if "display_name" in changed and len(display_name) > MAX_DISPLAY_NAME:
            raise InvalidArgument.of("account.display_name",
                                     f"must be at most {MAX_DISPLAY_NAME} characters")
        password_hash = ""
        if "password" in changed:
            check_password(password)
            password_hash = self.hasher.hash(password)
        now = self.clock()
        with self.uow_factory() as uow:
            account = self._require_account(uow, account_id)
            is_self = caller.account_id == account.account_id
            if is_self and not changed <= SELF_UPDATABLE_FIELDS:
                # Not even a regulator who manages its own jurisdiction grants itself roles.
                raise PermissionDenied(
                    "an account changes only its own display_name and password",
                    reason="SELF_CHANGE_NOT_ALLOWED",
                )
            if not is_self:
                require_manage(caller, account.kind, account.jurisdiction)
            if expected_version and account.version != expected_version:
                raise ConcurrencyConflict(
                    f"version {expected_version} is stale; the account is at {account.version}",
                    metadata={"current_version": str(account.version)},
                )
            was_disabled = account.disabled
            if "roles" in changed:
                require_grantable(caller, data.roles)
                account.roles = validate_roles(account.kind, data.roles)
            if "display_name" in changed:
                account.display_name = display_name
            if "disabled" in changed:
                account.disabled = data.disabled
            if password_hash:
                account.password_hash = password_hash
            version_read = account.version
            account.version += 1
            account.updated_at = now
            uow.accounts.save(account, version_read)
            live = uow.sessions.unrevoked_of(account.account_id, now - ACCESS_TOKEN_LIFETIME)
            if account.disabled and not was_disabled:
                self._revoke(uow, account.account_id, live, now, "account_disabled")
            elif password_hash:
                keep = caller.session_id if is_self else ""
                others = [s for s in live if s.session_id != keep]
                self._revoke(uow, account.account_id, others, now, "password_changed")
            payload = account_payload(account) | {"changed_fields": sorted(changed)}
            uow.publish(Event(SERVICE, "account_updated", payload))
            uow.commit()
        return account

    # -- event handlers ---------------------------------------------------------------------

    def bind_registering_operator(self, event: Event, uow: UnitOfWork) -> None:
        """Worker, on registry.subject_registered: a subject operator whose account was not
        yet bound to a subject is bound to the subject it just registered (its next token
        carries the subject id, and with it the right to update that subject)."""
        account_id = str(event.payload.get("registered_by_operator") or "")
        subject_id = str(event.payload.get("subject_id") or "")
        account = uow.accounts.get(account_id) if account_id and subject_id else None
        if account is None or account.kind is not AccountKind.SUBJECT_OPERATOR \
                or account.subject_id:
            return
        version_read = account.version
        account.subject_id = subject_id
        account.version += 1
        account.updated_at = self.clock()
        uow.accounts.save(account, version_read)
        uow.publish(Event(SERVICE, "account_updated",
                          account_payload(account) | {"changed_fields": ["subject_id"]}))

    # -- platforms --------------------------------------------------------------------------

    def register_platform(self, caller: Caller | None, data: PlatformInput) -> Platform:
        _require_kind(caller, {AccountKind.OPS_ADMIN}, "registering platforms")
        data = validate_platform(data)
        now = self.clock()
        with self.uow_factory() as uow:
            if uow.platforms.get(data.platform_id) is not None:
                raise AlreadyExists(f"platform {data.platform_id} is already registered",
                                    reason="PLATFORM_ALREADY_REGISTERED")
            platform = Platform(data.platform_id, data.province, data.name, data.url, now, now)
            uow.platforms.add(platform)
            uow.publish(Event(SERVICE, "platform_registered", platform_payload(platform)))
            uow.commit()
        return platform

    def update_platform(
        self,
        caller: Caller | None,
        platform_id: str,
        data: PlatformInput,
        fields: Sequence[str],
        expected_version: int = 0,
    ) -> Platform:
        _require_kind(caller, {AccountKind.OPS_ADMIN}, "changing platforms")
        changed = set(fields)
        if not changed:
            raise InvalidArgument.of("update_mask", "names no field to change")
        unknown = sorted(changed - UPDATABLE_PLATFORM_FIELDS)
        if unknown:
            raise InvalidArgument.of(
                "update_mask",
                f"cannot change {', '.join(unknown)}; changeable: "
                + ", ".join(sorted(UPDATABLE_PLATFORM_FIELDS)),
            )
        now = self.clock()
        with self.uow_factory() as uow:
            platform = self._require_platform(uow, platform_id)
            if expected_version and platform.version != expected_version:
                raise ConcurrencyConflict(
                    f"version {expected_version} is stale; the platform is at "
                    f"{platform.version}",
                    metadata={"current_version": str(platform.version)},
                )
            previous, version_read = platform.stage, platform.version
            platform.update(data, changed, now)
            uow.platforms.save(platform, version_read)
            if previous in OPEN_STAGES and not _open_platform_in(uow, platform.province):
                # Bridge access ends with the platform's: sign its province's clients out.
                self._revoke_platform_clients(uow, platform.province, now)
            payload = platform_payload(platform) | {
                "previous_stage": previous.value,
                "changed_fields": sorted(changed),
            }
            uow.publish(Event(SERVICE, "platform_updated", payload))
            uow.commit()
        return platform

    def list_platforms(self, page_size: int, page_token: str) -> tuple[list[Platform], str]:
        """The public directory (anonymous), by province."""
        size = paging.page_size(page_size, DEFAULT_PLATFORM_PAGE, MAX_PLATFORM_PAGE)
        after = None
        if page_token:
            province, platform_id = decode_token(page_token, "page_token", 2)
            after = (str(province), str(platform_id))
        with self.uow_factory() as uow:
            found = uow.platforms.page(after, size + 1)
        page, more = found[:size], len(found) > size
        token = encode_token([page[-1].province, page[-1].platform_id]) if more else ""
        return page, token

    # -- helpers ----------------------------------------------------------------------------

    def _tokens(self, uow: UnitOfWork, account: Account, session: Session, now: datetime
                ) -> TokenSet:
        refresh = self.new_refresh_token()
        uow.sessions.add_refresh(RefreshToken(refresh_digest(refresh), session.session_id, now))
        access = self._sign(uow, account, session.session_id, NATIONAL_AUDIENCE, now)
        return TokenSet(access, ACCESS_SECONDS, refresh, session.session_id)

    def _sign(self, uow: UnitOfWork, account: Account, session_id: str, audience: str,
              now: datetime) -> str:
        claims = AccessClaims.for_account(account, session_id=session_id, audience=audience,
                                          now=now, jti=secrets.token_urlsafe(16))
        return self.codec.sign(claims.as_dict(), self._current_key(uow, now))

    def _current_key(self, uow: UnitOfWork, now: datetime) -> SigningKey:
        """The newest key that is still signing and was published long enough ago for every
        service to have fetched it; the newest live key when none is that old (start-up)."""
        live = [key for key in uow.keys.all() if key.retired_at is None or key.retired_at > now]
        seasoned = [key for key in live if key.created_at <= now - KEY_ACTIVATION_DELAY]
        if seasoned or live:
            return max(seasoned or live, key=lambda key: (key.created_at, key.kid))
        key = self.codec.new_key(self._new_kid(now), now)
        uow.keys.add(key)
        return key

    @staticmethod
    def _published(keys: Sequence[SigningKey], now: datetime) -> list[SigningKey]:
        oldest = now - KEY_PUBLICATION_GRACE
        return sorted(
            (k for k in keys if k.retired_at is None or k.retired_at >= oldest),
            key=lambda k: (k.created_at, k.kid),
            reverse=True,
        )

    @staticmethod
    def _new_kid(now: datetime) -> str:
        return f"sso-{now:%Y%m%d}-{secrets.token_hex(4)}"

    def _revoke(self, uow: UnitOfWork, account_id: str, sessions: Sequence[Session],
                now: datetime, reason: str) -> int:
        revoked = []
        for session in sessions:
            if session.revoke(now):
                uow.sessions.save(session)
                uow.revocations.add(session.session_id, now)
                revoked.append(session.session_id)
        if revoked:
            uow.publish(Event(SERVICE, "sessions_revoked", {
                "account_id": account_id, "session_ids": revoked, "reason": reason,
            }))
        return len(revoked)

    @staticmethod
    def _require_open_platform(uow: UnitOfWork, account: Account) -> None:
        """A platform client (a provincial platform or its bridge) signs in only while its
        province's platform is being tested or is connected."""
        if account.kind is AccountKind.PLATFORM_CLIENT and \
                not _open_platform_in(uow, account.jurisdiction):
            raise FailedPrecondition(
                f"the platform of province {account.jurisdiction} is not connected",
                reason="PLATFORM_NOT_CONNECTED",
            )

    def _revoke_platform_clients(self, uow: UnitOfWork, province: str, now: datetime) -> None:
        after = ""
        while True:
            clients = uow.accounts.find(AccountQuery(
                kinds=frozenset({AccountKind.PLATFORM_CLIENT}), jurisdiction_prefix=province,
                after_username=after, limit=500))
            for client in clients:
                if client.jurisdiction == province:
                    sessions = uow.sessions.unrevoked_of(client.account_id, now)
                    self._revoke(uow, client.account_id, sessions, now, "platform_closed")
            if len(clients) < 500:
                return
            after = clients[-1].username

    @staticmethod
    def _require_account(uow: UnitOfWork, account_id: str) -> Account:
        account = uow.accounts.get(account_id.strip()) if account_id.strip() else None
        if account is None:
            raise NotFound(f"account {account_id} does not exist", reason="ACCOUNT_NOT_FOUND")
        return account

    @staticmethod
    def _require_platform(uow: UnitOfWork, platform_id: str) -> Platform:
        platform = uow.platforms.get(platform_id.strip()) if platform_id.strip() else None
        if platform is None:
            raise NotFound(f"platform {platform_id} does not exist",
                           reason="PLATFORM_NOT_FOUND")
        return platform
