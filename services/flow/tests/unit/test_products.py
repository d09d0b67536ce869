"""Unit tests for agritrace_flow.domain.products and its bundled data."""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from agritrace_flow.domain.model import Unit
from agritrace_flow.domain.products import Product, ProductCatalog, ProductKind
from agritrace_kernel.errors import InvalidArgument

DATA_PATH = (
    pathlib.Path(__file__).resolve().parents[2]
    / "agritrace_flow" / "domain" / "data" / "products.json"
)


@pytest.fixture(scope="module")
def catalog() -> ProductCatalog:
    return ProductCatalog.bundled()


# ---- bundled data ---------------------------------------------------------------------------


def test_bundled_is_cached_and_sized(catalog: ProductCatalog) -> None:
    assert ProductCatalog.bundled() is catalog
    assert 150 <= len(catalog) <= 250
    counts = {kind: 0 for kind in ProductKind}
    for product in catalog.products():
        counts[product.kind] += 1
    assert all(count >= 30 for count in counts.values()), counts


def test_from_json_reads_the_same_data(catalog: ProductCatalog) -> None:
    fresh = ProductCatalog.from_json(DATA_PATH)
    assert fresh is not catalog
    assert fresh.products() == catalog.products()
    assert fresh.categories() == catalog.categories()


def test_codes_are_unique_and_well_formed() -> None:
    document = json.loads(DATA_PATH.read_text(encoding="utf-8"))
    category_codes = [entry["code"] for entry in document["categories"]]
    product_codes = [entry["code"] for entry in document["products"]]
    codes = category_codes + product_codes
    assert len(codes) == len(set(codes))
    assert all(re.fullmatch(r"(?:(?!00)\d{2}){1,3}", code) for code in category_codes)
    assert all(re.fullmatch(r"(?:(?!00)\d{2}){3}(?!000)\d{3}", code) for code in product_codes)


def test_every_category_chain_exists(catalog: ProductCatalog) -> None:
    for category in catalog.categories():
        assert len(category.code) == 2 * category.depth
        if category.depth > 1:
            assert catalog.category(category.code[:-2]) is not None, category
    for product in catalog.products():
        assert product.category_codes == (product.code[:2], product.code[:4], product.code[:6])
        chain = [catalog.category(code) for code in product.category_codes]
        assert [c.depth if c else None for c in chain] == [1, 2, 3], product
        # every group has products; no empty leaves in the tree
    groups = {c.code for c in catalog.categories() if c.depth == 3}
    assert groups == {p.category_codes[2] for p in catalog.products()}


def test_kinds_match_the_top_class(catalog: ProductCatalog) -> None:
    tops = {c.code: c for c in catalog.categories() if c.depth == 1}
    assert {code: c.name_zh for code, c in tops.items()} == {
        "01": "种植业产品", "02": "畜牧业产品", "03": "渔业产品"
    }
    expected = {"01": ProductKind.PLANT, "02": ProductKind.LIVESTOCK, "03": ProductKind.FISHERY}
    for product in catalog.products():
        assert product.kind is expected[product.code[:2]], product
        assert product.category_path.split("/")[0] == product.kind.value


def test_live_animals_count_by_head_and_the_rest_by_weight(catalog: ProductCatalog) -> None:
    live = {product.code for product in catalog.under("0201")}
    assert live
    for product in catalog.products():
        assert product.default_unit is (Unit.HEAD if product.code in live else Unit.KG), product


# ---- lookups --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "name_zh", "name_en", "kind", "path"),
    [
        ("010403001", "番茄", "Tomato", ProductKind.PLANT, "PLANT/VEGETABLE/SOLANACEOUS"),
        ("020201001", "猪肉", "Pork", ProductKind.LIVESTOCK, "LIVESTOCK/ANIMAL_PRODUCT/MEAT"),
        ("030101001", "草鱼", "Grass carp", ProductKind.FISHERY, "FISHERY/FISH/FRESHWATER"),
    ],
)
def test_known_products_resolve(
    catalog: ProductCatalog,
    code: str,
    name_zh: str,
    name_en: str,
    kind: ProductKind,
    path: str,
) -> None:
    product = catalog.get(code)
    assert product is not None
    assert (product.name_zh, product.name_en, product.kind) == (name_zh, name_en, kind)
    assert product.category_path == path
    assert product.category_codes == (code[:2], code[:4], code[:6])
    assert catalog.get(f" {code} ") == product
    assert catalog.require(code, "batch.product_code") == product


def test_category_names(catalog: ProductCatalog) -> None:
    tomato = catalog.get("010403001")
    assert tomato is not None
    names = [catalog.category(code) for code in tomato.category_codes]
    assert [(c.name_zh, c.depth) if c else None for c in names] == [
        ("种植业产品", 1), ("蔬菜", 2), ("茄果类", 3)
    ]


def test_get_is_none_for_unknown_and_category_codes(catalog: ProductCatalog) -> None:
    assert catalog.get("010403999") is None
    assert catalog.get("0104") is None
    assert catalog.get("") is None


def test_under_a_sub_class_and_a_group(catalog: ProductCatalog) -> None:
    vegetables = catalog.under("0104")
    names = {product.name_zh for product in vegetables}
    assert {"番茄", "黄瓜", "大白菜", "香菇"} <= names
    assert "苹果" not in names
    assert all(p.category_path.startswith("PLANT/VEGETABLE/") for p in vegetables)
    assert [p.code for p in vegetables] == sorted(p.code for p in vegetables)
    solanaceous = catalog.under("010403")
    assert {p.name_zh for p in solanaceous} >= {"番茄", "茄子", "辣椒"}
    assert set(solanaceous) < set(vegetables)
    assert len(catalog.under("01")) + len(catalog.under("02")) + len(catalog.under("03")) == len(
        catalog
    )


def test_under_is_empty_for_what_is_not_a_category(catalog: ProductCatalog) -> None:
    assert catalog.under("0199") == []
    assert catalog.under("010403001") == []


def test_categories_are_listed_parent_first(catalog: ProductCatalog) -> None:
    categories = catalog.categories()
    assert categories[0] == ("01", "种植业产品", "Plant products", 1)
    seen: set[str] = set()
    for code, _name_zh, _name_en, depth in categories:
        assert depth == 1 or code[:-2] in seen
        seen.add(code)


# ---- require --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("010403999", "unknown product code 010403999"),
        ("0104", "0104 is the category 蔬菜"),
        ("tomato", "is not a product code"),
        ("", "is not a product code"),
    ],
)
def test_require_names_the_field_and_the_code_format(
    catalog: ProductCatalog, code: str, fragment: str
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        catalog.require(code, "batch.product_code")
    [violation] = raised.value.violations
    assert violation.field == "batch.product_code"
    assert fragment in violation.description
    assert "9 digits" in violation.description


def test_product_rejects_a_code_outside_its_chain() -> None:
    with pytest.raises(ValueError, match="category codes"):
        Product(
            "010403001", "番茄", "Tomato", ProductKind.PLANT, ("01", "0104", "010402"),
            "PLANT/VEGETABLE/BRASSICA", Unit.KG,
        )
