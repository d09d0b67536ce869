"""The administrative division catalogue (GB/T 2260 style codes) used to validate where a
subject is located.

Codes: a province has 2 digits (``33``), a prefecture-level city 4 (``3301``), a county-level
division 6 (``330106``). The 6-digit forms ``330000`` and ``330100`` are read as the province
and the city. A few cities have no counties (东莞 ``441900``, 中山 ``442000``, 儋州 ``460400``)
and appear in areas.csv as their own county-level unit; those 6-digit codes are county-level
even though they end in ``00``. Level always comes from the file a row was read from, never
from the shape of the code.

The bundled data (agritrace_registry/data/divisions) is the NBS 2023 list plus a short
hand-made list of retired county-level codes; see its SOURCE.md.
"""

from __future__ import annotations

import csv
import functools
import pathlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from agritrace_registry.domain.identifiers import IdentifierError

__all__ = ["Division", "DivisionCatalog", "DivisionLevel", "RetiredDivision"]

DivisionLevel = Literal["province", "city", "county"]

_CODE_LENGTH: dict[DivisionLevel, int] = {"province": 2, "city": 4, "county": 6}
_DIGITS = frozenset("0123456789")
# Names of the grouping rows of cities.csv that are not real cities; a name path skips them.
_PLACEHOLDER_CITY_NAMES = frozenset(
    {"市辖区", "县", "省直辖县级行政区划", "自治区直辖县级行政区划"}
)
_BUNDLED_DIR = pathlib.Path(__file__).resolve().parent.parent / "data" / "divisions"


def _is_digits(text: str, length: int) -> bool:
    return len(text) == length and all(ch in _DIGITS for ch in text)


@dataclass(frozen=True)
class Division:
    code: str
    name: str
    level: DivisionLevel

    def __post_init__(self) -> None:
        if not _is_digits(self.code, _CODE_LENGTH[self.level]):
            raise ValueError(
                f"a {self.level} code has {_CODE_LENGTH[self.level]} digits: {self.code!r}"
            )


@dataclass(frozen=True)
class RetiredDivision:
    """A county-level code that no longer exists; `successor` is the code that took it over."""

    code: str
    name: str
    successor: str
    retired_in: int

    def __post_init__(self) -> None:
        if not (_is_digits(self.code, 6) and _is_digits(self.successor, 6)):
            raise ValueError(f"retired division codes have 6 digits: {self.code!r}")


class DivisionCatalog:
    """An immutable, in-memory catalogue of divisions and retired county-level codes."""

    def __init__(
        self, divisions: Iterable[Division], retired: Iterable[RetiredDivision] = ()
    ) -> None:
        self._divisions: dict[str, Division] = {}
        for division in divisions:
            if division.code in self._divisions:
                raise ValueError(f"duplicate division code {division.code}")
            self._divisions[division.code] = division
        self._retired: dict[str, RetiredDivision] = {}
        for entry in retired:
            if entry.code in self._divisions or entry.code in self._retired:
                raise ValueError(f"retired code {entry.code} is also current or listed twice")
            self._retired[entry.code] = entry

    # ---- loading -------------------------------------------------------------------------

    @classmethod
    def from_csv_dir(cls, path: pathlib.Path) -> DivisionCatalog:
        """Read provinces.csv (code,name), cities.csv (code,name,...), areas.csv
        (code,name,...) and, if present, retired.csv (code,name,successor,retired_in)."""
        divisions: list[Division] = []
        files: tuple[tuple[str, DivisionLevel], ...] = (
            ("provinces.csv", "province"),
            ("cities.csv", "city"),
            ("areas.csv", "county"),
        )
        for filename, level in files:
            divisions.extend(
                Division(code=row["code"].strip(), name=row["name"].strip(), level=level)
                for row in _read_csv(path / filename)
            )
        retired_path = path / "retired.csv"
        retired = (
            [
                RetiredDivision(
                    code=row["code"].strip(),
                    name=row["name"].strip(),
                    successor=row["successor"].strip(),
                    retired_in=int(row["retired_in"]),
                )
                for row in _read_csv(retired_path)
            ]
            if retired_path.exists()
            else []
        )
        return cls(divisions, retired)

    @classmethod
    def bundled(cls) -> DivisionCatalog:
        """The catalogue shipped with the package, loaded once per process."""
        return _load_bundled()

    # ---- lookups -------------------------------------------------------------------------

    def get(self, code: str) -> Division | None:
        """The division with this 2-, 4- or 6-digit code, or None. A 6-digit code that is not
        a county-level division but ends in 0000 / 00 is read as the province / city."""
        code = code.strip()
        found = self._divisions.get(code)
        if found is not None or not _is_digits(code, 6):
            return found
        if code.endswith("0000"):
            return self._divisions.get(code[:2])
        if code.endswith("00"):
            return self._divisions.get(code[:4])
        return None

    def retired(self, code: str) -> RetiredDivision | None:
        """The retired county-level code, or None."""
        return self._retired.get(code.strip())

    def require_county(self, code: str, field: str = "division_code") -> Division:
        """The current county-level division with this 6-digit code, else `IdentifierError`."""
        code = code.strip()
        if not _is_digits(code, 6):
            raise IdentifierError(field, "a division code has 6 digits, e.g. 330106")
        division = self._divisions.get(code)
        if division is not None:
            return division  # only areas.csv rows have 6-digit codes
        retired = self._retired.get(code)
        if retired is not None:
            successor = self._current_successor(retired)
            now = f"{successor.code} {successor.name}" if successor else retired.successor
            raise IdentifierError(
                field,
                f"division code {code} ({retired.name}) was retired in {retired.retired_in},"
                f" now {now}",
            )
        broader = self.get(code)
        if broader is not None:
            raise IdentifierError(
                field,
                f"{code} is the {broader.level}-level code of {self.name_path(broader.code)};"
                " a county-level division code (district, county or county-level city) is"
                " required",
            )
        raise IdentifierError(field, f"unknown division code {code}")

    def province_of(self, code: str) -> Division:
        """The province a known (current) division belongs to."""
        division = self._known(code)
        return self._divisions[division.code[:2]]

    def is_valid_prefix(self, prefix: str) -> bool:
        """Whether `prefix` is "" or the 2-, 4- or 6-digit code of an existing province, city
        or county-level division (the prefixes that select divisions by code)."""
        if prefix == "":
            return True
        if len(prefix) not in (2, 4, 6) or not _is_digits(prefix, len(prefix)):
            return False
        return prefix in self._divisions

    def name_path(self, code: str) -> str:
        """Names from province down, space separated: "浙江省 杭州市 西湖区". Grouping rows
        such as 市辖区 are skipped, and a county-level unit named like its city (东莞市) is
        not repeated."""
        division = self._known(code)
        names: list[str] = []
        for length in (2, 4, 6):
            if len(division.code) < length:
                break
            part = self._divisions.get(division.code[:length])
            if part is None or part.name in _PLACEHOLDER_CITY_NAMES:
                continue
            if not names or names[-1] != part.name:
                names.append(part.name)
        return " ".join(names)

    def __iter__(self) -> Iterator[Division]:
        return iter(self._divisions.values())

    def __len__(self) -> int:
        return len(self._divisions)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and self.get(code) is not None

    # ---- helpers -------------------------------------------------------------------------

    def _known(self, code: str) -> Division:
        division = self.get(code)
        if division is None:
            raise IdentifierError("division_code", f"unknown division code {code.strip()}")
        return division

    def _current_successor(self, retired: RetiredDivision) -> Division | None:
        """Follow successors through later retirements to the current division, if any."""
        seen = {retired.code}
        code = retired.successor
        while code in self._retired and code not in seen:
            seen.add(code)
            code = self._retired[code].successor
        return self._divisions.get(code)


def _read_csv(path: pathlib.Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


@functools.cache
def _load_bundled() -> DivisionCatalog:
    return DivisionCatalog.from_csv_dir(_BUNDLED_DIR)
