"""The product classification a batch names its product from (structure after NY/T 3177-2018
《农产品分类与代码》; the codes are the platform's own, see data/README.md).

Codes are numeric and hierarchical, each level a prefix of the next: a top class has 2 digits
(``01`` 种植业产品), a sub-class 4 (``0104`` 蔬菜), a group 6 (``010403`` 茄果类) and a
product 9 (``010403001`` 番茄). Every product sits exactly three levels down, so its category
chain is ``code[:2], code[:4], code[:6]``. Each category also has an English key; a product's
`category_path` joins the keys of its chain: ``PLANT/VEGETABLE/SOLANACEOUS``.

The catalogue is read once from the bundled data/products.json and is immutable.
"""

from __future__ import annotations

import functools
import json
import pathlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from agritrace_flow.domain.model import Unit
from agritrace_kernel.errors import InvalidArgument

__all__ = ["PRODUCT_CODE_FORMAT", "Category", "Product", "ProductCatalog", "ProductKind"]

PRODUCT_CODE_FORMAT = (
    "a product code has 9 digits: class, sub-class and group (2 digits each) and product"
    " (3 digits), e.g. 010403001"
)
_PRODUCT_CODE = re.compile(r"[0-9]{6}(?!000)[0-9]{3}")
_CATEGORY_CODE = re.compile(r"(?:(?!00)[0-9]{2}){1,3}")
_CATEGORY_DEPTHS = 3
_KEY = re.compile(r"[A-Z][A-Z0-9_]*")
_FORMAT_VERSION = 1
_BUNDLED_PATH = pathlib.Path(__file__).resolve().parent / "data" / "products.json"


class ProductKind(StrEnum):
    PLANT = "PLANT"  # 种植业产品
    LIVESTOCK = "LIVESTOCK"  # 畜牧业产品
    FISHERY = "FISHERY"  # 渔业产品


class Category(NamedTuple):
    """A class (depth 1), sub-class (2) or group (3) of products."""

    code: str
    name_zh: str
    name_en: str
    depth: int


@dataclass(frozen=True)
class Product:
    code: str
    name_zh: str
    name_en: str
    kind: ProductKind
    category_codes: tuple[str, ...]  # class, sub-class, group: ("01", "0104", "010403")
    category_path: str  # English keys of the chain: "PLANT/VEGETABLE/SOLANACEOUS"
    default_unit: Unit
    aliases_zh: tuple[str, ...] = ()  # other common names: 西红柿 for 番茄

    def __post_init__(self) -> None:
        if not _PRODUCT_CODE.fullmatch(self.code):
            raise ValueError(f"{PRODUCT_CODE_FORMAT}: {self.code!r}")
        chain = tuple(self.code[:length] for length in (2, 4, 6))
        if self.category_codes != chain:
            raise ValueError(f"product {self.code} has category codes {self.category_codes}")
        if not self.name_zh or not self.name_en:
            raise ValueError(f"product {self.code} needs a Chinese and an English name")


class ProductCatalog:
    """An immutable, in-memory catalogue of product categories and products."""

    def __init__(
        self,
        categories: Iterable[Category],
        products: Iterable[Product],
        kinds: Mapping[str, ProductKind],
    ) -> None:
        """`kinds` maps each top-class code to the kind of every product under it."""
        self._categories: dict[str, Category] = {}
        for category in categories:
            if (
                not _CATEGORY_CODE.fullmatch(category.code)
                or category.depth != len(category.code) // 2
            ):
                raise ValueError(f"malformed category {category}")
            if category.code in self._categories:
                raise ValueError(f"duplicate category code {category.code}")
            if category.depth > 1 and category.code[:-2] not in self._categories:
                raise ValueError(f"category {category.code} comes before its parent or has none")
            self._categories[category.code] = category
        tops = {code for code, category in self._categories.items() if category.depth == 1}
        if set(kinds) != tops:
            raise ValueError(f"kinds are given for {sorted(kinds)}, top classes are {sorted(tops)}")
        self._products: dict[str, Product] = {}
        for product in products:
            if product.code in self._products or product.code in self._categories:
                raise ValueError(f"duplicate product code {product.code}")
            missing = [code for code in product.category_codes if code not in self._categories]
            if missing:
                raise ValueError(f"product {product.code} is in unknown categories {missing}")
            if product.kind is not kinds[product.code[:2]]:
                raise ValueError(
                    f"product {product.code} is {product.kind}, its class is"
                    f" {kinds[product.code[:2]]}"
                )
            self._products[product.code] = product
        self._products = dict(sorted(self._products.items()))

    # ---- loading -------------------------------------------------------------------------

    @classmethod
    def from_json(cls, path: pathlib.Path) -> ProductCatalog:
        """Read a products.json (the format of the bundled one, see data/README.md)."""
        with path.open(encoding="utf-8") as handle:
            document = json.load(handle)
        return _parse(document)

    @classmethod
    def bundled(cls) -> ProductCatalog:
        """The catalogue shipped with the package, loaded once per process."""
        return _load_bundled()

    # ---- lookups -------------------------------------------------------------------------

    def get(self, code: str) -> Product | None:
        """The product with this 9-digit code, or None (also for category codes)."""
        return self._products.get(code.strip())

    def require(self, code: str, field_path: str) -> Product:
        """The product with this code, else `InvalidArgument` on `field_path`."""
        code = code.strip()
        product = self._products.get(code)
        if product is not None:
            return product
        category = self._categories.get(code)
        if category is not None:
            raise InvalidArgument.of(
                field_path,
                f"{code} is the category {category.name_zh} ({category.name_en}), not a"
                f" product; {PRODUCT_CODE_FORMAT}",
            )
        if _PRODUCT_CODE.fullmatch(code):
            raise InvalidArgument.of(
                field_path, f"unknown product code {code} ({PRODUCT_CODE_FORMAT})"
            )
        raise InvalidArgument.of(field_path, f"is not a product code; {PRODUCT_CODE_FORMAT}")

    def under(self, category_code: str) -> list[Product]:
        """All products in this class, sub-class or group, in code order; [] if `category_code`
        is not a category."""
        code = category_code.strip()
        if code not in self._categories:
            return []
        return [product for product in self._products.values() if code in product.category_codes]

    def category(self, code: str) -> Category | None:
        """The class, sub-class or group with this 2-, 4- or 6-digit code, or None."""
        return self._categories.get(code.strip())

    def categories(self) -> list[Category]:
        """Every class, sub-class and group, in code order (each parent before its children)."""
        return [self._categories[code] for code in sorted(self._categories)]

    def products(self) -> list[Product]:
        """Every product, in code order."""
        return list(self._products.values())

    def __len__(self) -> int:
        return len(self._products)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and code.strip() in self._products


# ---- the JSON format ----------------------------------------------------------------------


def _parse(document: Any) -> ProductCatalog:
    """Build a catalogue from a parsed products.json, checking what the JSON repeats (each
    product's kind, category codes and key path) against its code and its categories."""
    if not isinstance(document, dict) or document.get("format") != _FORMAT_VERSION:
        raise ValueError(f"products data must be an object with format {_FORMAT_VERSION}")
    categories: list[Category] = []
    keys: dict[str, str] = {}
    kinds: dict[str, ProductKind] = {}
    for entry in _list(document, "categories"):
        code = _text(entry, "code")
        key = _text(entry, "key")
        if not _KEY.fullmatch(key):
            raise ValueError(f"category {code} has a malformed key {key!r}")
        categories.append(
            Category(code, _text(entry, "name_zh"), _text(entry, "name_en"), len(code) // 2)
        )
        keys[code] = key
        if len(code) == 2:
            kinds[code] = ProductKind(_text(entry, "kind"))
            if key != kinds[code].value:
                raise ValueError(f"top class {code} has key {key}, kind {kinds[code]}")
    products: list[Product] = []
    for entry in _list(document, "products"):
        code = _text(entry, "code")
        chain = tuple(_strings(entry, "category_codes"))
        path = "/".join(keys.get(part, "?") for part in chain)
        if len(chain) != _CATEGORY_DEPTHS or path != _text(entry, "category_path"):
            raise ValueError(f"product {code}: category_path does not match category_codes")
        unit = entry.get("default_unit", Unit.KG.value)
        if not isinstance(unit, str) or unit not in Unit.__members__:
            raise ValueError(f"product {code} has an unknown default_unit {unit!r}")
        products.append(
            Product(
                code=code,
                name_zh=_text(entry, "name_zh"),
                name_en=_text(entry, "name_en"),
                kind=ProductKind(_text(entry, "kind")),
                category_codes=chain,
                category_path=path,
                default_unit=Unit(unit),
                aliases_zh=tuple(_strings(entry, "aliases_zh", required=False)),
            )
        )
    return ProductCatalog(categories, products, kinds)


def _list(document: dict[str, Any], field: str) -> list[dict[str, Any]]:
    value = document.get(field)
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError(f"products data: {field} must be a list of objects")
    return value


def _text(entry: dict[str, Any], field: str) -> str:
    value = entry.get(field)
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise ValueError(f"products data: {field} must be a non-empty trimmed string: {entry}")
    return value


def _strings(entry: dict[str, Any], field: str, *, required: bool = True) -> list[str]:
    value = entry.get(field, None if required else [])
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"products data: {field} must be a list of strings: {entry}")
    return value


@functools.cache
def _load_bundled() -> ProductCatalog:
    return ProductCatalog.from_json(_BUNDLED_PATH)
