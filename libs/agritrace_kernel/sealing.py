"""Values at rest sealed with AES-256-GCM, under keys derived (HKDF-SHA256) from the
platform's one configured secret, one key per purpose: the registry's personal data, sso's
private signing keys. A sealed value is "v1:" + base64(12-byte random nonce + ciphertext and
tag); a value sealed under one purpose (or secret) does not open under another."""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["AesGcmSealer", "derive_key"]

_VERSION = "v1"


def derive_key(secret: bytes, purpose: bytes) -> bytes:
    """A 32-byte key of `secret` for `purpose` alone."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)


class AesGcmSealer:
    def __init__(self, secret: bytes, purpose: bytes) -> None:
        self._aead = AESGCM(derive_key(secret, purpose))

    def seal(self, value: str) -> str:
        # A fresh random 96-bit nonce per value: never the same twice under one key.
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, value.encode(), None)
        return f"{_VERSION}:" + base64.b64encode(nonce + sealed).decode()

    def unseal(self, sealed: str) -> str:
        """The value; raises ValueError for an unknown format, cryptography's InvalidTag for
        a value sealed under another key or altered."""
        version, _, body = sealed.partition(":")
        if version != _VERSION:
            raise ValueError("unknown sealing version")
        raw = base64.b64decode(body)
        return self._aead.decrypt(raw[:12], raw[12:], None).decode()
