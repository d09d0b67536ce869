"""SubjectImporter (and the duplicate check that follows imports) against the in-memory fakes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from agritrace_kernel.errors import AlreadyExists, ConcurrencyConflict, InvalidArgument
from agritrace_kernel.events.model import Event
from agritrace_registry.domain.identifiers import new_subject_id
from agritrace_registry.domain.model import (
    FLAG_IMPORT_CONFLICT,
    RegistrationInput,
    SubjectKind,
    SubjectStatus,
)
from agritrace_registry.service_layer.importer import (
    ImportRecordInput,
    ImportSummary,
    RecordResult,
    SubjectImporter,
)
from agritrace_registry.service_layer.services import RegistryService, subject_payload

CODE_A = "91330106MA2XXXXX0Y"
CODE_B = "91330106MA2YYYYY07"
CODE_C = "91330102MA2AAAAA1B"
CODE_D = "91330106MA2CCCCC3U"
RESIDENT_ID = "33010619900101123X"


def company(code: str = CODE_A, **changes: Any) -> RegistrationInput:
    base = RegistrationInput(
        kind=SubjectKind.ENTERPRISE,
        name=f"茶叶公司{code[-4:]}",
        credit_code=code,
        division_code="330106",
        address="杭州市西湖区",
    )
    return dataclasses.replace(base, **changes)


def farmer(**changes: Any) -> RegistrationInput:
    base = RegistrationInput(
        kind=SubjectKind.INDIVIDUAL_FARMER,
        name="张三",
        resident_id=RESIDENT_ID,
        division_code="330106",
        contact_phone="13800011111",
    )
    return dataclasses.replace(base, **changes)


def record(record_id: str, data: RegistrationInput) -> ImportRecordInput:
    return ImportRecordInput(record_id, data)


def run_batch(
    importer: SubjectImporter,
    records: list[ImportRecordInput],
    province: str = "33",
    import_id: str = "imp-1",
) -> tuple[list[RecordResult], ImportSummary]:
    run = importer.begin(import_id, province)
    summary = ImportSummary()
    results = importer.import_batch(run, records, summary)
    importer.finish(run, summary)
    return results, summary


def outcomes(results: list[RecordResult]) -> list[tuple[str, str]]:
    return [(r.source_record_id, r.outcome) for r in results]


def stored_state(database: Any) -> tuple[object, ...]:
    """What an import may change (the import run's own bookkeeping aside)."""
    tables = database.snapshot()
    return (tables.subjects, tables.provenance, tables.conflicts, tables.suspicions)


# -- outcomes --------------------------------------------------------------------------------------


def test_new_records_are_created(
    importer: SubjectImporter, database: Any, clock: Any, subject_ids: Any
) -> None:
    results, summary = run_batch(
        importer, [record("r1", company(CODE_A)), record("r2", company(CODE_B)),
                   record("r3", farmer())]
    )

    assert outcomes(results) == [("r1", "CREATED"), ("r2", "CREATED"), ("r3", "CREATED")]
    assert [r.subject_id for r in results] == subject_ids.issued
    assert database.subject_ids() == sorted(subject_ids.issued)
    for result in results:
        subject = database.subject(result.subject_id)
        assert subject.status is SubjectStatus.PENDING_REVIEW
        assert [(p.source, p.source_record_id) for p in subject.provenance] == [
            ("province:33", result.source_record_id)
        ]
        assert database.provenance_of(result.subject_id)[0].import_id == "imp-1"
    assert (summary.received, summary.created, summary.merged, summary.conflicts,
            summary.rejected) == (3, 3, 0, 0, 0)


def test_a_duplicate_of_an_existing_subject_is_merged(
    service: RegistryService, importer: SubjectImporter, database: Any
) -> None:
    existing = service.register_subject("req-1", company(CODE_A, name="西湖 龙井茶叶公司"))

    # Same key; the name differs only in spacing and width, the address in content.
    results, summary = run_batch(
        importer,
        [record("r1", company(CODE_A, name="西湖龙井茶叶公司\u3000", address="别的地址"))],
    )

    assert results == [RecordResult("r1", "MERGED", existing.subject_id)]
    assert database.subject_ids() == [existing.subject_id]
    subject = database.subject(existing.subject_id)
    assert [(p.source, p.source_record_id) for p in subject.provenance] == [
        ("national", ""), ("province:33", "r1")
    ]
    assert subject.version == existing.version
    assert subject.address == existing.address
    assert (summary.created, summary.merged) == (0, 1)


def test_a_duplicate_within_the_batch_is_merged_into_the_new_subject(
    importer: SubjectImporter, database: Any
) -> None:
    results, summary = run_batch(
        importer,
        [record("r1", company(CODE_A)), record("r2", company(CODE_A.lower(), address="另址"))],
    )

    assert outcomes(results) == [("r1", "CREATED"), ("r2", "MERGED")]
    assert results[1].subject_id == results[0].subject_id
    assert database.subject_ids() == [results[0].subject_id]
    assert [p.source_record_id for p in database.subject(results[0].subject_id).provenance] == [
        "r1", "r2"
    ]
    assert (summary.created, summary.merged) == (1, 1)


def test_a_conflict_is_kept_for_review_and_flags_the_subject(
    service: RegistryService, importer: SubjectImporter, database: Any
) -> None:
    existing = service.register_subject("req-1", company(CODE_A))

    results, summary = run_batch(
        importer, [record("r1", company(CODE_A, name="完全不同的名字", division_code="330102"))]
    )

    (result,) = results
    assert (result.outcome, result.subject_id, result.field) == (
        "CONFLICT", existing.subject_id, "name,division_code"
    )
    assert result.reason
    subject = database.subject(existing.subject_id)
    assert subject.review_flags == [FLAG_IMPORT_CONFLICT]
    assert subject.version == existing.version + 1
    assert subject.name == existing.name  # the registered data stays
    (conflict,) = database.conflicts_of(existing.subject_id)
    assert conflict.differing_fields == ("name", "division_code")
    assert (conflict.source, conflict.source_record_id, conflict.import_id) == (
        "province:33", "r1", "imp-1"
    )
    assert conflict.incoming["name"] == "完全不同的名字"
    assert conflict.existing["name"] == existing.name
    assert database.subject_ids() == [existing.subject_id]
    assert summary.conflicts == 1


def test_a_conflict_within_the_batch_flags_the_new_subject(
    importer: SubjectImporter, database: Any
) -> None:
    results, _ = run_batch(
        importer,
        [record("r1", company(CODE_A)), record("r2", company(CODE_A, kind=SubjectKind.PROCESSOR))],
    )

    assert outcomes(results) == [("r1", "CREATED"), ("r2", "CONFLICT")]
    assert results[1].field == "kind"
    subject = database.subject(results[0].subject_id)
    assert subject.review_flags == [FLAG_IMPORT_CONFLICT]
    assert subject.version == 1
    assert subject.kind is SubjectKind.ENTERPRISE


def test_invalid_rows_are_rejected_with_field_and_reason(
    importer: SubjectImporter, database: Any
) -> None:
    results, summary = run_batch(
        importer,
        [
            record("r1", company(kind=None)),
            record("r2", company(credit_code="91330106")),
            record("r3", company(name="", division_code="330100")),
            record("r4", farmer(resident_id=RESIDENT_ID[:-1] + "1")),
        ],
    )

    assert outcomes(results) == [(f"r{i}", "REJECTED") for i in range(1, 5)]
    assert [r.field for r in results] == ["kind", "credit_code", "name", "resident_id"]
    assert results[0].reason == "kind: is required"
    assert "name: is required" in results[2].reason
    assert "division_code:" in results[2].reason
    assert "registration." not in results[2].reason
    assert RESIDENT_ID[:-1] not in results[3].reason
    assert all(r.subject_id == "" for r in results)
    assert database.committed.subjects == {}
    assert summary.rejected == 4


@pytest.mark.parametrize("record_id", ["", "   ", "x" * 65])
def test_a_record_without_a_usable_source_record_id_is_rejected(
    record_id: str, importer: SubjectImporter, database: Any
) -> None:
    results, _ = run_batch(importer, [record(record_id, company()), record("r2", company(CODE_B))])

    assert results[0].outcome == "REJECTED"
    assert results[0].field == "source_record_id"
    assert results[1].outcome == "CREATED"
    assert database.subject_ids() == [results[1].subject_id]


MIXED_BATCH = [
    record("new-1", company(CODE_B)),
    record("dup-existing", company(CODE_A)),
    record("new-2", farmer()),
    record("dup-in-batch", farmer(resident_id=RESIDENT_ID.lower(), contact_phone="")),
    record("conflict", company(CODE_A, name="另一家公司")),
    record("bad", company(CODE_C, division_code="999999")),
    record("", company(CODE_D)),
    record("new-3", company(CODE_C, division_code="330102")),
]
MIXED_OUTCOMES = [
    ("new-1", "CREATED"),
    ("dup-existing", "MERGED"),
    ("new-2", "CREATED"),
    ("dup-in-batch", "MERGED"),
    ("conflict", "CONFLICT"),
    ("bad", "REJECTED"),
    ("", "REJECTED"),
    ("new-3", "CREATED"),
]


def test_every_record_has_exactly_one_outcome_in_order(
    service: RegistryService, importer: SubjectImporter
) -> None:
    service.register_subject("req-1", company(CODE_A))

    results, summary = run_batch(importer, MIXED_BATCH)

    assert outcomes(results) == MIXED_OUTCOMES
    assert summary.received == len(MIXED_BATCH)
    assert summary.created + summary.merged + summary.conflicts + summary.rejected == len(
        MIXED_BATCH
    )
    assert (summary.created, summary.merged, summary.conflicts, summary.rejected) == (3, 2, 1, 2)


def test_rerunning_a_batch_reports_the_same_outcomes_and_changes_nothing(
    service: RegistryService, importer: SubjectImporter, database: Any, clock: Any
) -> None:
    service.register_subject("req-1", company(CODE_A))
    first, first_summary = run_batch(importer, MIXED_BATCH)
    state = stored_state(database)
    published = list(database.published)
    clock.advance(days=1)

    again, again_summary = run_batch(importer, MIXED_BATCH)

    assert [dataclasses.replace(r, replayed=False) for r in again] == first
    assert all(r.replayed for r in again if r.outcome != "REJECTED")
    assert not any(r.replayed for r in first)
    assert stored_state(database) == state
    assert len(database.committed.subjects) == 4
    assert database.published == published
    assert dataclasses.astuple(again_summary)[:5] == dataclasses.astuple(first_summary)[:5]
    assert again_summary.new_effects == 0


def test_a_rerun_under_another_import_id_changes_nothing_either(
    importer: SubjectImporter, database: Any
) -> None:
    first, _ = run_batch(importer, MIXED_BATCH[:5], import_id="imp-1")
    state = stored_state(database)

    again, summary = run_batch(importer, MIXED_BATCH[:5], import_id="imp-2")

    assert [dataclasses.replace(r, replayed=False) for r in again] == first
    assert stored_state(database) == state
    assert summary.new_effects == 0
    assert len(database.events_named("subjects_imported")) == 1


def test_a_subject_is_never_duplicated_across_national_and_provincial_sources(
    service: RegistryService, importer: SubjectImporter, database: Any, clock: Any
) -> None:
    company_subject = service.register_subject("req-1", company(CODE_A))
    person = service.register_subject("req-2", farmer())

    clock.advance(days=1)
    from_zhejiang, _ = run_batch(
        importer, [record("zj-1", company(CODE_A)), record("zj-2", farmer())],
        province="33", import_id="zj",
    )
    clock.advance(days=1)
    from_jiangsu, _ = run_batch(
        importer,
        [record("js-9", company(CODE_A.lower())),
         record("js-8", farmer(resident_id=RESIDENT_ID.lower(), contact_phone=""))],
        province="32", import_id="js",
    )

    assert outcomes(from_zhejiang) == [("zj-1", "MERGED"), ("zj-2", "MERGED")]
    assert outcomes(from_jiangsu) == [("js-9", "MERGED"), ("js-8", "MERGED")]
    assert database.subject_ids() == sorted([company_subject.subject_id, person.subject_id])
    assert [(p.source, p.source_record_id)
            for p in database.subject(company_subject.subject_id).provenance] == [
        ("national", ""), ("province:33", "zj-1"), ("province:32", "js-9")
    ]
    assert [p.source for p in database.subject(person.subject_id).provenance] == [
        "national", "province:33", "province:32"
    ]


def test_a_batch_that_fails_half_way_writes_nothing(
    catalog: Any, protector: Any, clock: Any, database: Any, uow_factory: Any
) -> None:
    # Every new subject draws the same id, so the batch's second new subject cannot be added.
    same_id = new_subject_id("33", lambda bits: 7)
    service = RegistryService(
        uow_factory, catalog, protector, clock=clock, new_subject_id=lambda _: same_id
    )
    importer = SubjectImporter(service)
    run = importer.begin("imp-1", "33")
    before = database.snapshot()

    with pytest.raises(AlreadyExists):
        importer.import_batch(
            run, [record("r1", company(CODE_A)), record("r2", company(CODE_B))], ImportSummary()
        )

    assert database.committed == before
    assert database.published == []


def test_a_batch_that_rolled_back_is_neither_counted_nor_announced(
    catalog: Any, protector: Any, clock: Any, database: Any, uow_factory: Any
) -> None:
    same_id = new_subject_id("33", lambda bits: 7)
    service = RegistryService(
        uow_factory, catalog, protector, clock=clock, new_subject_id=lambda _: same_id
    )
    importer = SubjectImporter(service)
    run = importer.begin("imp-1", "33")
    summary = ImportSummary()
    with pytest.raises(AlreadyExists):
        importer.import_batch(
            run, [record("r1", company(CODE_A)), record("r2", company(CODE_B))], summary
        )

    importer.finish(run, summary)

    assert database.committed.subjects == {}
    assert (summary.received, summary.created, summary.new_effects) == (0, 0, 0)
    assert database.events_named("subjects_imported") == []
    assert database.committed.imports["imp-1"].created == 0


def test_a_batch_larger_than_5000_records_is_refused(importer: SubjectImporter) -> None:
    run = importer.begin("imp-1", "33")
    with pytest.raises(InvalidArgument) as error:
        importer.import_batch(run, [record(f"r{i}", company()) for i in range(5001)],
                              ImportSummary())
    assert [v.field for v in error.value.violations] == ["records"]


# -- begin and finish --------------------------------------------------------------------------


@pytest.mark.parametrize("province", ["99", "3", "330", "ab", "", "３３", "330106"])
def test_begin_refuses_a_bad_province(
    province: str, importer: SubjectImporter, database: Any
) -> None:
    with pytest.raises(InvalidArgument) as error:
        importer.begin("imp-1", province)
    assert [v.field for v in error.value.violations] == ["source_province"]
    assert database.committed.imports == {}


@pytest.mark.parametrize("import_id", ["", "  ", "i" * 65])
def test_begin_needs_a_usable_import_id(import_id: str, importer: SubjectImporter) -> None:
    with pytest.raises(InvalidArgument) as error:
        importer.begin(import_id, "33")
    assert [v.field for v in error.value.violations] in (["import_id"], ["request_id"])


def test_begin_resumes_a_run_of_the_same_province_and_refuses_another(
    importer: SubjectImporter, database: Any, clock: Any
) -> None:
    first = importer.begin("imp-1", "33")
    started = clock.now
    importer.finish(first, ImportSummary())
    clock.advance(hours=2)

    resumed = importer.begin(" imp-1 ", "33")
    assert (resumed.import_id, resumed.source_province, resumed.started_at) == (
        "imp-1", "33", started
    )
    importer.finish(resumed, ImportSummary())

    with pytest.raises(InvalidArgument) as error:
        importer.begin("imp-1", "32")
    assert [v.field for v in error.value.violations] == ["source_province"]
    assert "33" in error.value.violations[0].description
    assert database.committed.imports["imp-1"].source_province == "33"
    # The refused call gave its lease back: the run can be resumed at once.
    assert importer.begin("imp-1", "33").import_id == "imp-1"


def test_a_run_streams_through_one_call_at_a_time(
    importer: SubjectImporter, leases: Any
) -> None:
    run = importer.begin("imp-1", "33")

    with pytest.raises(ConcurrencyConflict) as error:
        importer.begin("imp-1", "33")
    assert error.value.reason == "IMPORT_ALREADY_RUNNING"
    # Another run is not blocked.
    other = importer.begin("imp-2", "33")

    importer.finish(run, ImportSummary())
    importer.finish(other, ImportSummary())
    assert leases.held == {}
    assert importer.begin("imp-1", "33").import_id == "imp-1"


def test_a_batch_after_the_lease_was_lost_is_refused_and_writes_nothing(
    importer: SubjectImporter, leases: Any, database: Any
) -> None:
    run = importer.begin("imp-1", "33")
    importer.import_batch(run, [record("r1", company(CODE_A))], ImportSummary())
    before = database.snapshot()
    leases.expire("import:imp-1")

    with pytest.raises(ConcurrencyConflict) as error:
        importer.import_batch(run, [record("r2", company(CODE_B))], ImportSummary())

    assert error.value.reason == "IMPORT_LEASE_LOST"
    assert database.committed == before


def test_finish_publishes_one_event_for_the_run_with_its_counts(
    service: RegistryService, importer: SubjectImporter, database: Any, clock: Any
) -> None:
    service.register_subject("req-1", company(CODE_A))
    run = importer.begin("imp-1", "33")
    summary = ImportSummary()
    # Two batches, one announcement.
    importer.import_batch(run, MIXED_BATCH[:4], summary)
    importer.import_batch(run, MIXED_BATCH[4:], summary)
    assert database.events_named("subjects_imported") == []

    importer.finish(run, summary)

    (event,) = database.events_named("subjects_imported")
    assert event.source == "registry"
    assert event.payload == {
        "import_id": "imp-1",
        "source_province": "33",
        "received": 8,
        "created": 3,
        "merged": 2,
        "conflicts": 1,
        "rejected": 2,
    }
    stored = database.committed.imports["imp-1"]
    assert (stored.received, stored.created, stored.merged, stored.conflicts,
            stored.rejected) == (8, 3, 2, 1, 2)
    assert stored.finished_at == clock.now
    # Imports announce the run, not each subject.
    assert len(database.events_named("subject_registered")) == 1


def test_finish_announces_nothing_when_nothing_changed(
    importer: SubjectImporter, database: Any
) -> None:
    run_batch(importer, [record("bad", company(kind=None))])
    assert database.events_named("subjects_imported") == []
    assert database.committed.imports["imp-1"].rejected == 1


def test_each_applied_batch_announces_the_subjects_it_created_or_changed(
    service: RegistryService, importer: SubjectImporter, database: Any, clock: Any
) -> None:
    existing = service.register_subject("req-1", company(CODE_A))
    run = importer.begin("imp-1", "33")
    summary = ImportSummary()
    commits = database.commits

    first = importer.import_batch(run, MIXED_BATCH[:4], summary)
    second = importer.import_batch(run, MIXED_BATCH[4:], summary)

    assert database.commits == commits + 2  # each batch with its announcement
    created_first = [first[0].subject_id, first[2].subject_id]  # new-1, new-2 (merges: none)
    created_second = second[3].subject_id  # new-3; "conflict" flagged the existing subject
    announced = database.events_named("import_batch_applied")
    assert [event.payload["import_id"] for event in announced] == ["imp-1", "imp-1"]
    assert {event.payload["source_province"] for event in announced} == {"33"}
    assert [[s["subject_id"] for s in event.payload["subjects"]] for event in announced] == [
        created_first, [created_second, existing.subject_id]]
    for event in announced:
        for payload in event.payload["subjects"]:
            assert payload == subject_payload(database.subject(payload["subject_id"]))
    flagged = announced[1].payload["subjects"][1]
    assert flagged["version"] == existing.version + 1
    # Identity and public facts only: the farmer's ID number and phone stay out.
    farmer_payload = announced[0].payload["subjects"][1]
    assert set(farmer_payload) == {"subject_id", "kind", "name", "division_code",
                                   "credit_code", "status", "version"}
    assert RESIDENT_ID not in str(announced) and "13800011111" not in str(announced)


def test_a_subject_created_and_flagged_in_one_batch_is_announced_once(
    importer: SubjectImporter, database: Any
) -> None:
    results, _ = run_batch(
        importer,
        [record("r1", company(CODE_A)), record("r2", company(CODE_A, kind=SubjectKind.PROCESSOR))],
    )

    (event,) = database.events_named("import_batch_applied")
    assert [s["subject_id"] for s in event.payload["subjects"]] == [results[0].subject_id]
    assert event.payload["subjects"][0]["version"] == 1


def test_a_batch_that_changed_no_subject_announces_nothing(
    service: RegistryService, importer: SubjectImporter, database: Any
) -> None:
    service.register_subject("req-1", company(CODE_A))
    run_batch(importer, MIXED_BATCH, import_id="imp-1")
    announced = len(database.events_named("import_batch_applied"))

    # A replay, merges into known subjects, a conflict already flagged, rejections.
    run_batch(importer, MIXED_BATCH, import_id="imp-1")
    run_batch(importer, [record("m1", company(CODE_A)), record("c2", company(
        CODE_A, name="又一家公司")), record("bad", company(kind=None))], import_id="imp-2")

    assert len(database.events_named("import_batch_applied")) == announced == 1


# -- the duplicate check ---------------------------------------------------------------------


def flag_duplicates(service: RegistryService, event: Event, fake: Any, database: Any) -> None:
    with fake.FakeUnitOfWork(database) as uow:
        service.flag_suspected_duplicates(event, uow)
        uow.commit()


def test_same_name_and_county_under_different_keys_are_suspected_duplicates(
    service: RegistryService, database: Any, fake: Any
) -> None:
    person = service.register_subject("req-1", farmer(kind=SubjectKind.FAMILY_FARM))
    elsewhere = service.register_subject(
        "req-2", company(CODE_B, kind=SubjectKind.FAMILY_FARM, name="张三", division_code="330102")
    )
    farm = service.register_subject(
        "req-3", company(CODE_A, kind=SubjectKind.FAMILY_FARM, name=" 张 三 ")
    )

    flag_duplicates(service, database.published[-1], fake, database)

    assert service.get_subject(farm.subject_id).suspected_duplicate_ids == [person.subject_id]
    assert service.get_subject(person.subject_id).suspected_duplicate_ids == [farm.subject_id]
    assert service.get_subject(elsewhere.subject_id).suspected_duplicate_ids == []


def test_the_duplicate_check_is_idempotent(
    service: RegistryService, database: Any, fake: Any
) -> None:
    person = service.register_subject("req-1", farmer())
    farm = service.register_subject(
        "req-2", company(CODE_A, kind=SubjectKind.FAMILY_FARM, name="张三")
    )
    event = database.published[-1]
    flag_duplicates(service, event, fake, database)
    flag_duplicates(service, event, fake, database)

    assert database.committed.suspicions == {
        (person.subject_id, farm.subject_id), (farm.subject_id, person.subject_id)
    }


def test_the_duplicate_check_of_an_import_covers_each_batch_against_all_before_it(
    importer: SubjectImporter, service: RegistryService, database: Any, fake: Any
) -> None:
    """Each `import_batch_applied` is checked once: a twin in a later batch (or a later call
    of the same import) is found against the subjects already there."""
    first_results, _ = run_batch(
        importer,
        [
            record("r1", farmer(kind=SubjectKind.TRADER, name="李四")),
            record("r3", company(CODE_B, name="无关公司")),
        ],
    )
    second_results, _ = run_batch(
        importer, [record("r2", company(CODE_A, kind=SubjectKind.TRADER, name="李 四"))])
    for event in database.events_named("import_batch_applied"):
        flag_duplicates(service, event, fake, database)

    (first, unrelated), (second,) = ((r.subject_id for r in first_results),
                                     (r.subject_id for r in second_results))
    assert service.get_subject(first).suspected_duplicate_ids == [second]
    assert service.get_subject(second).suspected_duplicate_ids == [first]
    assert service.get_subject(unrelated).suspected_duplicate_ids == []


def test_a_batch_that_races_another_import_for_a_key_is_applied_again_and_merges(
    fake: Any, database: Any, catalog: Any, protector: Any, clock: Any, subject_ids: Any,
    leases: Any,
) -> None:
    """Between this batch's look-ups and its commit, another replica registers CODE_A; the
    database refuses the second CODE_A, and the batch is applied again: merged, not created,
    nothing duplicated and nothing counted twice."""
    other = RegistryService(lambda: fake.FakeUnitOfWork(database), catalog, protector,
                            clock=clock, new_subject_id=subject_ids)
    raced: list[str] = []

    class RacingUnitOfWork(fake.FakeUnitOfWork):  # type: ignore[misc,name-defined]
        def commit(self) -> None:
            if self.subjects._tables.subjects and not raced:
                raced.append(other.register_subject("req-other", company(CODE_A)).subject_id)
                raise fake._duplicate("credit_code")
            super().commit()

    racing = RegistryService(lambda: RacingUnitOfWork(database), catalog, protector,
                             clock=clock, new_subject_id=subject_ids)
    records = [ImportRecordInput("r-a", company(CODE_A)), ImportRecordInput("r-b",
                                                                            company(CODE_B))]
    results, summary = run_batch(SubjectImporter(racing, leases), records)

    assert [r.outcome for r in results] == ["MERGED", "CREATED"]
    assert results[0].subject_id == raced[0]
    assert (summary.created, summary.merged, summary.received) == (1, 1, 2)
    holders = [s for s in database.committed.subjects.values() if s.credit_code == CODE_A]
    assert [s.subject_id for s in holders] == raced
