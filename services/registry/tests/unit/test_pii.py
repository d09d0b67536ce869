"""Personal data at rest: the AES-GCM protector's seals and digests."""

from __future__ import annotations

import base64

import pytest
from cryptography.exceptions import InvalidTag

from agritrace_registry.adapters.pii import AesGcmProtector

SECRET = b"k" * 32
PHONE = "13912345678"


def test_a_sealed_value_opens_and_does_not_show_the_value() -> None:
    protector = AesGcmProtector(SECRET)
    sealed = protector.seal(PHONE)
    assert sealed.startswith("v1:")
    assert PHONE not in sealed
    assert protector.unseal(sealed) == PHONE
    # A fresh nonce each time: the same value never seals to the same text.
    assert len({protector.seal(PHONE) for _ in range(100)}) == 100


def test_tampered_foreign_or_unknown_seals_are_refused() -> None:
    protector = AesGcmProtector(SECRET)
    raw = bytearray(base64.b64decode(protector.seal(PHONE)[3:]))
    raw[-1] ^= 1
    with pytest.raises(InvalidTag):
        protector.unseal("v1:" + base64.b64encode(bytes(raw)).decode())
    with pytest.raises(InvalidTag):
        AesGcmProtector(b"o" * 32).unseal(protector.seal(PHONE))
    with pytest.raises(ValueError, match="unknown sealing version"):
        protector.unseal("v0:" + protector.seal(PHONE)[3:])


def test_digests_are_stable_per_key_and_differ_across_keys() -> None:
    protector = AesGcmProtector(SECRET)
    # As stored by the registry so far: look-ups by ID number depend on it never changing.
    assert protector.digest(PHONE) == (
        "d3e51f2fe0421bd059b60ff905ea015fe4783b5a466e688ad2f7fbe3e22174cb")
    assert protector.digest(PHONE) == AesGcmProtector(SECRET).digest(PHONE)
    assert protector.digest(PHONE) != AesGcmProtector(b"o" * 32).digest(PHONE)
    assert protector.digest(PHONE) != protector.digest("13912345679")
    assert PHONE not in protector.digest(PHONE)
