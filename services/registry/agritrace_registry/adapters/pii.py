"""Personal data at rest: HMAC-SHA256 digests for equality look-ups, AES-256-GCM for sealed
values. Both keys derive from the one configured secret (HKDF), so one secret is managed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)


class AesGcmProtector:
    """Implements the domain's PersonalDataProtector port."""

    def __init__(self, secret: bytes) -> None:
        self._digest_key = _derive(secret, b"agritrace pii digest v1")
        self._aead = AESGCM(_derive(secret, b"agritrace pii seal v1"))

    def digest(self, value: str) -> str:
        return hmac.new(self._digest_key, value.encode(), hashlib.sha256).hexdigest()

    def seal(self, value: str) -> str:
        nonce = os.urandom(12)
        return "v1:" + base64.b64encode(nonce + self._aead.encrypt(nonce, value.encode(), None)
                                        ).decode()

    def unseal(self, sealed: str) -> str:
        version, _, body = sealed.partition(":")
        if version != "v1":
            raise ValueError("unknown sealing version")
        raw = base64.b64decode(body)
        return self._aead.decrypt(raw[:12], raw[12:], None).decode()
