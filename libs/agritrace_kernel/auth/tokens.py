"""Access tokens -> principals: signature (EdDSA, keys from the sso JWK set), issuer,
audience, lifetime and claims; plus the caches of public keys and revoked sessions. Free of
grpc: the sources of keys and revocations are protocols (see `sso_client` for the gRPC ones).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from joserfc import jwt
from joserfc.errors import (
    ExpiredTokenError,
    InvalidKeyIdError,
    JoseError,
    UnsupportedAlgorithmError,
)
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import GuestProtocol, Key, KeySet
from joserfc.jws import JWSRegistry

from agritrace_kernel.auth.principal import Principal, PrincipalKind, Role
from agritrace_kernel.errors import Unauthenticated

log = logging.getLogger(__name__)

ISSUER = "agritrace-sso"
NATIONAL_AUDIENCE = "agritrace"
PLATFORM_AUDIENCE_PREFIX = "platform:"
ALGORITHM = "EdDSA"
ACCESS_TOKEN_LIFETIME = timedelta(minutes=15)
LEEWAY_SECONDS = 30

TOKEN_EXPIRED = "TOKEN_EXPIRED"
TOKEN_INVALID = "TOKEN_INVALID"
TOKEN_WRONG_AUDIENCE = "TOKEN_WRONG_AUDIENCE"
TOKEN_REVOKED = "TOKEN_REVOKED"
TOKEN_MISSING = "TOKEN_MISSING"

_KINDS = [kind.value for kind in PrincipalKind]
_ROLES = frozenset(role.value for role in Role)
_JURISDICTION = re.compile(r"(\d{2}){0,3}")


class KeysUnavailable(Exception):
    """No key set could be loaded from sso yet: tokens cannot be verified at all (the caller
    is not at fault; the interceptor answers UNAVAILABLE)."""


class KeySetSource(Protocol):
    """Where public keys come from: sso GetJwks."""

    def fetch_jwks(self) -> str:
        """The JWK set as JSON ({"keys": [...]})."""
        ...


class RevocationSource(Protocol):
    """Where revoked sessions come from: sso ListRevocations."""

    def revocations_since(self, cursor: str) -> tuple[list[tuple[str, datetime]], str]:
        """(session id, revoke time) pairs after `cursor` ("" = all still relevant), oldest
        first, and the cursor to pass next time."""
        ...


class KeySetCache:
    """The current public keys of sso. Refreshed every `max_age_seconds`, and when a token
    names an unknown kid (a rotation) - but at most once per `min_refresh_seconds`, so tokens
    with made-up kids cannot hammer sso. Thread-safe; a failed refresh keeps the old keys."""

    def __init__(
        self,
        source: KeySetSource,
        *,
        max_age_seconds: float = 300.0,
        min_refresh_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._max_age = max_age_seconds
        self._min_refresh = min_refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._key_set: KeySet | None = None
        self._by_kid: dict[str, Key] = {}
        self._loaded_at = float("-inf")
        self._attempted_at = float("-inf")
        self.fetches = 0  # how many times sso was asked (observability, tests)

    @property
    def key_set(self) -> KeySet | None:
        return self._key_set

    def key_for(self, kid: str) -> Key | None:
        """The key with this kid, refreshing first if the keys are old or the kid unknown
        (within the throttle). None if sso does not know it either."""
        now = self._clock()
        if now - self._loaded_at >= self._max_age:
            self._refresh(throttled=self._key_set is not None)
        key = self._by_kid.get(kid)
        if key is None:
            self._refresh(throttled=True)
            key = self._by_kid.get(kid)
        if key is None and self._key_set is None:
            raise KeysUnavailable("no public keys from sso yet")
        return key

    def refresh(self) -> None:
        """Loads the keys now, regardless of the throttle (start-up, tests)."""
        self._refresh(throttled=False)

    def _refresh(self, *, throttled: bool) -> None:
        with self._lock:
            now = self._clock()
            if throttled and now - self._attempted_at < self._min_refresh:
                return
            self._attempted_at = now
            self.fetches += 1
            try:
                key_set = KeySet.import_key_set(json.loads(self._source.fetch_jwks()))
            except Exception:
                log.exception("cannot load the sso key set; keeping the previous one")
                return
            self._key_set = key_set
            self._by_kid = {key.kid: key for key in key_set if key.kid}
            self._loaded_at = now


class RevocationCache:
    """Revoked session ids, polled from sso every `poll_seconds` by a daemon thread, so a
    revocation takes effect on every service within seconds. An entry is forgotten once every
    access token of its session has expired (`retain` after its revocation). Thread-safe."""

    def __init__(
        self,
        source: RevocationSource,
        *,
        poll_seconds: float = 2.0,
        retain: timedelta = ACCESS_TOKEN_LIFETIME + timedelta(seconds=LEEWAY_SECONDS),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_pages: int = 100,
    ) -> None:
        self._source = source
        self._poll_seconds = poll_seconds
        self._retain = retain
        self._now = now
        self._max_pages = max_pages
        self._lock = threading.Lock()
        self._revoked: dict[str, datetime] = {}
        self._cursor = ""
        self._last_success: datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def is_revoked(self, session_id: str) -> bool:
        with self._lock:
            revoked_at = self._revoked.get(session_id)
            if revoked_at is None:
                return False
            if revoked_at + self._retain < self._now():
                del self._revoked[session_id]
                return False
            return True

    def add(self, revocations: Iterable[tuple[str, datetime]]) -> None:
        with self._lock:
            for session_id, revoke_time in revocations:
                self._revoked[session_id] = _aware(revoke_time)

    @property
    def last_success(self) -> datetime | None:
        """When sso last answered; a readiness check may refuse traffic if this is stale."""
        return self._last_success

    def poll_once(self) -> int:
        """Fetches every revocation since the last poll; returns how many arrived."""
        received = 0
        for _ in range(self._max_pages):
            revocations, next_cursor = self._source.revocations_since(self._cursor)
            self.add(revocations)
            received += len(revocations)
            advanced = next_cursor != self._cursor
            if next_cursor:
                self._cursor = next_cursor
            if not revocations or not advanced:
                break
        self._forget_expired()
        self._last_success = self._now()
        return received

    def _forget_expired(self) -> None:
        horizon = self._now() - self._retain
        with self._lock:
            for session_id in [s for s, at in self._revoked.items() if at < horizon]:
                del self._revoked[session_id]

    def __len__(self) -> int:
        with self._lock:
            return len(self._revoked)

    def start(self) -> None:
        """Polls once now (logging a failure) and then every `poll_seconds` in a daemon
        thread."""
        if self._thread is not None:
            return

        def loop() -> None:
            while True:
                try:
                    self.poll_once()
                except Exception:
                    log.exception("cannot poll sso for revoked sessions")
                if self._stop.wait(self._poll_seconds):
                    return

        self._thread = threading.Thread(target=loop, name="revocation-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class _EdDSAOnly(JWSRegistry):
    """Accepts exactly the algorithm sso signs with - never "none", HMAC or RSA - and
    without joserfc's warning that RFC 9864 deprecates the name "EdDSA" (sso uses it)."""

    def get_alg(self, name: str) -> JWSAlgModel:
        if name != ALGORITHM or name not in self.algorithms:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self.algorithms[name]


_REGISTRY = _EdDSAOnly(algorithms=[ALGORITHM])


class TokenVerifier:
    """Verifies an access token and returns its principal, or raises Unauthenticated with
    reason TOKEN_EXPIRED, TOKEN_INVALID or TOKEN_WRONG_AUDIENCE. Revocation is checked
    separately (`check_not_revoked`, or the interceptor).

    A client sends the same token with every call for its whole lifetime, and verifying it
    (decoding, an Ed25519 signature, the claims) costs far more than the call it guards; so a
    verified token's principal is remembered until the token expires (`cache_size` tokens at
    most). A key removed from the key set stops new tokens at once; tokens it already
    verified keep being accepted only while their key is in the set (checked on every call,
    a dictionary look-up), until they expire, unless their session is revoked."""

    def __init__(
        self,
        keys: KeySetCache,
        *,
        audience: str = NATIONAL_AUDIENCE,
        issuer: str = ISSUER,
        leeway_seconds: int = LEEWAY_SECONDS,
        now: Callable[[], float] = time.time,
        cache_size: int = 10_000,
    ) -> None:
        self._keys = keys
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway_seconds
        self._now = now
        self._cache_size = cache_size
        # (token, audience) -> (principal, expiry, kid); insertion order ages entries out.
        self._verified: dict[tuple[str, str], tuple[Principal, float, str]] = {}
        self._lock = threading.Lock()

    def verify(self, token: str, *, audience: str | None = None) -> Principal:
        expected_audience = self._audience if audience is None else audience
        key = (token, expected_audience)
        remembered = self._verified.get(key)
        if remembered is not None:
            principal, expires, kid = remembered
            if self._now() < expires + self._leeway and self._keys.key_for(kid) is not None:
                return principal
            with self._lock:
                self._verified.pop(key, None)
        entry = self._verify_now(token, expected_audience)
        with self._lock:
            if len(self._verified) >= self._cache_size:
                self._verified.pop(next(iter(self._verified)), None)
            self._verified[key] = entry
        return entry[0]

    def _verify_now(
        self, token: str, expected_audience: str
    ) -> tuple[Principal, float, str]:
        try:
            decoded = jwt.decode(token, self._resolve_key, algorithms=[ALGORITHM],
                                 registry=_REGISTRY)
        except KeysUnavailable:
            raise
        except (JoseError, ValueError, TypeError, KeyError) as error:
            raise _invalid("access token is malformed or its signature does not verify") \
                from error
        claims = decoded.claims
        try:
            self._claims_registry().validate(claims)
        except ExpiredTokenError as error:
            raise Unauthenticated("access token expired", reason=TOKEN_EXPIRED) from error
        except JoseError as error:
            raise _invalid(f"access token claims are invalid ({error.error})") from error
        if not _audience_matches(claims["aud"], expected_audience):
            raise Unauthenticated(
                "access token is for another audience",
                reason=TOKEN_WRONG_AUDIENCE,
                metadata={"expected_audience": expected_audience},
            )
        return (_principal(claims, expected_audience), float(claims["exp"]),
                str(decoded.header.get("kid", "")))

    def _resolve_key(self, obj: GuestProtocol) -> Key:
        kid = obj.headers().get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidKeyIdError("the token names no key")
        key = self._keys.key_for(kid)
        if key is None:
            raise InvalidKeyIdError("the token names an unknown key")
        return key

    def _claims_registry(self) -> jwt.JWTClaimsRegistry:
        return jwt.JWTClaimsRegistry(
            now=int(self._now()),
            leeway=self._leeway,
            iss={"essential": True, "value": self._issuer},
            sub={"essential": True},
            aud={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            jti={"essential": True},
            sid={"essential": True},
            kind={"essential": True, "values": list(_KINDS)},
            username={"essential": True},
            subject_id={"essential": True, "allow_blank": True},
            jurisdiction={"essential": True, "allow_blank": True},
            roles={"essential": True, "allow_blank": True},
        )


def check_not_revoked(principal: Principal, revocations: RevocationCache) -> None:
    if revocations.is_revoked(principal.session_id):
        raise Unauthenticated("the session was revoked", reason=TOKEN_REVOKED)


def _invalid(message: str) -> Unauthenticated:
    return Unauthenticated(message, reason=TOKEN_INVALID)


def _audience_matches(aud: object, expected: str) -> bool:
    if isinstance(aud, str):
        return aud == expected
    return isinstance(aud, list) and expected in aud


def _principal(claims: dict[str, Any], audience: str) -> Principal:
    for name in ("sub", "sid", "username", "subject_id", "jurisdiction", "kind"):
        if not isinstance(claims[name], str):
            raise _invalid(f"access token claim {name} is not a string")
    roles = claims["roles"]
    if not isinstance(roles, list) or not _all_known_roles(roles):
        raise _invalid("access token claim roles is not a list of known roles")
    jurisdiction: str = claims["jurisdiction"]
    if not _JURISDICTION.fullmatch(jurisdiction):
        raise _invalid("access token claim jurisdiction is not a division code")
    return Principal(
        account_id=claims["sub"],
        kind=PrincipalKind(claims["kind"]),
        username=claims["username"],
        subject_id=claims["subject_id"],
        jurisdiction=jurisdiction,
        roles=frozenset(roles),
        session_id=claims["sid"],
        audience=audience,
    )


def _all_known_roles(roles: Collection[object]) -> bool:
    return all(isinstance(role, str) and role in _ROLES for role in roles)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
