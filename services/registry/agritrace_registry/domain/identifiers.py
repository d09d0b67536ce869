"""Validators for the identifiers the subject registry accepts, and the national subject id.

Standard library only, no I/O. Every validator raises `IdentifierError` (a `ValueError`) that
names the request field and gives a human reason. Reasons never repeat personal data: a
resident ID number, its birth date or a phone number never appears in an error message.

Covered here:

* unified social credit codes (统一社会信用代码, GB 32100-2015);
* second-generation resident identity card numbers (公民身份号码, GB 11643-1999);
* mainland China phone numbers (mobile and fixed line);
* the platform's own subject id (``S`` + province + 12 random Crockford base32 characters +
  a check character over GF(32)).

See docs/identifiers.md for the rules and the reasons behind them.
"""

from __future__ import annotations

import datetime
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "CREDIT_CODE_ALPHABET",
    "PROVINCE_CODES",
    "RESIDENT_ID_CHECK_CHARS",
    "SUBJECT_ID_ALPHABET",
    "BufferedRandomBits",
    "CreditCodeCheck",
    "IdentifierError",
    "credit_code_check_char",
    "mask_phone",
    "mask_resident_id",
    "new_subject_id",
    "normalize_credit_code",
    "normalize_phone",
    "normalize_resident_id",
    "parse_credit_code",
    "parse_resident_id",
    "parse_subject_id",
    "resident_id_check_char",
    "subject_id_province",
    "system_random_bits",
]


class IdentifierError(ValueError):
    """An identifier failed validation.

    `field` is the request field (e.g. ``"credit_code"``); `reason` is a human sentence that
    never contains the rejected value when that value is personal data.
    """

    def __init__(self, field: str, reason: str) -> None:
        # Both go to args so the exception pickles and copies faithfully.
        super().__init__(field, reason)
        self.field = field
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


# --------------------------------------------------------------------------------------------
# Shared normalisation
# --------------------------------------------------------------------------------------------

# Full-width ASCII variants (U+FF01..U+FF5E) and the ideographic space map to plain ASCII.
_FULL_TO_HALF = {0xFF01 + i: 0x21 + i for i in range(0x5E)} | {0x3000: 0x20}
# Invisible characters that come along with copy and paste.
_INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff")
_DIGITS = frozenset("0123456789")


def _half_width_compact(raw: str) -> str:
    """Full-width to half-width, then drop all whitespace and invisible characters."""
    if raw.isascii() and raw.isalnum():  # the common case, decided in C
        return raw
    text = raw.translate(_FULL_TO_HALF)
    return "".join(ch for ch in text if not ch.isspace() and ch not in _INVISIBLE)


def _is_digits(text: str) -> bool:
    """ASCII digits only (str.isdigit also accepts e.g. Arabic-Indic and superscript digits)."""
    return text.isascii() and text.isdigit()


# Provinces, autonomous regions and municipalities of the mainland (GB/T 2260 first level).
# fmt: off
PROVINCE_CODES: frozenset[str] = frozenset({
    "11", "12", "13", "14", "15",              # 北京 天津 河北 山西 内蒙古
    "21", "22", "23",                          # 辽宁 吉林 黑龙江
    "31", "32", "33", "34", "35", "36", "37",  # 上海 江苏 浙江 安徽 福建 江西 山东
    "41", "42", "43", "44", "45", "46",        # 河南 湖北 湖南 广东 广西 海南
    "50", "51", "52", "53", "54",              # 重庆 四川 贵州 云南 西藏
    "61", "62", "63", "64", "65",              # 陕西 甘肃 青海 宁夏 新疆
})
# fmt: on


# --------------------------------------------------------------------------------------------
# Unified social credit code (GB 32100-2015)
# --------------------------------------------------------------------------------------------

CREDIT_CODE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters: no I O S V Z
_CREDIT_CODE_VALUES = {ch: i for i, ch in enumerate(CREDIT_CODE_ALPHABET)}
_CREDIT_CODE_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))  # 3^(i-1) mod 31, i = 1..17
_CREDIT_CODE_LENGTH = 18


def credit_code_check_char(first17: str) -> str:
    """The GB 32100 check character for the first 17 characters of a credit code.

    C18 = 31 - (sum of value_i * 3^(i-1) mod 31) mod 31, with 31 written as 0.
    Raises `ValueError` (an `IdentifierError`) if `first17` is not 17 alphabet characters.
    """
    if len(first17) != _CREDIT_CODE_LENGTH - 1 or any(
        ch not in _CREDIT_CODE_VALUES for ch in first17
    ):
        raise IdentifierError(
            "credit_code", "the check character needs 17 characters of the code alphabet"
        )
    total = sum(
        _CREDIT_CODE_VALUES[ch] * weight
        for ch, weight in zip(first17, _CREDIT_CODE_WEIGHTS, strict=True)
    )
    return CREDIT_CODE_ALPHABET[(31 - total % 31) % 31]


def normalize_credit_code(raw: str) -> str:
    """Strip spaces, full-width to half-width, upper-case. Does not validate."""
    return _half_width_compact(raw).upper()


@dataclass(frozen=True)
class CreditCodeCheck:
    """A well-formed credit code. `check_ok` is False when the check character does not match
    (some genuine older codes fail the check; they go to manual review, not to rejection).
    `registration_division` is positions 3-8, the division of the registration authority; it
    is deliberately not checked against the current division list (old codes carry retired
    divisions)."""

    code: str
    check_ok: bool
    registration_division: str


def parse_credit_code(raw: str, field: str = "credit_code") -> CreditCodeCheck:
    """Normalise and validate the shape of a unified social credit code.

    Raises `IdentifierError` for a wrong length, characters outside the GB 32100 alphabet, or
    positions 3-8 that are not 6 digits. A wrong check character does not raise.
    """
    code = normalize_credit_code(raw)
    if not code:
        raise IdentifierError(field, "is empty; a unified social credit code has 18 characters")
    if len(code) != _CREDIT_CODE_LENGTH:
        raise IdentifierError(
            field,
            f"a unified social credit code has 18 characters, this one has {len(code)}",
        )
    bad = [(pos, ch) for pos, ch in enumerate(code, start=1) if ch not in _CREDIT_CODE_VALUES]
    if bad:
        listed = ", ".join(f"{ch!r} at position {pos}" for pos, ch in bad[:5])
        raise IdentifierError(
            field,
            f"contains characters that are not allowed in a unified social credit code ({listed});"
            " only digits and capital letters except I, O, S, V and Z are used",
        )
    division = code[2:8]
    if not _is_digits(division):
        raise IdentifierError(
            field, "positions 3-8 (the registration division code) must be 6 digits"
        )
    check_ok = credit_code_check_char(code[:17]) == code[17]
    return CreditCodeCheck(code=code, check_ok=check_ok, registration_division=division)


# --------------------------------------------------------------------------------------------
# Resident identity card number (GB 11643-1999)
# --------------------------------------------------------------------------------------------

RESIDENT_ID_CHECK_CHARS = "10X98765432"
_RESIDENT_ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))  # 7 9 10 5 8 4 2 1 6 3 ...
_RESIDENT_ID_LENGTH = 18
_EARLIEST_BIRTH_DATE = datetime.date(1900, 1, 1)


def resident_id_check_char(first17: str) -> str:
    """The GB 11643 check character (ISO 7064 MOD 11-2) for the first 17 digits."""
    if len(first17) != _RESIDENT_ID_LENGTH - 1 or not _is_digits(first17):
        raise IdentifierError("resident_id", "the check character needs exactly 17 digits")
    total = sum(int(ch) * weight for ch, weight in zip(first17, _RESIDENT_ID_WEIGHTS, strict=True))
    return RESIDENT_ID_CHECK_CHARS[total % 11]


def normalize_resident_id(raw: str) -> str:
    """Strip spaces, full-width to half-width, lower-case x to X. Does not validate."""
    return _half_width_compact(raw).replace("x", "X")


def _birth_date(digits: str) -> datetime.date | None:
    try:
        return datetime.date(int(digits[0:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def parse_resident_id(raw: str, field: str = "resident_id") -> str:
    """Normalise and fully validate an 18-character resident ID number; return it normalised.

    Raises `IdentifierError` (whose reason never contains the number or its birth date) for:
    a wrong length (15-digit first-generation numbers are refused), non-digits, a birth date
    (positions 7-14) that is not a real date between 1900-01-01 and today, a wrong check
    character.
    """
    number = normalize_resident_id(raw)
    if not number:
        raise IdentifierError(field, "is empty; a resident ID number has 18 characters")
    if len(number) != _RESIDENT_ID_LENGTH:
        if len(number) == 15 and _is_digits(number):
            raise IdentifierError(
                field,
                "15-digit first-generation ID numbers are not accepted; enter the 18-character"
                " number of the second-generation resident identity card",
            )
        raise IdentifierError(
            field,
            f"must be the 18-character second-generation resident ID number, got"
            f" {len(number)} characters (15-digit first-generation numbers are not accepted)",
        )
    if not _is_digits(number[:17]):
        raise IdentifierError(field, "the first 17 characters must all be digits")
    if number[17] not in _DIGITS and number[17] != "X":
        raise IdentifierError(field, "the last character must be a digit or X")
    birth = _birth_date(number[6:14])
    if birth is None or not _EARLIEST_BIRTH_DATE <= birth <= datetime.date.today():
        raise IdentifierError(
            field,
            "positions 7-14 are not a possible birth date (a real date YYYYMMDD"
            " between 1900-01-01 and today)",
        )
    if resident_id_check_char(number[:17]) != number[17]:
        raise IdentifierError(
            field, "the check character does not match (GB 11643); the number is mistyped"
        )
    return number


def mask_resident_id(normalized: str) -> str:
    """First 6 (the issuing division) + 8 asterisks + last 4, e.g. 110105********002X.

    Anything that is not 18 characters long is masked completely: masking never leaks.
    """
    if len(normalized) != _RESIDENT_ID_LENGTH:
        return "*" * len(normalized)
    return normalized[:6] + "*" * 8 + normalized[-4:]


# --------------------------------------------------------------------------------------------
# Phone numbers (mainland China)
# --------------------------------------------------------------------------------------------

# 3-4-4 groups, separated by nothing or by '-' consistently.
_MOBILE_RE = re.compile(r"(1[3-9]\d)(-?)(\d{4})\2(\d{4})", re.ASCII)
_FIXED_SPLIT_RE = re.compile(r"(0\d{2,3})-(\d{7,8})(?:-(\d{1,6}))?", re.ASCII)
_FIXED_JOINED_RE = re.compile(r"(0\d{9,11})(?:-(\d{1,6}))?", re.ASCII)
_PHONE_REASON = (
    "is not a valid mainland China phone number: expected an 11-digit mobile number starting"
    " 13-19 (optionally with +86 or 0086 in front) or a fixed-line number with its area code,"
    " 0XX-XXXXXXXX or 0XXX-XXXXXXX(X), optionally followed by -extension"
)


def _area_code_length(digits: str) -> int | None:
    """Length of the area code a fixed-line number starts with: 010 and 02X are the 3-digit
    codes, 03XX-09XX the 4-digit ones; anything else is not an area code."""
    if digits.startswith(("010", "02")):
        return 3
    if len(digits) >= 2 and digits[0] == "0" and digits[1] in "3456789":
        return 4
    return None


def normalize_phone(raw: str, field: str = "contact_phone") -> str:
    """Validate and normalise a mainland phone number.

    Mobile: 11 digits starting 1[3-9], an optional +86 / 0086 prefix removed, returned as
    11 digits. Fixed line: area code (010 or 02X: 3 digits, otherwise 0XXX: 4 digits), an
    optional '-', a 7-8 digit local number not starting with 0, an optional '-extension'
    (1-6 digits); returned as ``AREA-LOCAL`` or ``AREA-LOCAL-EXT``.
    Raises `IdentifierError`; the reason never contains the number.
    """
    text = _half_width_compact(raw)
    if not text:
        raise IdentifierError(field, "is empty; a phone number is required")
    international = False
    for prefix in ("+86", "0086"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            text = text.removeprefix("-")
            international = True
            break
    mobile = _MOBILE_RE.fullmatch(text)
    if mobile:
        return mobile.group(1) + mobile.group(3) + mobile.group(4)
    if international:
        raise IdentifierError(
            field,
            "after +86 or 0086 only an 11-digit mobile number starting 13-19 is accepted;"
            " write fixed-line numbers with their 0 area code and no country code",
        )
    split = _FIXED_SPLIT_RE.fullmatch(text)
    if split:
        area, local, extension = split.group(1), split.group(2), split.group(3)
        if _area_code_length(area) != len(area):
            raise IdentifierError(field, _PHONE_REASON)
    else:
        joined = _FIXED_JOINED_RE.fullmatch(text)
        if not joined:
            raise IdentifierError(field, _PHONE_REASON)
        digits, extension = joined.group(1), joined.group(2)
        area_length = _area_code_length(digits)
        if area_length is None:
            raise IdentifierError(field, _PHONE_REASON)
        area, local = digits[:area_length], digits[area_length:]
        if not 7 <= len(local) <= 8:
            raise IdentifierError(field, _PHONE_REASON)
    if local.startswith("0"):
        raise IdentifierError(field, _PHONE_REASON)
    return f"{area}-{local}" + (f"-{extension}" if extension else "")


def mask_phone(normalized: str) -> str:
    """Mask a number returned by `normalize_phone`.

    Mobile: first 3 + ``****`` + last 4 (138****5678). Fixed line: the area code and the last
    2 digits of the local number stay, every other digit becomes '*' (0571-******21; an
    extension is masked completely). Any other shape is masked completely.
    """
    if len(normalized) == 11 and _is_digits(normalized) and normalized[0] == "1":
        return normalized[:3] + "****" + normalized[-4:]
    parts = normalized.split("-")
    if 2 <= len(parts) <= 3 and all(_is_digits(p) for p in parts) and len(parts[1]) > 2:
        masked = [parts[0], "*" * (len(parts[1]) - 2) + parts[1][-2:]]
        masked += ["*" * len(p) for p in parts[2:]]
        return "-".join(masked)
    return "".join("-" if ch == "-" else "*" for ch in normalized)


# --------------------------------------------------------------------------------------------
# National subject id
# --------------------------------------------------------------------------------------------

SUBJECT_ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
_SUBJECT_ID_VALUES = {ch: i for i, ch in enumerate(SUBJECT_ID_ALPHABET)}
_SUBJECT_ID_PREFIX = "S"
_SUBJECT_ID_RANDOM_CHARS = 12
_SUBJECT_ID_RANDOM_BITS = 5 * _SUBJECT_ID_RANDOM_CHARS  # 60
_SUBJECT_ID_LENGTH = 1 + 2 + _SUBJECT_ID_RANDOM_CHARS + 1  # 16
# Crockford decoding: O reads as 0, I and L read as 1; hyphens are ignorable separators.
_CROCKFORD_FIX = str.maketrans({"O": "0", "I": "1", "L": "1", "-": None})
# GF(32) = GF(2)[x] / (x^5 + x^2 + 1). The polynomial is irreducible, hence primitive (31 is
# prime), so x has multiplicative order 31.
_GF32_MODULUS = 0b100101


def _gf32_times_x(value: int) -> int:
    value <<= 1
    if value & 0b100000:
        value ^= _GF32_MODULUS
    return value


def _gf32_times_x_power(value: int, power: int) -> int:
    for _ in range(power):
        value = _gf32_times_x(value)
    return value


_SUBJECT_BODY_LENGTH = 2 + _SUBJECT_ID_RANDOM_CHARS  # province + random part: 14
# _CHECK_TERMS[i][v] = v * x^(14-i) in GF(32): the weighted term of value v at body position i
# (0-based), precomputed so a check character is 14 table look-ups and XORs.
_CHECK_TERMS = tuple(
    tuple(_gf32_times_x_power(value, _SUBJECT_BODY_LENGTH - position) for value in range(32))
    for position in range(_SUBJECT_BODY_LENGTH)
)


def _subject_check_char(body: str) -> str:
    """Check character for the 14 characters after 'S' (province + random part).

    The check value c makes sum(v_i * x^(15-i)) for i = 1..15 equal 0 in GF(32), where v_15 = c.
    Each position has a distinct non-zero weight x^(15-i), so any single substitution
    (w * (a - b) != 0) and any transposition of two positions (w_i - w_j)(a - b) != 0 changes
    the sum: all are detected. c = sum(v_i * x^(15-i)) for i = 1..14 (minus equals plus).
    """
    check = 0
    for terms, ch in zip(_CHECK_TERMS, body, strict=True):
        check ^= terms[_SUBJECT_ID_VALUES[ch]]
    return SUBJECT_ID_ALPHABET[check]


_RANDOM_SHIFTS = tuple(range(_SUBJECT_ID_RANDOM_BITS - 5, -1, -5))


class BufferedRandomBits:
    """Random bits from the operating system's CSPRNG (as `secrets` uses), read in blocks:
    one system call per several hundred ids instead of one per id, which matters when an
    import creates hundreds of thousands. The buffer is dropped in a forked child, so parent
    and child never hand out the same bits."""

    def __init__(self, block_bytes: int = 8192) -> None:
        self._block_bytes = block_bytes
        self._buffer = b""
        self._position = 0
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._drop)

    def _drop(self) -> None:
        self._buffer, self._position = b"", 0

    def __call__(self, bits: int) -> int:
        size = (bits + 7) // 8
        with self._lock:
            if self._position + size > len(self._buffer):
                self._buffer, self._position = os.urandom(max(self._block_bytes, size)), 0
            chunk = self._buffer[self._position : self._position + size]
            self._position += size
        return int.from_bytes(chunk, "big") >> (size * 8 - bits)


system_random_bits = BufferedRandomBits()


def new_subject_id(
    province: str, random_bits: Callable[[int], int] = system_random_bits
) -> str:
    """A new national subject id: ``S`` + 2-digit province + 12 random Crockford base32
    characters (60 bits from `random_bits`, by default the OS CSPRNG) + 1 check
    character = 16 characters, e.g. ``S33`` + ``4W9H0Q7ZK2MT`` + check."""
    if province not in PROVINCE_CODES:
        raise IdentifierError("province", "must be a 2-digit province code such as 33")
    number = random_bits(_SUBJECT_ID_RANDOM_BITS)
    if not 0 <= number < 1 << _SUBJECT_ID_RANDOM_BITS:
        raise ValueError(f"random_bits({_SUBJECT_ID_RANDOM_BITS}) returned a value out of range")
    random_part = "".join([SUBJECT_ID_ALPHABET[(number >> shift) & 0b11111]
                           for shift in _RANDOM_SHIFTS])
    body = province + random_part
    return _SUBJECT_ID_PREFIX + body + _subject_check_char(body)


def parse_subject_id(raw: str, field: str = "subject_id") -> str:
    """Normalise (spaces, full-width, upper-case, Crockford O->0, I/L->1, hyphens dropped) and
    validate a subject id: shape, province code and check character. Returns it normalised."""
    subject_id = _half_width_compact(raw).upper().translate(_CROCKFORD_FIX)
    if not subject_id:
        raise IdentifierError(field, "is empty; a subject id has 16 characters")
    if len(subject_id) != _SUBJECT_ID_LENGTH:
        raise IdentifierError(
            field,
            f"a subject id has 16 characters (S, 2-digit province, 12 characters, 1 check"
            f" character), this one has {len(subject_id)}",
        )
    if not subject_id.startswith(_SUBJECT_ID_PREFIX):
        raise IdentifierError(field, "a subject id starts with the letter S")
    province = subject_id[1:3]
    if province not in PROVINCE_CODES:
        raise IdentifierError(field, "positions 2-3 must be a 2-digit province code such as 33")
    bad = [pos for pos, ch in enumerate(subject_id[3:], start=4) if ch not in _SUBJECT_ID_VALUES]
    if bad:
        raise IdentifierError(
            field,
            f"position {bad[0]} is not a Crockford base32 character (digits and letters"
            " except I, L, O and U)",
        )
    if _subject_check_char(subject_id[1:15]) != subject_id[15]:
        raise IdentifierError(
            field, "the check character does not match; the subject id is mistyped"
        )
    return subject_id


def subject_id_province(subject_id: str) -> str:
    """The 2-digit province of first registration carried by a (valid) subject id."""
    return parse_subject_id(subject_id)[1:3]
