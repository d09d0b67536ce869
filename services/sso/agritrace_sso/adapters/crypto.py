"""Cryptography adapters: the AES-GCM sealer of private signing keys at rest, the argon2
password hasher, and the EdDSA (Ed25519) JWT codec on joserfc."""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import argon2
from joserfc import jwt
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import KeySet, OKPKey

from agritrace_kernel.sealing import AesGcmSealer
from agritrace_sso.service_layer.ports import InvalidToken, SigningKey

ALGORITHM = "EdDSA"
# joserfc >= 1.x warns that RFC 9864 deprecates the polymorphic "EdDSA" name in favour of
# "Ed25519"; the contract (and every verifier today) uses "EdDSA" over Ed25519 keys.
warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)


# The purpose the signing keys' sealing key is derived for (agritrace_kernel.sealing).
SIGNING_KEY_SEAL_PURPOSE = b"agritrace sso signing key seal v1"


def signing_key_sealer(secret: bytes) -> AesGcmSealer:
    """Seals private signing keys at rest under a key of the platform's one secret for this
    purpose only."""
    return AesGcmSealer(secret, SIGNING_KEY_SEAL_PURPOSE)


class Sealer(Protocol):
    """What the codec needs of a sealer (signing_key_sealer's; tests may pass their own)."""

    def seal(self, value: str) -> str: ...
    def unseal(self, sealed: str) -> str: ...


class Argon2Hasher:
    """Passwords hashed with argon2id (argon2-cffi's defaults unless a configured hasher is
    given, e.g. cheap parameters in tests)."""

    def __init__(self, hasher: argon2.PasswordHasher | None = None) -> None:
        self._hasher = hasher or argon2.PasswordHasher()

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except argon2.exceptions.InvalidHashError:
            return True


class JoseTokenCodec:
    """Ed25519 keys as JWKs, compact JWS JWTs with `kid`. Unsealed private keys are cached by
    kid (keys never change once made)."""

    def __init__(self, sealer: Sealer) -> None:
        self._sealer = sealer
        self._private: dict[str, OKPKey] = {}
        self._lock = threading.Lock()

    def new_key(self, kid: str, now: datetime) -> SigningKey:
        key = OKPKey.generate_key("Ed25519", parameters={"kid": kid, "use": "sig",
                                                        "alg": ALGORITHM})
        public = key.as_dict(private=False)
        return SigningKey(
            kid=kid,
            private_sealed=self._sealer.seal(json.dumps(key.as_dict(private=True))),
            public_jwk=json.dumps(public, sort_keys=True),
            created_at=now,
        )

    def sign(self, claims: Mapping[str, Any], key: SigningKey) -> str:
        private = self._private_key(key)
        return jwt.encode({"alg": ALGORITHM, "kid": key.kid, "typ": "JWT"}, dict(claims),
                          private, algorithms=[ALGORITHM])

    def verify(self, token: str, public_jwks: Sequence[str]) -> dict[str, Any]:
        try:
            keys = KeySet.import_key_set({"keys": [json.loads(k) for k in public_jwks]})
            decoded = jwt.decode(token, keys, algorithms=[ALGORITHM])
        except (JoseError, ValueError, TypeError, KeyError) as error:
            raise InvalidToken(str(error)) from None
        return dict(decoded.claims)

    def _private_key(self, key: SigningKey) -> OKPKey:
        with self._lock:
            cached = self._private.get(key.kid)
            if cached is None:
                cached = OKPKey.import_key(json.loads(self._sealer.unseal(key.private_sealed)))
                self._private[key.kid] = cached
            return cached
