"""The trace-code format (agritrace_coding.domain.codes): alphabet, check character, parsing,
randomness, resolver URLs."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agritrace_coding.domain import codes
from agritrace_coding.domain.codes import ALPHABET, CodeFormatError

LOOK_ALIKES = "BILOSUZ"
PROVINCE_LIST = sorted(codes.PROVINCES)


def make_code(province: str, body: str) -> str:
    return province + body + codes.check_character(province + body)


def single_errors(code: str) -> list[str]:
    """Every string that differs from `code` in exactly one character (within the alphabet)."""
    return [
        code[:index] + other + code[index + 1:]
        for index, char in enumerate(code)
        for other in ALPHABET
        if other != char
    ]


def adjacent_swaps(code: str) -> list[str]:
    """Every swap of two adjacent, unequal characters of `code`."""
    return [
        code[:index] + code[index + 1] + code[index] + code[index + 2:]
        for index in range(len(code) - 1)
        if code[index] != code[index + 1]
    ]


def assert_every_typing_error_is_caught(code: str) -> int:
    """Checks the code and every single error and adjacent swap of it; how many were tried."""
    assert codes.has_valid_check(code), code
    errors = single_errors(code)
    swaps = adjacent_swaps(code)
    assert len(errors) == codes.CODE_LENGTH * (codes.MODULUS - 1)
    undetected = [wrong for wrong in errors + swaps if codes.has_valid_check(wrong)]
    assert undetected == [], f"{code}: undetected {undetected[:5]}"
    return len(errors) + len(swaps)


bodies = st.text(alphabet=ALPHABET, min_size=codes.RANDOM_LENGTH, max_size=codes.RANDOM_LENGTH)
provinces = st.sampled_from(PROVINCE_LIST)


# -- the alphabet and the layout -------------------------------------------------------------


def test_the_alphabet_is_29_characters_without_look_alikes() -> None:
    assert len(ALPHABET) == 29
    assert len(set(ALPHABET)) == 29
    assert codes.MODULUS == 29
    assert all(29 % divisor for divisor in range(2, 29))  # prime
    assert set(LOOK_ALIKES).isdisjoint(ALPHABET)
    assert set("0123456789") <= set(ALPHABET)
    assert "".join(sorted(ALPHABET)) == ALPHABET
    assert all(char.isdigit() or char.isupper() for char in ALPHABET)


def test_a_code_is_16_characters_which_fits_the_20_character_limit() -> None:
    assert codes.CODE_LENGTH == 16
    assert codes.PROVINCE_LENGTH + codes.RANDOM_LENGTH + 1 == 16
    for code in codes.new_codes("33", 50):
        assert len(code) == 16 <= 20
        assert code[:2] == "33"
        assert set(code) <= set(ALPHABET)


def test_the_random_part_carries_at_least_60_bits() -> None:
    assert codes.RANDOM_BITS >= 60
    assert pytest.approx(13 * math.log2(29)) == codes.RANDOM_BITS
    assert 29**13 > 2**63


def test_the_provinces_are_the_34_provincial_divisions() -> None:
    assert len(codes.PROVINCES) == 34
    assert {"11", "33", "44", "65", "71", "81", "82"} <= codes.PROVINCES
    assert not {"00", "10", "99", "83"} & codes.PROVINCES
    assert all(len(p) == 2 and p.isdigit() for p in codes.PROVINCES)


# -- the check character ---------------------------------------------------------------------


def test_the_check_character_completes_a_code() -> None:
    body = "33K7MXH2TA9WPRC"
    code = body + codes.check_character(body)
    assert codes.has_valid_check(code)
    others = [body + char for char in ALPHABET if char != code[-1]]
    assert len(others) == 28
    assert [other for other in others if codes.has_valid_check(other)] == []


def test_every_single_error_and_adjacent_swap_is_caught_on_1000_issued_codes() -> None:
    """A deterministic sweep: 1,000 fresh codes from several provinces, each with all of its
    448 single-character errors and all of its adjacent swaps of unequal characters."""
    issued = [code for province in ("11", "33", "44", "65", "82")
              for code in codes.new_codes(province, 200)]
    assert len(issued) == 1000
    tried = sum(assert_every_typing_error_is_caught(code) for code in issued)
    assert tried >= 1000 * 448


@settings(max_examples=300, deadline=None)
@given(province=provinces, body=bodies)
def test_every_single_error_and_adjacent_swap_is_caught_on_any_code(
    province: str, body: str
) -> None:
    assert_every_typing_error_is_caught(make_code(province, body))


@pytest.mark.parametrize(
    "code",
    [
        make_code("33", "0000000000000"),  # all equal: no swap to make
        make_code("11", "0101010101010"),
        make_code("82", "YYYYYYYYYYYYY"),
        make_code("44", "0Y0Y0Y0Y0Y0Y0"),  # the extreme values side by side
        make_code("65", "YXWVTRQPNMKJH"),
    ],
)
def test_edge_case_codes_catch_every_error(code: str) -> None:
    assert_every_typing_error_is_caught(code)


# -- parsing ---------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(province=provinces, body=bodies)
def test_parse_round_trips_displayed_and_lower_case_codes(province: str, body: str) -> None:
    code = make_code(province, body)
    for text in (code, codes.display(code), code.lower(), codes.display(code).lower()):
        parsed = codes.parse(text)
        assert parsed == codes.ParsedCode(code, province, True)


def test_issued_codes_round_trip_through_display_and_lower_case() -> None:
    for code in codes.new_codes("44", 200):
        assert codes.parse(codes.display(code)) == codes.ParsedCode(code, "44", True)
        assert codes.parse(code.lower()) == codes.ParsedCode(code, "44", True)
        assert codes.check_character(code[:15]) == code[15]


def test_display_groups_by_four_after_the_province() -> None:
    assert codes.display("33K7MXH2TA9WPRC4") == "33 K7MX H2TA 9WPR C4"


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("33K7MXH2TA9WPRC4", "33K7MXH2TA9WPRC4"),
        ("33 K7MX H2TA 9WPR C4", "33K7MXH2TA9WPRC4"),
        ("33-K7MX-H2TA-9WPR-C4", "33K7MXH2TA9WPRC4"),
        ("33_k7mx.h2ta·9wpr\tc4\n", "33K7MXH2TA9WPRC4"),
        ("  33k7mxh2ta9wprc4  ", "33K7MXH2TA9WPRC4"),
        ("330OAAAAAAAAAAAA", "3300AAAAAAAAAAAA"),  # O -> 0
        ("33oAAAAAAAAAAAAA", "330AAAAAAAAAAAAA"),
        ("3I1LAAAAAAAAAAAA", "3111AAAAAAAAAAAA"),  # I and L -> 1
        ("33il" + "A" * 12, "3311" + "A" * 12),
        ("33BSZ" + "A" * 11, "33852" + "A" * 11),  # B -> 8, S -> 5, Z -> 2
    ],
)
def test_normalize_reads_separators_case_and_look_alikes(typed: str, meant: str) -> None:
    assert codes.normalize(typed) == meant


def test_a_look_alike_typo_of_a_real_code_is_read_as_the_real_code() -> None:
    code = make_code("33", "0001A10AAAAAA")
    typed = code.replace("0", "O").replace("1", "l")
    assert typed != code
    assert codes.parse(typed) == codes.ParsedCode(code, "33", True)


def test_parse_reports_a_bad_check_character_without_raising() -> None:
    code = codes.new_codes("33", 1)[0]
    wrong = code[:-1] + next(char for char in ALPHABET if char != code[-1])
    assert codes.parse(wrong) == codes.ParsedCode(wrong, "33", False)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "has 0 characters; a trace code has 16"),
        ("33K7MXH2TA9WPRC", "has 15 characters; a trace code has 16"),
        ("33K7MXH2TA9WPRC44", "has 17 characters; a trace code has 16"),
        ("33 K7MX H2TA 9WPR C4 5", "has 17 characters; a trace code has 16"),
        ("33K7MXH2TA9WPRU4", "contains characters outside the code alphabet: U"),
        ("33K7MXH2TA9WPR#!", "contains characters outside the code alphabet: !#"),
        ("33K7MXH2TA9WPR中4", "contains characters outside the code alphabet: 中"),
        ("00K7MXH2TA9WPRC4", "does not start with the two digits of a province"),
        ("99K7MXH2TA9WPRC4", "does not start with the two digits of a province"),
        ("AAK7MXH2TA9WPRC4", "does not start with the two digits of a province"),
        ("3AK7MXH2TA9WPRC4", "does not start with the two digits of a province"),
    ],
)
def test_malformed_codes_raise_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(CodeFormatError) as error:
        codes.parse(text)
    assert error.value.reason == reason
    assert str(error.value) == reason
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize("province", ["00", "99", "3", "330", "", "AA", "10"])
def test_new_codes_refuses_a_province_that_does_not_exist(province: str) -> None:
    with pytest.raises(CodeFormatError) as error:
        codes.new_codes(province, 1)
    assert error.value.reason == (
        f"province {province!r} is not two digits of a division code")


def test_new_codes_of_nothing_is_empty() -> None:
    assert codes.new_codes("33", 0) == []


# -- randomness ------------------------------------------------------------------------------


def test_100000_codes_are_unique_valid_and_uniform_in_every_random_position() -> None:
    count = 100_000
    issued = codes.new_codes("51", count)
    assert len(issued) == count
    assert len(set(issued)) == count
    assert all(code[:2] == "51" and len(code) == 16 for code in issued)
    assert all(codes.has_valid_check(code) for code in issued[:10_000])

    expected = count / len(ALPHABET)  # ≈ 3448; one standard deviation ≈ 58
    total_chi_square = 0.0
    for position in range(2, 2 + codes.RANDOM_LENGTH):
        counts = Counter(code[position] for code in issued)
        assert set(counts) == set(ALPHABET), f"position {position} misses characters"
        low, high = min(counts.values()), max(counts.values())
        # ±25% is about 15 standard deviations: never flakes; a character never or rarely
        # drawn cannot hide.
        assert 0.75 * expected <= low and high <= 1.25 * expected, (position, low, high)
        chi_square = sum((n - expected) ** 2 / expected for n in counts.values())
        # 28 degrees of freedom: mean 28, sd 7.5; 150 is 16 standard deviations out.
        assert chi_square < 150, (position, chi_square)
        total_chi_square += chi_square
    # Over the 13 positions: 364 degrees of freedom, mean 364, sd 27; 800 is 16 sd out. The
    # modulo bias of keeping every random byte (24 characters drawn 9/256 of the time, five
    # 8/256) would give about 13 x 210 = 2,700.
    assert total_chi_square < 800, total_chi_square


def test_random_bodies_are_13_alphabet_characters() -> None:
    bodies_drawn = codes.random_bodies(1000)
    assert len(bodies_drawn) == 1000
    assert all(len(body) == 13 and set(body.decode()) <= set(ALPHABET) for body in bodies_drawn)
    assert len(set(bodies_drawn)) == 1000


def test_the_check_character_of_issued_codes_is_uniform_too() -> None:
    issued = codes.new_codes("33", 29_000)
    counts = Counter(code[-1] for code in issued)
    assert set(counts) == set(ALPHABET)
    assert all(750 <= n <= 1250 for n in counts.values()), counts


# -- resolver URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "base",
    [
        "https://trace.agri.example.cn/national",
        "https://trace.agri.example.cn/national/",
        "https://trace.agri.example.cn/national//",
    ],
)
def test_resolver_url_joins_with_exactly_one_slash(base: str) -> None:
    code = "33K7MXH2TA9WPRC4"
    url = codes.resolver_url(base, code)
    assert url == "https://trace.agri.example.cn/national/tc/33K7MXH2TA9WPRC4"
    assert url.count("//") == 1


def test_resolver_url_on_a_bare_host() -> None:
    assert codes.resolver_url("https://t.cn/", "33K7MXH2TA9WPRC4") == (
        "https://t.cn/tc/33K7MXH2TA9WPRC4")
    assert codes.resolver_url("https://t.cn", "33K7MXH2TA9WPRC4") == (
        "https://t.cn/tc/33K7MXH2TA9WPRC4")
