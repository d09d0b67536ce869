"""Statistics of a division over a period (the plan's big-data centre): the division and each
of its children one level down (nation → provinces → cities → counties), the counters summed
over division-code prefixes, and the usage rate the plan puts into performance evaluation
(active subjects / registered subjects).

Days are China days (UTC+8): a period is start 00:00 to the day after end 00:00, +08:00.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from agritrace_kernel.errors import ViolationCollector
from agritrace_registry.domain.divisions import DivisionCatalog

CHINA = timezone(timedelta(hours=8))
NATION_NAME = "全国"
MAX_PERIOD_DAYS = 366
# The daily counters the projections keep (daily_counts.metric), in report order.
COUNTERS = ("codes_issued", "codes_activated", "flows", "cross_province_out",
            "cross_province_in", "market_entries", "market_refusals")
_CHILD_LENGTH = {0: 2, 2: 4, 4: 6}


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # inclusive

    @property
    def start_time(self) -> datetime:
        return datetime.combine(self.start, time(), CHINA)

    @property
    def end_time(self) -> datetime:
        """The first moment after the period."""
        return datetime.combine(self.end + timedelta(days=1), time(), CHINA)


def child_length(division_code: str) -> int | None:
    """The code length of a division's children; None for a county (no children)."""
    return _CHILD_LENGTH.get(len(division_code))


def check_request(catalog: DivisionCatalog, division_code: str, start: date | None,
                  end: date | None) -> Period:
    """The period asked, or INVALID_ARGUMENT naming every bad field."""
    problems = ViolationCollector()
    if not catalog.is_valid_prefix(division_code):
        problems.add("division_code", "must be empty (the nation) or the 2-, 4- or 6-digit "
                                      "code of a province, city or county")
    if start is None:
        problems.add("start_date", "is required (a valid date)")
    if end is None:
        problems.add("end_date", "is required (a valid date)")
    if start is not None and end is not None:
        if end < start:
            problems.add("end_date", "must not be before start_date")
        elif (end - start).days >= MAX_PERIOD_DAYS:
            problems.add("end_date", f"the period may span at most {MAX_PERIOD_DAYS} days")
    problems.raise_if_any()
    assert start is not None and end is not None
    return Period(start, end)


def division_name(catalog: DivisionCatalog, division_code: str) -> str:
    if division_code == "":
        return NATION_NAME
    return catalog.name_path(division_code) if division_code in catalog else ""


def children(catalog: DivisionCatalog, division_code: str) -> list[str]:
    """The catalogue's divisions one level below `division_code`, by code."""
    length = child_length(division_code)
    if length is None:
        return []
    return sorted(division.code for division in catalog
                  if len(division.code) == length and division.code.startswith(division_code))


@dataclass
class Figures:
    subjects_registered: int = 0
    subjects_active: int = 0
    scans: int = 0
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def usage_rate(self) -> float:
        if self.subjects_registered <= 0:
            return 0.0
        return self.subjects_active / self.subjects_registered

    def counter(self, metric: str) -> int:
        return self.counters.get(metric, 0)


@dataclass(frozen=True)
class DivisionFigures:
    division_code: str
    division_name: str
    figures: Figures


@dataclass(frozen=True)
class Report:
    total: DivisionFigures
    children: tuple[DivisionFigures, ...]


@dataclass
class Rollup:
    """Figures grouped by child division code, as the read model returns them."""

    registered: Mapping[str, int] = field(default_factory=dict)
    active: Mapping[str, int] = field(default_factory=dict)
    scans: Mapping[str, int] = field(default_factory=dict)
    counters: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (child, metric)

    def child_codes(self) -> set[str]:
        codes = set(self.registered) | set(self.active) | set(self.scans)
        codes.update(child for child, _ in self.counters)
        return codes

    def figures(self, code: str) -> Figures:
        return Figures(
            subjects_registered=self.registered.get(code, 0),
            subjects_active=self.active.get(code, 0), scans=self.scans.get(code, 0),
            counters={metric: count for (child, metric), count in self.counters.items()
                      if child == code})


def report(catalog: DivisionCatalog, division_code: str, total_active: int,
           rollup: Rollup) -> Report:
    """The division's figures (sums of its children's, except active subjects, counted
    distinct over the whole division) and one row per child: every child of the catalogue,
    plus any the data names that the catalogue lacks (e.g. a retired county)."""
    codes = set(children(catalog, division_code)) | rollup.child_codes()
    if child_length(division_code) is None:
        codes = set()
    rows = tuple(DivisionFigures(code, division_name(catalog, code), rollup.figures(code))
                 for code in sorted(codes))
    source: Iterable[Figures] = ([row.figures for row in rows] if rows
                                 else [rollup.figures(division_code)])
    total = Figures(subjects_active=total_active)
    for figures in source:
        total.subjects_registered += figures.subjects_registered
        total.scans += figures.scans
        for metric, count in figures.counters.items():
            total.counters[metric] = total.counters.get(metric, 0) + count
    return Report(DivisionFigures(division_code, division_name(catalog, division_code), total),
                  rows)
