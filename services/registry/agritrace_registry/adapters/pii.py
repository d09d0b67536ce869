"""Personal data at rest: HMAC-SHA256 digests for equality look-ups, AES-256-GCM for sealed
values. Both keys derive from the one configured secret (HKDF), so one secret is managed."""

from __future__ import annotations

import hashlib
import hmac

from agritrace_kernel.sealing import AesGcmSealer, derive_key


class AesGcmProtector:
    """Implements the domain's PersonalDataProtector port."""

    def __init__(self, secret: bytes) -> None:
        self._digest_key = derive_key(secret, b"agritrace pii digest v1")
        self._sealer = AesGcmSealer(secret, b"agritrace pii seal v1")

    def digest(self, value: str) -> str:
        return hmac.new(self._digest_key, value.encode(), hashlib.sha256).hexdigest()

    def seal(self, value: str) -> str:
        return self._sealer.seal(value)

    def unseal(self, sealed: str) -> str:
        return self._sealer.unseal(sealed)
