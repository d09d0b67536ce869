"""The sso domain: accounts and their scope (who may manage whom, who may enter which
provincial platform), sessions with their refresh-token family, revocations, and the
onboarding state machine of provincial platforms. No framework imports here."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from agritrace_kernel.errors import (
    FailedPrecondition,
    PermissionDenied,
    ViolationCollector,
)

ISSUER = "agritrace-sso"
NATIONAL_AUDIENCE = "agritrace"
PLATFORM_AUDIENCE_PREFIX = "platform:"
ACCESS_TOKEN_LIFETIME = timedelta(seconds=900)
REFRESH_LIFETIME = timedelta(hours=12)
# Retired signing keys stay published this long, so tokens they signed keep verifying.
KEY_PUBLICATION_GRACE = ACCESS_TOKEN_LIFETIME + timedelta(hours=1)

MIN_PASSWORD = 12
MAX_PASSWORD = 1024
MAX_DISPLAY_NAME = 100
MAX_PLATFORM_NAME = 200
MAX_URL = 500

USERNAME = re.compile(r"[a-z0-9._-]{3,64}")
SUBJECT_ID = re.compile(r"[A-Z0-9]{1,16}")
DIVISION = re.compile(r"\d{2}|\d{4}|\d{6}")
PLATFORM_ID = re.compile(r"[a-z0-9][a-z0-9-]{1,39}")
# The 34 provincial-level divisions (GB/T 2260), first two digits of every division code.
PROVINCES = frozenset({
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
    "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64",
    "65", "71", "81", "82",
})


class AccountKind(StrEnum):
    SUBJECT_OPERATOR = "SUBJECT_OPERATOR"
    REGULATOR = "REGULATOR"
    PLATFORM_CLIENT = "PLATFORM_CLIENT"
    OPS_ADMIN = "OPS_ADMIN"
    SERVICE = "SERVICE"


class RegulatorRole(StrEnum):
    REVIEWER = "REVIEWER"
    INSPECTOR = "INSPECTOR"
    AUDITOR = "AUDITOR"


# Kinds a regulator may manage (within its jurisdiction); never administrators or services.
REGULATOR_MANAGEABLE = frozenset(
    {AccountKind.SUBJECT_OPERATOR, AccountKind.REGULATOR, AccountKind.PLATFORM_CLIENT}
)
UPDATABLE_ACCOUNT_FIELDS = frozenset({"display_name", "roles", "disabled", "password"})
SELF_UPDATABLE_FIELDS = frozenset({"display_name", "password"})


@dataclass(frozen=True)
class Caller:
    """Who calls a use case, as the authentication layer established it."""

    account_id: str
    kind: AccountKind
    jurisdiction: str = ""
    subject_id: str = ""
    roles: frozenset[str] = frozenset()
    session_id: str = ""
    audience: str = NATIONAL_AUDIENCE

    @property
    def is_admin(self) -> bool:
        return self.kind is AccountKind.OPS_ADMIN


@dataclass(frozen=True)
class AccountInput:
    """An account as a request describes it (validated by `validate_account`)."""

    username: str = ""
    display_name: str = ""
    kind: AccountKind | None = None
    subject_id: str = ""
    jurisdiction: str = ""
    roles: tuple[RegulatorRole, ...] = ()
    disabled: bool = False


@dataclass
class Account:
    account_id: str
    username: str
    display_name: str
    kind: AccountKind
    password_hash: str
    created_at: datetime
    updated_at: datetime
    subject_id: str = ""
    jurisdiction: str = ""
    roles: tuple[RegulatorRole, ...] = ()
    disabled: bool = False
    version: int = 1

    @property
    def role_names(self) -> list[str]:
        return [role.value for role in self.roles]


def normalize_username(username: str) -> str:
    return username.strip().lower()


def check_password(password: str, field_path: str = "password") -> None:
    collector = ViolationCollector()
    if len(password) < MIN_PASSWORD:
        collector.add(field_path, f"must be at least {MIN_PASSWORD} characters")
    elif len(password) > MAX_PASSWORD:
        collector.add(field_path, f"must be at most {MAX_PASSWORD} characters")
    collector.raise_if_any()


def _check_binding(
    collector: ViolationCollector,
    kind: AccountKind,
    subject_id: str,
    jurisdiction: str,
    roles: Iterable[RegulatorRole],
) -> None:
    """What each kind is bound to: operators to a county and a subject (left empty for a
    producer who is yet to register: the registration binds it), regulators to a
    jurisdiction with roles, platform clients to a province, the others to nothing."""
    roles = tuple(roles)
    if kind is AccountKind.SUBJECT_OPERATOR:
        if subject_id and not SUBJECT_ID.fullmatch(subject_id):
            collector.add("subject_id", "must be a registry subject id (upper-case letters "
                          "and digits), or empty until the operator registers its subject")
        if not (re.fullmatch(r"\d{6}", jurisdiction) and jurisdiction[:2] in PROVINCES):
            collector.add("jurisdiction", "must be the 6-digit county of the operated subject")
    elif subject_id:
        collector.add("subject_id", "is only for subject operators")
    if kind is AccountKind.REGULATOR:
        if jurisdiction and not (DIVISION.fullmatch(jurisdiction)
                                 and jurisdiction[:2] in PROVINCES):
            collector.add("jurisdiction",
                          'must be "" (national) or a 2-, 4- or 6-digit division code')
        if not roles:
            collector.add("roles", "a regulator needs at least one role")
        if len(set(roles)) != len(roles):
            collector.add("roles", "must not repeat a role")
    elif roles:
        collector.add("roles", "are only for regulators")
    if kind is AccountKind.PLATFORM_CLIENT and jurisdiction not in PROVINCES:
        collector.add("jurisdiction", "must be the 2-digit province of the platform")
    if kind in (AccountKind.OPS_ADMIN, AccountKind.SERVICE) and jurisdiction:
        collector.add("jurisdiction", f"must be empty for {kind.value} accounts")


def validate_account(data: AccountInput, prefix: str = "account") -> AccountInput:
    """Every violation at once, with field paths such as "account.username"."""
    collector = ViolationCollector(prefix)
    username = normalize_username(data.username)
    if not USERNAME.fullmatch(username):
        collector.add("username", "must be 3-64 characters of a-z, 0-9, '.', '_' and '-'")
    display_name = data.display_name.strip()
    if len(display_name) > MAX_DISPLAY_NAME:
        collector.add("display_name", f"must be at most {MAX_DISPLAY_NAME} characters")
    if data.kind is None:
        collector.add("kind", "is required")
    else:
        _check_binding(collector, data.kind, data.subject_id.strip(),
                       data.jurisdiction.strip(), data.roles)
    collector.raise_if_any()
    return AccountInput(
        username=username,
        display_name=display_name,
        kind=data.kind,
        subject_id=data.subject_id.strip(),
        jurisdiction=data.jurisdiction.strip(),
        roles=tuple(sorted(set(data.roles), key=list(RegulatorRole).index)),
        disabled=data.disabled,
    )


def validate_roles(kind: AccountKind, roles: Iterable[RegulatorRole]) -> tuple[RegulatorRole, ...]:
    collector = ViolationCollector("account")
    roles = tuple(roles)
    if kind is AccountKind.REGULATOR:
        if not roles:
            collector.add("roles", "a regulator needs at least one role")
    elif roles:
        collector.add("roles", "are only for regulators")
    collector.raise_if_any()
    return tuple(sorted(set(roles), key=list(RegulatorRole).index))


# -- scope -----------------------------------------------------------------------------------


def within(inner: str, outer: str) -> bool:
    """Division `inner` lies within `outer` ("" is the nation and contains everything)."""
    return inner.startswith(outer)


def may_manage(caller: Caller, kind: AccountKind, jurisdiction: str) -> bool:
    """Ops admins manage anyone; a regulator manages operators, regulators and platform
    clients whose jurisdiction (an operator's: its subject's county) lies within its own;
    nobody else manages anybody."""
    if caller.kind is AccountKind.OPS_ADMIN:
        return True
    if caller.kind is AccountKind.REGULATOR:
        return kind in REGULATOR_MANAGEABLE and within(jurisdiction, caller.jurisdiction)
    return False


def require_manage(caller: Caller, kind: AccountKind, jurisdiction: str) -> None:
    if not may_manage(caller, kind, jurisdiction):
        raise PermissionDenied(
            "you may not manage this account: it lies outside your jurisdiction or its kind "
            "is reserved to administrators",
            reason="OUTSIDE_JURISDICTION" if caller.kind is AccountKind.REGULATOR
            else "NOT_AN_ACCOUNT_MANAGER",
        )


def require_grantable(caller: Caller, roles: Iterable[RegulatorRole]) -> None:
    """A regulator grants only roles it holds itself (an inspector cannot make reviewers);
    administrators grant any."""
    if caller.kind is AccountKind.OPS_ADMIN:
        return
    missing = sorted(role.value for role in roles if role.value not in caller.roles)
    if missing:
        raise PermissionDenied(
            f"you may not grant roles you do not hold: {', '.join(missing)}",
            reason="ROLE_NOT_HELD",
        )


# -- sessions --------------------------------------------------------------------------------


@dataclass
class Session:
    """One sign-in. Its refresh tokens form a family: each refresh spends the presented token
    and issues the next; a spent token presented again revokes the session."""

    session_id: str
    account_id: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at

    def revoke(self, now: datetime) -> bool:
        """True if this call revoked it (False: it already was)."""
        if self.revoked_at is not None:
            return False
        self.revoked_at = now
        return True


@dataclass
class RefreshToken:
    """A refresh token of a session, known only by its SHA-256 digest."""

    digest: str
    session_id: str
    issued_at: datetime
    spent_at: datetime | None = None


@dataclass(frozen=True)
class Revocation:
    """A revoked session; `seq` orders revocations of the same instant (the cursor)."""

    session_id: str
    revoked_at: datetime
    seq: int = 0


# -- platforms -------------------------------------------------------------------------------


class OnboardingStage(StrEnum):
    APPLIED = "APPLIED"
    TESTING = "TESTING"
    CONNECTED = "CONNECTED"
    SUSPENDED = "SUSPENDED"


STAGE_MOVES: frozenset[tuple[OnboardingStage, OnboardingStage]] = frozenset(
    {
        (OnboardingStage.APPLIED, OnboardingStage.TESTING),
        (OnboardingStage.TESTING, OnboardingStage.CONNECTED),
        (OnboardingStage.TESTING, OnboardingStage.SUSPENDED),
        (OnboardingStage.CONNECTED, OnboardingStage.SUSPENDED),
        (OnboardingStage.SUSPENDED, OnboardingStage.CONNECTED),
        (OnboardingStage.SUSPENDED, OnboardingStage.TESTING),
    }
)
UPDATABLE_PLATFORM_FIELDS = frozenset({"name", "url", "stage"})


@dataclass(frozen=True)
class PlatformInput:
    platform_id: str = ""
    province: str = ""
    name: str = ""
    url: str = ""
    stage: OnboardingStage | None = None


def _check_platform_fields(collector: ViolationCollector, name: str, url: str) -> None:
    if not name:
        collector.add("name", "is required")
    elif len(name) > MAX_PLATFORM_NAME:
        collector.add("name", f"must be at most {MAX_PLATFORM_NAME} characters")
    if not re.fullmatch(r"https://[^\s/?#]+[^\s]*", url) or len(url) > MAX_URL:
        collector.add("url", "must be an https:// URL of at most 500 characters")


def validate_platform(data: PlatformInput) -> PlatformInput:
    collector = ViolationCollector("platform")
    platform_id = data.platform_id.strip()
    if not PLATFORM_ID.fullmatch(platform_id):
        collector.add("platform_id", "must be 2-40 characters of a-z, 0-9 and '-'")
    if data.province not in PROVINCES:
        collector.add("province", "must be a 2-digit province code")
    _check_platform_fields(collector, data.name.strip(), data.url.strip())
    collector.raise_if_any()
    return PlatformInput(platform_id, data.province, data.name.strip(), data.url.strip())


@dataclass
class Platform:
    platform_id: str
    province: str
    name: str
    url: str
    created_at: datetime
    updated_at: datetime
    stage: OnboardingStage = OnboardingStage.APPLIED
    version: int = 1

    @property
    def audience(self) -> str:
        return PLATFORM_AUDIENCE_PREFIX + self.platform_id

    def update(self, data: PlatformInput, fields: Iterable[str], now: datetime) -> None:
        fields = set(fields)
        collector = ViolationCollector("platform")
        name = data.name.strip() if "name" in fields else self.name
        url = data.url.strip() if "url" in fields else self.url
        _check_platform_fields(collector, name, url)
        if "stage" in fields and data.stage is None:
            collector.add("stage", "is required when update_mask names it")
        collector.raise_if_any()
        if "stage" in fields and data.stage is not None and data.stage is not self.stage:
            self.move_to(data.stage)
        self.name, self.url = name, url
        self.version += 1
        self.updated_at = now

    def move_to(self, stage: OnboardingStage) -> None:
        if (self.stage, stage) not in STAGE_MOVES:
            allowed = sorted(to.value for frm, to in STAGE_MOVES if frm is self.stage)
            raise FailedPrecondition(
                f"a platform cannot move from {self.stage.value} to {stage.value}; "
                f"allowed: {', '.join(allowed) or 'none'}",
                reason="ILLEGAL_STAGE_TRANSITION",
                metadata={"from": self.stage.value, "to": stage.value},
            )
        self.stage = stage


def may_enter_province(caller_kind: AccountKind, jurisdiction: str, province: str) -> bool:
    """Whose scope covers a province: its operators (their county lies in it), national
    regulators and regulators of the province or below, administrators, and the province's
    own platform clients. Service accounts never act for users on platforms."""
    if caller_kind is AccountKind.OPS_ADMIN:
        return True
    if caller_kind is AccountKind.SUBJECT_OPERATOR:
        return jurisdiction[:2] == province
    if caller_kind is AccountKind.REGULATOR:
        return jurisdiction == "" or jurisdiction[:2] == province
    if caller_kind is AccountKind.PLATFORM_CLIENT:
        return jurisdiction == province
    return False


def check_exchange(caller_kind: AccountKind, jurisdiction: str, platform: Platform) -> None:
    """Raises unless an account of this kind and jurisdiction may have a token for the
    platform now: CONNECTED platforms for anyone in scope, TESTING ones for admins only."""
    if platform.stage is OnboardingStage.TESTING:
        if caller_kind is not AccountKind.OPS_ADMIN:
            raise PermissionDenied(
                f"platform {platform.platform_id} is in testing: only administrators may "
                "enter it",
                reason="PLATFORM_IN_TESTING",
                metadata={"platform_id": platform.platform_id, "stage": platform.stage.value},
            )
    elif platform.stage is not OnboardingStage.CONNECTED:
        raise FailedPrecondition(
            f"platform {platform.platform_id} is not connected (stage {platform.stage.value})",
            reason="PLATFORM_NOT_CONNECTED",
            metadata={"platform_id": platform.platform_id, "stage": platform.stage.value},
        )
    if not may_enter_province(caller_kind, jurisdiction, platform.province):
        raise PermissionDenied(
            f"your scope does not cover province {platform.province} of platform "
            f"{platform.platform_id}",
            reason="OUTSIDE_PLATFORM_PROVINCE",
            metadata={"platform_id": platform.platform_id, "province": platform.province},
        )


@dataclass(frozen=True)
class AccessClaims:
    """The claims of an access token, exactly."""

    sub: str
    aud: str
    iat: int
    exp: int
    jti: str
    sid: str
    kind: str
    username: str
    subject_id: str
    jurisdiction: str
    roles: list[str] = field(default_factory=list)
    iss: str = ISSUER

    @classmethod
    def for_account(
        cls, account: Account, *, session_id: str, audience: str, now: datetime, jti: str
    ) -> AccessClaims:
        issued = int(now.timestamp())
        return cls(
            sub=account.account_id,
            aud=audience,
            iat=issued,
            exp=issued + int(ACCESS_TOKEN_LIFETIME.total_seconds()),
            jti=jti,
            sid=session_id,
            kind=account.kind.value,
            username=account.username,
            subject_id=account.subject_id if account.kind is AccountKind.SUBJECT_OPERATOR
            else "",
            jurisdiction=account.jurisdiction,
            roles=account.role_names,
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "iss": self.iss,
            "sub": self.sub,
            "aud": self.aud,
            "iat": self.iat,
            "exp": self.exp,
            "jti": self.jti,
            "sid": self.sid,
            "kind": self.kind,
            "username": self.username,
            "subject_id": self.subject_id,
            "jurisdiction": self.jurisdiction,
            "roles": list(self.roles),
        }
