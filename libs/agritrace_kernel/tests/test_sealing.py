"""AES-GCM sealing of values at rest: round trips, one key per purpose, and values sealed by
the services before the sealer moved to the kernel still open (stored data must)."""

from __future__ import annotations

import base64

import pytest
from cryptography.exceptions import InvalidTag

from agritrace_kernel.sealing import AesGcmSealer, derive_key

SECRET = b"k" * 32
PII = b"agritrace pii seal v1"
SIGNING_KEYS = b"agritrace sso signing key seal v1"
# Sealed with SECRET by the registry's and sso's own sealers as they were before this module
# (the same format and derivation), as databases hold them.
SEALED_PHONE = "v1:WFLauqAaOX6xpecIDq6heSPggq99fRYTyq1sLwlHrgj37MUN+Pki"
SEALED_KEY = "v1:MQcsuXyMswiqgs39JKeWfbEOUxZPIKW/b0g6YE5ZvQCgRf+ME9zM9ze1J1o8yc4DJuyld77Ofg=="


def test_values_sealed_before_still_open() -> None:
    assert AesGcmSealer(SECRET, PII).unseal(SEALED_PHONE) == "13912345678"
    assert AesGcmSealer(SECRET, SIGNING_KEYS).unseal(SEALED_KEY) == "-----BEGIN PRIVATE KEY-----"


def test_round_trip_with_a_fresh_nonce_each_time() -> None:
    sealer = AesGcmSealer(SECRET, PII)
    sealed = {sealer.seal("13912345678") for _ in range(50)}
    assert len(sealed) == 50
    assert all(s.startswith("v1:") and "13912345678" not in s for s in sealed)
    assert {sealer.unseal(s) for s in sealed} == {"13912345678"}


def test_one_key_per_purpose_and_secret() -> None:
    sealed = AesGcmSealer(SECRET, PII).seal("13912345678")
    with pytest.raises(InvalidTag):
        AesGcmSealer(SECRET, SIGNING_KEYS).unseal(sealed)
    with pytest.raises(InvalidTag):
        AesGcmSealer(b"o" * 32, PII).unseal(sealed)
    assert derive_key(SECRET, PII) != derive_key(SECRET, SIGNING_KEYS)
    assert len(derive_key(SECRET, PII)) == 32


def test_altered_or_unknown_values_are_refused() -> None:
    sealer = AesGcmSealer(SECRET, PII)
    raw = bytearray(base64.b64decode(SEALED_PHONE[3:]))
    raw[0] ^= 1  # the nonce
    with pytest.raises(InvalidTag):
        sealer.unseal("v1:" + base64.b64encode(bytes(raw)).decode())
    with pytest.raises(ValueError, match="unknown sealing version"):
        sealer.unseal("v2:" + SEALED_PHONE[3:])
