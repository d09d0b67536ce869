"""Statistics: division levels and their children, the rollup of counters, active subjects and
scans over a period in China days, the usage rate, and the request's validation."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from agritrace_kernel.errors import InvalidArgument
from agritrace_query.adapters import orm
from agritrace_query.domain import statistics
from agritrace_query.domain.statistics import Figures, Rollup
from agritrace_registry.domain.divisions import DivisionCatalog
from agritrace_testing.fakes import load_beside

side = load_beside(__file__, "read_side.py", "agritrace_query_unit_read_side")
CATALOG = DivisionCatalog.bundled()
MAY = (date(2024, 5, 1), date(2024, 5, 31))


def test_levels_and_children_follow_the_catalogue() -> None:
    assert statistics.child_length("") == 2
    assert statistics.child_length("33") == 4
    assert statistics.child_length("3301") == 6
    assert statistics.child_length("330106") is None
    provinces = statistics.children(CATALOG, "")
    assert "33" in provinces and "11" in provinces and len(provinces) >= 31
    assert "3301" in statistics.children(CATALOG, "33")
    assert "330106" in statistics.children(CATALOG, "3301")
    assert statistics.children(CATALOG, "330106") == []
    assert statistics.division_name(CATALOG, "") == "全国"
    assert statistics.division_name(CATALOG, "330106") == "浙江省 杭州市 西湖区"


def test_usage_rate() -> None:
    assert Figures(subjects_registered=0, subjects_active=3).usage_rate == 0.0
    assert Figures(subjects_registered=4, subjects_active=1).usage_rate == 0.25


def test_report_sums_children_and_counts_active_subjects_once() -> None:
    rollup = Rollup(registered={"3301": 3, "3302": 1}, active={"3301": 2, "3302": 1},
                    scans={"3301": 5},
                    counters={("3301", "flows"): 4, ("3302", "flows"): 1,
                              ("3399", "codes_issued"): 7})
    report = statistics.report(CATALOG, "33", 2, rollup)
    total = report.total.figures
    assert (total.subjects_registered, total.subjects_active, total.scans) == (4, 2, 5)
    assert total.counter("flows") == 5 and total.counter("codes_issued") == 7
    assert total.usage_rate == 0.5
    by_code = {row.division_code: row for row in report.children}
    assert by_code["3301"].division_name == "浙江省 杭州市"
    assert by_code["3301"].figures.usage_rate == pytest.approx(2 / 3)
    # A division the data names but the catalogue lacks still gets its row.
    assert by_code["3399"].division_name == "" and by_code["3399"].figures.counter(
        "codes_issued") == 7
    assert by_code["3303"].figures == Figures()  # every catalogue child, even idle ones


@pytest.mark.parametrize(("division", "start", "end", "field"), [
    ("330000", *MAY, "division_code"),
    ("99", *MAY, "division_code"),
    ("33", None, MAY[1], "start_date"),
    ("33", MAY[1], MAY[0], "end_date"),
    ("33", date(2023, 1, 1), date(2024, 1, 2), "end_date"),  # 367 days
])
def test_bad_requests_name_their_field(division: str, start: date | None, end: date | None,
                                       field: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        statistics.check_request(CATALOG, division, start, end)
    assert [v.field for v in raised.value.violations] == [field]


model = side.model  # each test on SQLite and on PostgreSQL


def test_figures_from_the_read_model(model: Any) -> None:
    model.subject("A", "330106", registered_at=datetime(2024, 4, 1, tzinfo=UTC))
    model.subject("B", "330102", registered_at=datetime(2024, 5, 2, tzinfo=UTC))
    model.subject("C", "310101", registered_at=datetime(2024, 5, 3, tzinfo=UTC))
    # Registered 2024-05-31 20:00 UTC = 06-01 04:00 China time: after the period.
    model.subject("LATE", "330106", registered_at=datetime(2024, 5, 31, 20, tzinfo=UTC))
    model.insert(orm.daily_counts,
                 {"day": date(2024, 5, 3), "division_code": "330106", "metric": "flows",
                  "count": 2},
                 {"day": date(2024, 5, 4), "division_code": "330106", "metric": "flows",
                  "count": 1},
                 {"day": date(2024, 6, 1), "division_code": "330106", "metric": "flows",
                  "count": 50},
                 {"day": date(2024, 5, 3), "division_code": "330102",
                  "metric": "codes_issued", "count": 10},
                 {"day": date(2024, 5, 3), "division_code": "310101", "metric": "flows",
                  "count": 9})
    model.insert(orm.subject_activity,
                 {"subject_id": "A", "day": date(2024, 5, 3), "division_code": "330106"},
                 {"subject_id": "A", "day": date(2024, 5, 4), "division_code": "330106"},
                 {"subject_id": "B", "day": date(2024, 6, 2), "division_code": "330102"})
    wiring = side.wire(model, real_log=True)
    code = model.codes("B1")[0]
    model.batch("B1", "A", "330106")
    for _ in range(3):
        wiring.service.get_origin_info(side.caller(None), code)
    wiring.sink.flush()
    regulator = side.caller(side.regulator("3301"))
    report = wiring.service.statistics(regulator, "3301", *MAY)
    total = report.total.figures
    assert (total.subjects_registered, total.subjects_active, total.scans) == (2, 1, 3)
    assert total.counter("flows") == 3 and total.counter("codes_issued") == 10
    rows = {row.division_code: row.figures for row in report.children}
    assert rows["330106"].subjects_registered == 1 and rows["330106"].usage_rate == 1.0
    assert rows["330102"].subjects_active == 0 and rows["330102"].usage_rate == 0.0
    nation = wiring.service.statistics(side.caller(side.ADMIN), "", *MAY)
    provinces = {row.division_code: row.figures for row in nation.children}
    assert provinces["31"].counter("flows") == 9
    assert nation.total.figures.subjects_registered == 3
    county = wiring.service.statistics(regulator, "330106", *MAY)
    assert county.children == () and county.total.figures.counter("flows") == 3
    assert county.total.figures.scans == 3
