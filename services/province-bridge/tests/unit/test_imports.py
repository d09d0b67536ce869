"""The historical import over fakes: pages, checkpoint, report, retries, resuming after a
crash, failing for good and resuming."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from agritrace_bridge.domain.imports import Outcome, RunState
from agritrace_bridge.domain.retry import Backoff
from agritrace_bridge.service_layer.imports import HistoricalImport
from agritrace_bridge.service_layer.national import NationalRefused, NationalUnavailable
from agritrace_bridge.service_layer.ports import ContractViolation, PlatformUnavailable
from agritrace_kernel.errors import InvalidArgument, NotFound

NO_WAIT = Backoff(base_seconds=0.0, cap_seconds=0.0)


@pytest.fixture
def registry(fake: Any) -> Any:
    return fake.FakeRegistry()


@pytest.fixture
def province(fake: Any) -> Any:
    # 25 subjects, the last 3 sharing the credit code of the first 3 (merged), #10 invalid.
    subjects = [fake.subject(n) for n in range(1, 23)]
    subjects[9] = fake.subject(10, name="bad 10", kind="INDIVIDUAL_FARMER", credit_code="",
                               resident_id="370102199001011234")
    subjects += [fake.subject(n, credit_code=subjects[n - 23].credit_code)
                 for n in range(23, 26)]
    return fake.FakePlatform(subjects)


@pytest.fixture
def make_import(uow_factory: Callable[[], Any], province: Any, registry: Any, clock: Any,
                fake: Any) -> Callable[..., HistoricalImport]:
    ids = iter(range(1, 1000))

    def make(**options: Any) -> HistoricalImport:
        return HistoricalImport("37", uow_factory, province, registry, page_size=10,
                                backoff=NO_WAIT, clock=clock,
                                new_id=lambda: f"{next(ids):04d}", **options)

    return make


def run(importer: HistoricalImport) -> Any:
    return importer.run_pending(threading.Event())


def test_an_import_pages_through_the_province_and_keeps_a_report(
        make_import: Callable[..., HistoricalImport], registry: Any, database: Any,
        fake: Any) -> None:
    observer = fake.RecordingObserver()
    importer = make_import(observer=observer)
    started = importer.start(None, "first")
    assert started.state is RunState.RUNNING and started.import_id == "import-37-0001"

    done = run(importer)

    assert done.state is RunState.COMPLETED and done.finished_at is not None
    assert (done.pages, done.total_size, done.page_token) == (3, 25, "")
    assert (done.counts.created, done.counts.merged, done.counts.conflict,
            done.counts.rejected) == (21, 3, 0, 1)
    assert [len(ids) for _, ids in registry.pages] == [10, 10, 5]
    assert observer.records == {"import": 25} and observer.retries == []
    names = [event.name for event in database.published]
    assert names == ["import_started", "import_completed"]
    assert database.published[1].payload["merged"] == 3
    report = importer.report(None, "", "", 100)
    assert [o.source_record_id for o in report.outcomes] == [f"37-{n:08d}" for n in
                                                             range(1, 26)]
    rejected = importer.report(None, done.import_id, "", 100, Outcome.REJECTED).outcomes
    assert [(o.source_record_id, o.field) for o in rejected] == [("37-00000010",
                                                                 "resident_id")]


def test_the_report_pages_and_refuses_a_token_of_another_listing(
        make_import: Callable[..., HistoricalImport]) -> None:
    importer = make_import()
    importer.start(None, "r")
    run(importer)
    seen, token = [], ""
    while True:
        page = importer.report(None, "", token, 7)
        seen += [o.source_record_id for o in page.outcomes]
        if not page.next_page_token:
            break
        token = page.next_page_token
    assert len(seen) == len(set(seen)) == 25
    first = importer.report(None, "", "", 7)
    with pytest.raises(InvalidArgument):
        importer.report(None, "", first.next_page_token, 7, Outcome.MERGED)
    with pytest.raises(InvalidArgument):
        importer.report(None, "", "not-a-token", 7)
    with pytest.raises(NotFound):
        importer.report(None, "import-37-9999", "", 7)


def test_outages_on_either_side_are_retried_without_duplicates(
        make_import: Callable[..., HistoricalImport], province: Any, registry: Any,
        fake: Any) -> None:
    observer = fake.RecordingObserver()
    importer = make_import(observer=observer)
    province.failures = [PlatformUnavailable("down", reason="UNAVAILABLE", status=503)]
    registry.failures = [NationalUnavailable("registry: down", reason="UNAVAILABLE"),
                         NationalUnavailable("registry: busy", reason="IMPORT_ALREADY_RUNNING")]
    importer.start(None, "r")

    done = run(importer)

    assert done.state is RunState.COMPLETED and done.counts.total == 25
    assert observer.retries == [("import", "UNAVAILABLE"), ("import", "UNAVAILABLE"),
                                ("import", "IMPORT_ALREADY_RUNNING")]
    assert len(registry.imported) == 25


def test_a_bridge_that_dies_before_storing_an_acknowledged_page_resumes_without_duplicates(
        make_import: Callable[..., HistoricalImport], registry: Any, database: Any) -> None:
    importer = make_import()
    importer.start(None, "r")
    stop = threading.Event()
    # The second page is acknowledged by the registry, then the bridge's commit is lost.
    original = registry.import_page

    def die_after_second_page(*args: Any) -> Any:
        answer = original(*args)
        if len(registry.pages) == 2:
            database.fail_commits = 1
        return answer

    registry.import_page = die_after_second_page
    with pytest.raises(ConnectionError):
        importer.run_pending(stop)
    checkpoint = importer.get()
    assert (checkpoint.pages, checkpoint.counts.total) == (1, 10)

    restarted = make_import()
    done = run(restarted)

    assert done.state is RunState.COMPLETED
    assert done.counts.total == 25 and done.counts.created == 21
    assert [len(ids) for _, ids in registry.pages] == [10, 10, 10, 5]  # page 2 sent twice
    assert len(restarted.report(None, "", "", 100).outcomes) == 25


def test_a_final_error_stops_the_run_and_starting_again_resumes_it(
        make_import: Callable[..., HistoricalImport], province: Any, registry: Any,
        fake: Any) -> None:
    observer = fake.RecordingObserver()
    importer = make_import(observer=observer)
    importer.start(None, "r")
    original = registry.import_page

    def refuse_second(*args: Any) -> Any:
        if len(registry.pages) == 1:
            registry.import_page = original
            raise NationalRefused("registry: no", reason="OUTSIDE_JURISDICTION")
        return original(*args)

    registry.import_page = refuse_second
    failed = run(importer)
    assert failed.state is RunState.FAILED and failed.pages == 1
    assert failed.last_error.startswith("OUTSIDE_JURISDICTION")
    assert observer.failures == [("import", "OUTSIDE_JURISDICTION")]

    resumed = importer.start(None, "again")
    assert resumed.import_id == failed.import_id and resumed.state is RunState.RUNNING
    done = run(importer)
    assert done.state is RunState.COMPLETED and done.counts.total == 25


def test_a_contract_violation_of_the_platform_is_final(
        make_import: Callable[..., HistoricalImport], province: Any) -> None:
    importer = make_import()
    importer.start(None, "r")
    province.failures = [ContractViolation("the token did not move", reason="BAD_PAGE")]
    failed = run(importer)
    assert failed.state is RunState.FAILED and "BAD_PAGE" in failed.last_error


def test_starting_is_idempotent_and_never_runs_two_imports(
        make_import: Callable[..., HistoricalImport]) -> None:
    importer = make_import()
    first = importer.start(None, "a")
    assert importer.start(None, "a") == first
    assert importer.start(None, "b").import_id == first.import_id  # still running: the same run
    run(importer)
    again = importer.start(None, "c")
    assert again.import_id != first.import_id and again.state is RunState.RUNNING
    assert importer.start(None, "a").import_id == first.import_id
    with pytest.raises(InvalidArgument):
        importer.start(None, " ")


def test_personal_data_quoted_by_the_registry_is_not_stored(
        make_import: Callable[..., HistoricalImport], registry: Any) -> None:
    registry.reason_quotes_personal_data = True
    importer = make_import()
    importer.start(None, "r")
    run(importer)
    rejected = importer.report(None, "", "", 10, Outcome.REJECTED).outcomes[0]
    assert "370102199001011234" not in rejected.reason and "***" in rejected.reason


def test_backoff_grows_exponentially_up_to_its_cap_with_jitter() -> None:
    backoff = Backoff(base_seconds=0.5, cap_seconds=10)
    assert [backoff.ceiling(n) for n in (1, 2, 3, 5, 6, 60)] == [0.5, 1, 2, 8, 10, 10]
    assert backoff.delay(3, draw=lambda: 0.5) == 1.0
    assert backoff.delay(3, draw=lambda: 0.0, at_least=1.5) == 1.5
