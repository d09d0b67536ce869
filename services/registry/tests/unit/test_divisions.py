"""Unit tests for agritrace_registry.domain.divisions."""

from __future__ import annotations

import csv
import pathlib

import pytest

from agritrace_registry.domain.divisions import Division, DivisionCatalog, RetiredDivision
from agritrace_registry.domain.identifiers import PROVINCE_CODES, IdentifierError

DATA_DIR = pathlib.Path(__file__).resolve().parents[2] / "agritrace_registry" / "data" / "divisions"


@pytest.fixture(scope="module")
def catalog() -> DivisionCatalog:
    return DivisionCatalog.bundled()


def _small_catalog() -> DivisionCatalog:
    return DivisionCatalog(
        [
            Division("33", "浙江省", "province"),
            Division("3301", "杭州市", "city"),
            Division("330106", "西湖区", "county"),
            Division("330105", "拱墅区", "county"),
        ],
        [
            RetiredDivision("330103", "下城区", "330105", 2021),
            RetiredDivision("330199", "某旧区", "330103", 2001),  # retired into a retired code
        ],
    )


# ---- bundled data ---------------------------------------------------------------------------


def test_bundled_is_cached_and_complete(catalog: DivisionCatalog) -> None:
    assert DivisionCatalog.bundled() is catalog
    levels = [division.level for division in catalog]
    assert levels.count("province") == 31
    assert levels.count("city") > 300
    assert levels.count("county") > 2900


def test_bundled_provinces_match_identifier_province_codes(catalog: DivisionCatalog) -> None:
    provinces = {division.code for division in catalog if division.level == "province"}
    assert provinces == PROVINCE_CODES


def test_retired_list_is_consistent_with_areas() -> None:
    with (DATA_DIR / "areas.csv").open(encoding="utf-8") as handle:
        areas = {row["code"] for row in csv.DictReader(handle)}
    with (DATA_DIR / "retired.csv").open(encoding="utf-8") as handle:
        retired = list(csv.DictReader(handle))
    assert 5 <= len(retired) <= 10
    for row in retired:
        assert row["code"] not in areas, row
        assert row["successor"] in areas, row
        assert 2000 <= int(row["retired_in"]) <= 2023


def test_from_csv_dir_reads_the_same_data(catalog: DivisionCatalog) -> None:
    fresh = DivisionCatalog.from_csv_dir(DATA_DIR)
    assert fresh is not catalog
    assert list(fresh) == list(catalog)
    assert fresh.retired("110103") == catalog.retired("110103")


def test_from_csv_dir_without_retired_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "provinces.csv").write_text('code,name\n33,"浙江省"\n', encoding="utf-8")
    (tmp_path / "cities.csv").write_text(
        'code,name,provinceCode\n3301,"杭州市",33\n', encoding="utf-8"
    )
    (tmp_path / "areas.csv").write_text(
        'code,name,cityCode,provinceCode\n330106,"西湖区",3301,33\n', encoding="utf-8-sig"
    )
    small = DivisionCatalog.from_csv_dir(tmp_path)
    assert small.require_county("330106") == Division("330106", "西湖区", "county")
    assert small.retired("110103") is None


def test_constructor_refuses_inconsistent_input() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        DivisionCatalog([Division("33", "浙江省", "province")] * 2)
    with pytest.raises(ValueError, match="also current"):
        DivisionCatalog(
            [Division("330106", "西湖区", "county")],
            [RetiredDivision("330106", "西湖区", "330105", 2021)],
        )
    with pytest.raises(ValueError):
        Division("3301", "杭州市", "county")


# ---- require_county -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("330106", "西湖区"),
        ("110105", "朝阳区"),
        ("330782", "义乌市"),  # county-level city
        ("469023", "澄迈县"),  # county directly under the province (4690)
        ("500243", "彭水苗族土家族自治县"),
        ("441900", "东莞市"),  # city without counties: county-level row ending in 00
        ("442000", "中山市"),
        ("460400", "儋州市"),
        (" 330106 ", "西湖区"),
    ],
)
def test_county_ok(catalog: DivisionCatalog, code: str, name: str) -> None:
    division = catalog.require_county(code)
    assert division == Division(code.strip(), name, "county")


@pytest.mark.parametrize(
    ("code", "successor"),
    [
        ("110103", "110101 东城区"),
        ("110104", "110102 西城区"),
        ("310103", "310101 黄浦区"),
        ("310108", "310106 静安区"),
        ("330103", "330105 拱墅区"),
    ],
)
def test_retired_code_names_its_successor(
    catalog: DivisionCatalog, code: str, successor: str
) -> None:
    with pytest.raises(IdentifierError) as info:
        catalog.require_county(code, field="subject.division_code")
    error = info.value
    assert error.field == "subject.division_code"
    assert "retired in" in error.reason
    assert successor in error.reason


def test_retired_code_message_has_year_and_old_name(catalog: DivisionCatalog) -> None:
    with pytest.raises(IdentifierError) as info:
        catalog.require_county("110103")
    expected = "division code 110103 (崇文区) was retired in 2010, now 110101 东城区"
    assert info.value.reason == expected


def test_retired_chain_points_to_the_current_division() -> None:
    with pytest.raises(IdentifierError, match="now 330105 拱墅区"):
        _small_catalog().require_county("330199")


@pytest.mark.parametrize("code", ["330199", "999999", "110199", "339901"])
def test_unknown_code(catalog: DivisionCatalog, code: str) -> None:
    with pytest.raises(IdentifierError) as info:
        catalog.require_county(code)
    assert info.value.field == "division_code"
    assert "unknown" in info.value.reason


@pytest.mark.parametrize(
    ("code", "level", "path"),
    [
        ("330100", "city", "浙江省 杭州市"),
        ("330000", "province", "浙江省"),
        ("110100", "city", "北京市"),
        ("440300", "city", "广东省 深圳市"),
    ],
)
def test_city_and_province_level_codes_refused(
    catalog: DivisionCatalog, code: str, level: str, path: str
) -> None:
    with pytest.raises(IdentifierError) as info:
        catalog.require_county(code)
    assert f"{level}-level" in info.value.reason
    assert path in info.value.reason
    assert "county-level" in info.value.reason


@pytest.mark.parametrize("code", ["", "33", "3301", "33010", "3301066", "33O106", "３３０１０６x"])
def test_not_six_digits(catalog: DivisionCatalog, code: str) -> None:
    with pytest.raises(IdentifierError) as info:
        catalog.require_county(code, field="division_code")
    assert "6 digits" in info.value.reason


# ---- get / province_of / prefixes / name paths ----------------------------------------------


def test_get(catalog: DivisionCatalog) -> None:
    assert catalog.get("33") == Division("33", "浙江省", "province")
    assert catalog.get("3301") == Division("3301", "杭州市", "city")
    assert catalog.get("330106") == Division("330106", "西湖区", "county")
    assert catalog.get("330100") == Division("3301", "杭州市", "city")
    assert catalog.get("330000") == Division("33", "浙江省", "province")
    assert catalog.get("441900") == Division("441900", "东莞市", "county")
    assert catalog.get("110103") is None  # retired
    assert catalog.get("99") is None
    assert catalog.get("abc") is None
    assert "330106" in catalog
    assert "110103" not in catalog


def test_province_of(catalog: DivisionCatalog) -> None:
    zhejiang = Division("33", "浙江省", "province")
    assert catalog.province_of("330106") == zhejiang
    assert catalog.province_of("3301") == zhejiang
    assert catalog.province_of("33") == zhejiang
    assert catalog.province_of("469023").name == "海南省"
    with pytest.raises(IdentifierError):
        catalog.province_of("110103")


@pytest.mark.parametrize(
    ("prefix", "valid"),
    [
        ("", True),
        ("33", True),
        ("3301", True),
        ("330106", True),
        ("4419", True),
        ("441900", True),
        ("99", False),
        ("3", False),
        ("330", False),
        ("3399", False),
        ("330199", False),
        ("110103", False),  # retired
        ("330100", False),  # a 6-digit prefix must be a county-level code
        ("3301061", False),
        ("ab", False),
        ("３３", False),
    ],
)
def test_is_valid_prefix(catalog: DivisionCatalog, prefix: str, valid: bool) -> None:
    assert catalog.is_valid_prefix(prefix) is valid


@pytest.mark.parametrize(
    ("code", "path"),
    [
        ("330106", "浙江省 杭州市 西湖区"),
        ("3301", "浙江省 杭州市"),
        ("33", "浙江省"),
        ("330100", "浙江省 杭州市"),
        ("110105", "北京市 朝阳区"),  # 市辖区 skipped
        ("500243", "重庆市 彭水苗族土家族自治县"),  # 县 skipped
        ("469023", "海南省 澄迈县"),  # 省直辖县级行政区划 skipped
        ("441900", "广东省 东莞市"),  # not repeated
        ("650102", "新疆维吾尔自治区 乌鲁木齐市 天山区"),
    ],
)
def test_name_path(catalog: DivisionCatalog, code: str, path: str) -> None:
    assert catalog.name_path(code) == path


def test_name_path_unknown(catalog: DivisionCatalog) -> None:
    with pytest.raises(IdentifierError, match="unknown division code 999999"):
        catalog.name_path("999999")
