"""The national trace code (docs/trace-codes.md has the reasoning).

    PP RRRRRRRRRRRRR C      16 characters, e.g. 33K7MXH2TA9WPRC6
    |  |             +- check character
    |  +- 13 random characters: 29^13 ≈ 2^63.2 possibilities, from the OS's CSPRNG
    +- the issuing province: the first two digits of its GB/T 2260 division code

The alphabet has 29 characters: the ten digits and the 19 capital letters that cannot be
mistaken for a digit or for each other (no B, I, L, O, S, U, Z). 29 is prime, which is what
makes the check character catch every single-character error and every swap of two adjacent
characters: reading the code's character values as the digits of one number in base 256, a
valid code is a multiple of 29. A single error changes that number by d·256^k and a swap by
d·256^k·(256 − 1), with 0 < |d| < 29; since 256 ≡ 24 and 255 ≡ 23 (mod 29) are both non-zero
and 29 is prime, neither change is a multiple of 29. Base 256 also lets `int.from_bytes` do
the arithmetic in C, which matters when a million codes are issued at once.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

ALPHABET = "0123456789ACDEFGHJKMNPQRTVWXY"
MODULUS = len(ALPHABET)  # 29, prime
PROVINCE_LENGTH = 2
RANDOM_LENGTH = 13
CODE_LENGTH = PROVINCE_LENGTH + RANDOM_LENGTH + 1
RANDOM_BITS = RANDOM_LENGTH * 4.857980995127572  # log2(29) per character: ≈ 63.2

# Look-alikes a person may type or an OCR may read, mapped to what they stand for.
_LOOK_ALIKES = str.maketrans({"O": "0", "I": "1", "L": "1", "B": "8", "S": "5", "Z": "2"})
_SEPARATORS = re.compile(r"[\s\-_.·]")
# Translating with this leaves only what is outside the alphabet (every scan checks it).
_OUTSIDE_ALPHABET = str.maketrans("", "", ALPHABET)

# Character -> value byte, value byte -> character, as bytes.translate tables.
_VALUE_OF = bytes(
    ALPHABET.index(chr(byte)) if chr(byte) in ALPHABET else 255 for byte in range(256)
)
_CHAR_OF = bytes(ord(ALPHABET[byte % MODULUS]) for byte in range(256))
# Random bytes below this are kept (uniform modulo 29); the rest are dropped.
_ACCEPT_BELOW = 256 - 256 % MODULUS  # 232
_REJECTED = bytes(range(_ACCEPT_BELOW, 256))
# The provincial-level divisions of GB/T 2260 (31 mainland, Taiwan, Hong Kong, Macao).
PROVINCES = frozenset(
    [
        "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36",
        "37", "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62",
        "63", "64", "65", "71", "81", "82",
    ]
)


class CodeFormatError(ValueError):
    """A string that is not a well-formed trace code; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _check_value(body: bytes) -> int:
    """The value that makes `body` + check a multiple of MODULUS in base 256."""
    return (-int.from_bytes(body.translate(_VALUE_OF), "big") * 256) % MODULUS


def check_character(body: str) -> str:
    """The check character of the first 15 characters of a code."""
    return ALPHABET[_check_value(body.encode("ascii"))]


def has_valid_check(code: str) -> bool:
    """Whether a canonical, well-formed code's check character holds."""
    return int.from_bytes(code.encode("ascii").translate(_VALUE_OF), "big") % MODULUS == 0


def random_bodies(count: int) -> list[bytes]:
    """`count` random parts (13 characters each, ASCII), every character uniform over the
    alphabet and independent, drawn from os.urandom (the kernel's CSPRNG)."""
    needed = count * RANDOM_LENGTH
    chars = b""
    while len(chars) < needed:
        # ~9.4% of bytes are rejected; ask for 12% more and loop if unlucky.
        raw = os.urandom((needed - len(chars)) * 112 // 100 + 16)
        chars += raw.translate(_CHAR_OF, _REJECTED)
    return [chars[i:i + RANDOM_LENGTH] for i in range(0, needed, RANDOM_LENGTH)]


def new_codes(province: str, count: int) -> list[str]:
    """`count` fresh codes of `province` (duplicates are possible in principle, ~2^-63 per
    pair; the store's uniqueness rejects them and the caller retries)."""
    check_province(province)
    prefix = province.encode("ascii")
    # Pre-multiplied province contribution: value(prefix) * 256^13 (mod 29).
    prefix_value = int.from_bytes(prefix.translate(_VALUE_OF), "big") * pow(
        256, RANDOM_LENGTH, MODULUS
    )
    codes: list[str] = []
    append = codes.append
    for body in random_bodies(count):
        value = (prefix_value + int.from_bytes(body.translate(_VALUE_OF), "big")) * 256
        append((prefix + body).decode("ascii") + ALPHABET[-value % MODULUS])
    return codes


def check_province(province: str) -> str:
    if province not in PROVINCES:
        raise CodeFormatError(f"province {province!r} is not two digits of a division code")
    return province


def normalize(text: str) -> str:
    """The canonical form of a code as typed or scanned: separators dropped, upper case,
    look-alike letters read as what they resemble. Raises CodeFormatError."""
    compact = _SEPARATORS.sub("", text).upper().translate(_LOOK_ALIKES)
    if len(compact) != CODE_LENGTH:
        raise CodeFormatError(f"has {len(compact)} characters; a trace code has {CODE_LENGTH}")
    bad = compact.translate(_OUTSIDE_ALPHABET)
    if bad:
        raise CodeFormatError("contains characters outside the code alphabet: "
                              f"{''.join(sorted(set(bad)))}")
    if not compact[:PROVINCE_LENGTH].isdigit() or compact[:2] not in PROVINCES:
        raise CodeFormatError("does not start with the two digits of a province")
    return compact


@dataclass(frozen=True)
class ParsedCode:
    code: str
    province: str
    check_valid: bool


def parse(text: str) -> ParsedCode:
    """Normalizes and checks a code (raises CodeFormatError when it is not well-formed)."""
    code = normalize(text)
    return ParsedCode(code, code[:PROVINCE_LENGTH], has_valid_check(code))


def display(code: str) -> str:
    """How a code is printed for people: 33 K7MX H2TA 9WPR C6 (groups of 4 after the
    province, easier to read aloud and to type)."""
    rest = code[PROVINCE_LENGTH:]
    return " ".join([code[:PROVINCE_LENGTH], *(rest[i:i + 4] for i in range(0, len(rest), 4))])


def resolver_url(base_url: str, code: str) -> str:
    """The URL a label's QR code carries, in the GS1 Digital Link style: the base URL of the
    resolver, then the key and value as path segments (/tc/<code>, "tc" for trace code)."""
    return f"{base_url.rstrip('/')}/tc/{code}"
