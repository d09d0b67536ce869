"""Unit tests for agritrace_registry.domain.identifiers."""

from __future__ import annotations

import datetime
import pickle
import random

import pytest

from agritrace_registry.domain.identifiers import (
    CREDIT_CODE_ALPHABET,
    PROVINCE_CODES,
    RESIDENT_ID_CHECK_CHARS,
    SUBJECT_ID_ALPHABET,
    CreditCodeCheck,
    IdentifierError,
    credit_code_check_char,
    mask_phone,
    mask_resident_id,
    new_subject_id,
    normalize_credit_code,
    normalize_phone,
    normalize_resident_id,
    parse_credit_code,
    parse_resident_id,
    parse_subject_id,
    resident_id_check_char,
    subject_id_province,
)

# --------------------------------------------------------------------------------------------
# IdentifierError
# --------------------------------------------------------------------------------------------


def test_identifier_error_carries_field_and_reason() -> None:
    error = IdentifierError("credit_code", "is empty")
    assert isinstance(error, ValueError)
    assert (error.field, error.reason) == ("credit_code", "is empty")
    assert str(error) == "credit_code: is empty"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.field, copy.reason) == ("credit_code", "is empty")


# --------------------------------------------------------------------------------------------
# Unified social credit code
# --------------------------------------------------------------------------------------------


def test_credit_code_alphabet_is_gb32100() -> None:
    assert len(CREDIT_CODE_ALPHABET) == 31
    assert not set("IOSVZ") & set(CREDIT_CODE_ALPHABET)


def test_widely_published_example_passes() -> None:
    result = parse_credit_code("91350100M000100Y43")
    assert result == CreditCodeCheck(
        code="91350100M000100Y43", check_ok=True, registration_division="350100"
    )
    assert credit_code_check_char("91350100M000100Y4") == "3"


@pytest.mark.parametrize(
    "code",
    [
        "914403001922038216",  # Huawei Technologies Co., Ltd., Shenzhen
        "91330100716105852F",  # Alibaba (China) Co., Ltd., Hangzhou
        "9144030071526726XG",  # Shenzhen Tencent Computer Systems Co., Ltd.
    ],
)
def test_published_company_codes_pass(code: str) -> None:
    assert parse_credit_code(code).check_ok


@pytest.mark.parametrize(
    ("first17", "division"),
    [
        ("91330106MA2GL1B7X", "330106"),  # company, Hangzhou Xihu district
        ("93330782MA29KQ1D0", "330782"),  # farmers' cooperative (93), Yiwu
        ("92410526MA9F3RT8K", "410526"),  # individual business (92), Hua county
        ("12100000400000624", "100000"),  # public institution (12), central level
        ("52330106MJ9876543", "330106"),  # social organisation (52)
    ],
)
def test_codes_built_with_computed_check_char_pass(first17: str, division: str) -> None:
    code = first17 + credit_code_check_char(first17)
    result = parse_credit_code(code)
    assert result.check_ok
    assert result.code == code
    assert result.registration_division == division


def test_check_char_formula_by_hand() -> None:
    # "00000000000000001": only position 17 (weight 3^16 mod 31 = 28) counts: 31 - 28 = 3.
    assert credit_code_check_char("00000000000000001") == "3"
    # All zeros: sum 0, (31 - 0) mod 31 = 0.
    assert credit_code_check_char("0" * 17) == "0"


def test_wrong_check_char_is_not_an_error() -> None:
    result = parse_credit_code("91350100M000100Y44")
    assert result.check_ok is False
    assert result.code == "91350100M000100Y44"
    assert result.registration_division == "350100"


def test_retired_registration_division_is_accepted() -> None:
    # 110103 (崇文区) was retired in 2010; older codes keep carrying it.
    first17 = "91110103MA0000001"
    assert parse_credit_code(first17 + credit_code_check_char(first17)).check_ok


def test_full_width_lower_case_and_spaces_are_normalised() -> None:
    raw = " ９１３５ ０１００ｍ０００　１００ｙ４３ "
    assert normalize_credit_code(raw) == "91350100M000100Y43"
    assert parse_credit_code("９１３５０１００Ｍ０００１００Ｙ４３").check_ok


@pytest.mark.parametrize("raw", ["", "   ", "91350100M000100Y4", "91350100M000100Y433"])
def test_wrong_length_names_the_field(raw: str) -> None:
    with pytest.raises(IdentifierError) as info:
        parse_credit_code(raw, field="registration.credit_code")
    assert info.value.field == "registration.credit_code"
    assert str(info.value).startswith("registration.credit_code: ")
    assert "18" in info.value.reason


@pytest.mark.parametrize("letter", list("IOSVZ"))
def test_letters_outside_the_alphabet_are_refused(letter: str) -> None:
    code = "91350100M000100Y43"
    bad = code[:8] + letter + code[9:]
    with pytest.raises(IdentifierError) as info:
        parse_credit_code(bad)
    assert info.value.field == "credit_code"
    assert f"{letter!r} at position 9" in info.value.reason


def test_punctuation_is_refused() -> None:
    with pytest.raises(IdentifierError, match="not allowed"):
        parse_credit_code("91350100-000100Y43")


def test_division_positions_must_be_digits() -> None:
    first17 = "913301A6MA2GL1B7X"
    with pytest.raises(IdentifierError) as info:
        parse_credit_code(first17 + credit_code_check_char(first17))
    assert "positions 3-8" in info.value.reason


# --------------------------------------------------------------------------------------------
# Resident ID number
# --------------------------------------------------------------------------------------------

STANDARD_EXAMPLE = "11010519491231002X"  # GB 11643-1999 example


def _with_check(first17: str) -> str:
    return first17 + resident_id_check_char(first17)


def test_standard_example() -> None:
    assert resident_id_check_char(STANDARD_EXAMPLE[:17]) == "X"
    assert parse_resident_id(STANDARD_EXAMPLE) == STANDARD_EXAMPLE


def test_check_chars_table() -> None:
    assert RESIDENT_ID_CHECK_CHARS == "10X98765432"


def test_lower_case_x_full_width_and_spaces() -> None:
    assert parse_resident_id("11010519491231002x") == STANDARD_EXAMPLE
    assert normalize_resident_id(" 110105 19491231 002x ") == STANDARD_EXAMPLE
    assert parse_resident_id("１１０１０５１９４９１２３１００２ｘ") == STANDARD_EXAMPLE


@pytest.mark.parametrize(
    "first17",
    ["33010619850312154", "44030420000229007", "51012920121108361", "65010219000101123"],
)
def test_realistic_numbers_pass(first17: str) -> None:
    number = _with_check(first17)
    assert parse_resident_id(number) == number


def _rejection(raw: str) -> IdentifierError:
    with pytest.raises(IdentifierError) as info:
        parse_resident_id(raw, field="holder.resident_id")
    error = info.value
    assert error.field == "holder.resident_id"
    # Personal data: neither the number, nor its digits, nor the birth date may be echoed.
    text = f"{error} {error!r} {error.args}"
    normalized = normalize_resident_id(raw)
    for secret in {normalized, normalized[:17], normalized[6:14]} - {""}:
        assert secret not in text
    return error


def test_wrong_check_char() -> None:
    error = _rejection("110105194912310021")
    assert "check character" in error.reason


def test_impossible_date() -> None:
    error = _rejection(_with_check("33010619990230123"))
    assert "birth date" in error.reason


@pytest.mark.parametrize(
    "birth",
    [
        "18991231",
        "20991231",
        (datetime.date.today() + datetime.timedelta(days=1)).strftime("%Y%m%d"),
        "20231301",
        "20230000",
    ],
)
def test_birth_date_out_of_range(birth: str) -> None:
    error = _rejection(_with_check("330106" + birth + "123"))
    assert "birth date" in error.reason


def test_fifteen_digit_old_number_is_refused_clearly() -> None:
    error = _rejection("110105491231002")
    assert "15-digit" in error.reason
    assert "18" in error.reason


@pytest.mark.parametrize("raw", ["", "1101051949123100", "11010519491231002X1"])
def test_wrong_length(raw: str) -> None:
    error = _rejection(raw)
    assert "18" in error.reason


@pytest.mark.parametrize("raw", ["1101051949123100AX", "11010519491231002Y", "11010519491231002*"])
def test_non_digits(raw: str) -> None:
    _rejection(raw)


def test_non_ascii_digits_are_refused() -> None:
    _rejection("١١٠١٠٥١٩٤٩١٢٣١٠٠٢X")  # Arabic-Indic digits


def test_mask_resident_id() -> None:
    assert mask_resident_id(STANDARD_EXAMPLE) == "110105********002X"
    assert mask_resident_id("110105491231002") == "*" * 15


# --------------------------------------------------------------------------------------------
# Phone numbers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13812345678", "13812345678"),
        ("138 1234 5678", "13812345678"),
        ("138-1234-5678", "13812345678"),
        ("+86 138 1234 5678", "13812345678"),
        ("+86-19912345678", "19912345678"),
        ("008615912345678", "15912345678"),
        ("１７７１２３４５６７８", "17712345678"),
        ("0571-87654321", "0571-87654321"),
        ("057187654321", "0571-87654321"),
        ("010-62751234", "010-62751234"),
        ("01062751234", "010-62751234"),
        ("021 5432 1234", "021-54321234"),
        ("0755-8765432", "0755-8765432"),
        ("0571-87654321-808", "0571-87654321-808"),
        ("057187654321-8", "0571-87654321-8"),
    ],
)
def test_normalize_phone(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "12812345678",  # 12x is not a mobile prefix
        "1381234567",  # 10 digits
        "138123456789",  # 12 digits
        "138-12345678",  # inconsistent grouping
        "+86 0571 87654321",  # no country code on fixed lines
        "+1 415 555 0100",
        "0571-0765432",  # local number starting with 0
        "0571-876543",  # 6-digit local number
        "0111-8765432",  # 011x is not an area code
        "0101-8765432",  # 010 is a 3-digit code
        "057-187654321",
        "0571-87654321-1234567",  # extension too long
        "0571 8765 43a1",
        "phone",
    ],
)
def test_invalid_phone_reason_has_no_number(raw: str) -> None:
    with pytest.raises(IdentifierError) as info:
        normalize_phone(raw, field="contact.phone")
    assert info.value.field == "contact.phone"
    text = str(info.value)
    digits = "".join(ch for ch in raw if ch.isdigit())
    if len(digits) >= 4:
        assert digits not in text.replace("-", "")
        assert raw.strip() not in text


def test_mask_phone() -> None:
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("0571-87654321") == "0571-******21"
    assert mask_phone("010-6275123") == "010-*****23"
    assert mask_phone("0571-87654321-808") == "0571-******21-***"
    assert mask_phone("garbage-12") == "*******-**"


# --------------------------------------------------------------------------------------------
# Subject id
# --------------------------------------------------------------------------------------------


def _seeded(seed: int) -> random.Random:
    return random.Random(seed)


def _generated_ids(count: int, seed: int = 20240601) -> list[str]:
    rng = _seeded(seed)
    provinces = sorted(PROVINCE_CODES)
    return [new_subject_id(rng.choice(provinces), rng.getrandbits) for _ in range(count)]


def test_alphabet_is_crockford() -> None:
    assert len(SUBJECT_ID_ALPHABET) == 32
    assert not set("ILOU") & set(SUBJECT_ID_ALPHABET)


def test_new_subject_id_shape() -> None:
    subject_id = new_subject_id("33")
    assert len(subject_id) == 16
    assert subject_id[0] == "S"
    assert subject_id[1:3] == "33"
    assert set(subject_id[3:]) <= set(SUBJECT_ID_ALPHABET)
    assert parse_subject_id(subject_id) == subject_id
    assert subject_id_province(subject_id) == "33"


def test_random_part_encodes_60_bits_big_endian() -> None:
    low = new_subject_id("11", lambda bits: 0)
    high = new_subject_id("11", lambda bits: (1 << bits) - 1)
    one = new_subject_id("11", lambda bits: 1)
    assert low[3:15] == "0" * 12
    assert high[3:15] == "Z" * 12
    assert one[3:15] == "0" * 11 + "1"
    for subject_id in (low, high, one):
        assert parse_subject_id(subject_id) == subject_id


def test_random_bits_out_of_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        new_subject_id("11", lambda bits: 1 << bits)


@pytest.mark.parametrize("province", ["00", "3", "330", "99", "71", "ab", ""])
def test_new_subject_id_refuses_unknown_province(province: str) -> None:
    with pytest.raises(IdentifierError) as info:
        new_subject_id(province)
    assert info.value.field == "province"


def test_default_generator_gives_distinct_ids() -> None:
    ids = {new_subject_id("44") for _ in range(1000)}
    assert len(ids) == 1000


def test_round_trip() -> None:
    for subject_id in _generated_ids(200, seed=1):
        assert parse_subject_id(subject_id) == subject_id
        assert parse_subject_id(subject_id.lower()) == subject_id
        assert subject_id_province(subject_id) == subject_id[1:3]


def _detected(candidate: str) -> bool:
    try:
        parse_subject_id(candidate)
    except IdentifierError:
        return True
    return False


def test_every_single_substitution_is_detected() -> None:
    checked = 0
    for subject_id in _generated_ids(200):
        for position in range(len(subject_id)):
            for replacement in SUBJECT_ID_ALPHABET:
                if replacement == subject_id[position]:
                    continue
                candidate = subject_id[:position] + replacement + subject_id[position + 1 :]
                assert _detected(candidate), (subject_id, position, replacement)
                checked += 1
    assert checked == 200 * 16 * 31


def test_every_adjacent_transposition_is_detected() -> None:
    checked = 0
    for subject_id in _generated_ids(200):
        for position in range(len(subject_id) - 1):
            a, b = subject_id[position], subject_id[position + 1]
            if a == b:
                continue
            candidate = subject_id[:position] + b + a + subject_id[position + 2 :]
            assert _detected(candidate), (subject_id, position)
            checked += 1
    assert checked > 200 * 12


def _id_with_random_part(province: str, random_part: str) -> str:
    value = 0
    for ch in random_part:
        value = value * 32 + SUBJECT_ID_ALPHABET.index(ch)
    return new_subject_id(province, lambda bits: value)


def test_detection_holds_for_every_character_pair_at_every_position() -> None:
    """The property behind the two tests above, for all character pairs: the check is linear,
    so detection does not depend on the other characters; fixing them to 0 covers every case.
    Every substitution a->b and every transposition ab->ba of the random part (and of the
    last random character with the check character) is detected."""
    checked = 0
    for position in range(12):
        for a in SUBJECT_ID_ALPHABET:
            base = _id_with_random_part("33", "0" * position + a + "0" * (11 - position))
            index = 3 + position
            if index == 14 and base[14] != base[15]:
                assert _detected(base[:14] + base[15] + base[14])
                checked += 1
            for b in SUBJECT_ID_ALPHABET:
                if a == b:
                    continue
                assert _detected(base[:index] + b + base[index + 1 :])
                checked += 1
                if position < 11:
                    pair = "0" * position + a + b + "0" * (10 - position)
                    valid = _id_with_random_part("33", pair)
                    assert _detected(valid[:index] + b + a + valid[index + 2 :])
                    checked += 1
    assert checked > 2 * 11 * 32 * 31


def test_province_digit_errors_are_detected() -> None:
    for province in sorted(PROVINCE_CODES):
        valid = _id_with_random_part(province, "0" * 12)
        for index in (1, 2):
            for digit in "0123456789":
                if digit != valid[index]:
                    assert _detected(valid[:index] + digit + valid[index + 1 :])
        if province[0] != province[1]:
            assert _detected(valid[0] + province[::-1] + valid[3:])
        if province[1] != valid[3]:
            assert _detected(valid[:2] + valid[3] + valid[2] + valid[4:])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("s33-8ka2-7n9h-fs0s-a", "S338KA27N9HFS0SA"),
        ("S33 8KA2 7N9H FSOS A", "S338KA27N9HFS0SA"),  # O read as 0
        ("Ｓ３３８ＫＡ２７Ｎ９ＨＦＳ０ＳＡ", "S338KA27N9HFS0SA"),
    ],
)
def test_crockford_normalisation(raw: str, expected: str) -> None:
    assert parse_subject_id(raw) == expected


def test_crockford_i_and_l_read_as_one() -> None:
    subject_id = next(s for s in _generated_ids(500, seed=7) if "1" in s[3:])
    position = subject_id.index("1", 3)
    for lookalike in "IiLl":
        typed = subject_id[:position] + lookalike + subject_id[position + 1 :]
        assert parse_subject_id(typed) == subject_id


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("", "empty"),
        ("S338KA27N9HFS0S", "16 characters"),
        ("X338KA27N9HFS0SA", "starts with the letter S"),
        ("S998KA27N9HFS0SA", "province"),
        ("SA38KA27N9HFS0SA", "province"),
        ("S338KA27N9HFU0SA", "position 13"),
        ("S338KA27N9HFS0SB", "check character"),
    ],
)
def test_invalid_subject_ids(raw: str, fragment: str) -> None:
    with pytest.raises(IdentifierError) as info:
        parse_subject_id(raw, field="batch.owner_id")
    assert info.value.field == "batch.owner_id"
    assert fragment in info.value.reason


def test_subject_id_province_validates() -> None:
    with pytest.raises(IdentifierError):
        subject_id_province("S338KA27N9HFS0SB")
