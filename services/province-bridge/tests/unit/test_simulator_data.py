"""The simulator's generated data: valid by the registry's own rules, unique, deterministic,
and an overlap set both provinces agree on."""

from __future__ import annotations

import pytest

from agritrace_bridge.contract import SubjectKind
from agritrace_bridge.simulator.data import (
    MAX_SUBJECTS,
    UNKNOWN_DIVISION,
    Draws,
    SubjectGenerator,
    gb11714_check_char,
    invent_batch_ids,
    trace_record,
    trace_record_id,
)
from agritrace_kernel.errors import InvalidArgument
from agritrace_registry.domain.divisions import DivisionCatalog
from agritrace_registry.domain.identifiers import (
    normalize_phone,
    parse_credit_code,
    parse_resident_id,
)
from agritrace_registry.domain.model import RegistrationInput, validate_registration
from agritrace_registry.domain.model import SubjectKind as RegistrySubjectKind

CATALOG = DivisionCatalog.bundled()
ORGANISATIONS = {SubjectKind.ENTERPRISE, SubjectKind.COOPERATIVE, SubjectKind.PROCESSOR,
                 SubjectKind.WHOLESALE_MARKET, SubjectKind.COLLECTIVE}


def test_subjects_are_valid_by_the_registry_rules_and_unique() -> None:
    generator = SubjectGenerator(province="37", seed=1, count=3000)
    subjects = [generator.subject(i) for i in range(3000)]
    credit_codes, resident_ids = [], []
    for subject in subjects:
        kind = SubjectKind(subject.kind)
        assert CATALOG.require_county(subject.division_code).code.startswith("37")
        normalize_phone(subject.contact_phone)
        if subject.credit_code:
            check = parse_credit_code(subject.credit_code)
            assert check.check_ok and check.registration_division == subject.division_code
            assert gb11714_check_char(subject.credit_code[8:16]) == subject.credit_code[16]
            credit_codes.append(subject.credit_code)
        else:
            assert kind not in ORGANISATIONS
            assert parse_resident_id(subject.resident_id).startswith(subject.division_code)
            resident_ids.append(subject.resident_id)
    assert len(set(credit_codes)) == len(credit_codes) > 500
    assert len(set(resident_ids)) == len(resident_ids) > 500
    assert {SubjectKind(s.kind) for s in subjects} == set(SubjectKind)
    assert [s.source_record_id for s in subjects] == sorted(s.source_record_id for s in subjects)


def test_subjects_pass_the_registrys_validation_except_the_invalid_ones() -> None:
    generator = SubjectGenerator(province="11", seed=3, count=400, shared_with="37",
                                 shared=50, invalid_every=40)
    for index in range(400):
        subject = generator.subject(index)
        data = RegistrationInput(
            kind=RegistrySubjectKind[subject.kind], name=subject.name,
            credit_code=subject.credit_code, resident_id=subject.resident_id,
            division_code=subject.division_code, address=subject.address,
            legal_representative=subject.legal_representative,
            contact_phone=subject.contact_phone)
        if subject.division_code == UNKNOWN_DIVISION:
            with pytest.raises(InvalidArgument) as refused:
                validate_registration(data, CATALOG)
            assert [v.field for v in refused.value.violations] == \
                ["registration.division_code"]
        else:
            assert validate_registration(data, CATALOG).review_flags == ()


def test_identifiers_stay_valid_up_to_the_largest_province() -> None:
    # Shanghai has the fewest counties, so its birth dates and sequences go furthest.
    generator = SubjectGenerator(province="31", seed=1, count=MAX_SUBJECTS)
    people = [s for s in map(generator.subject, range(MAX_SUBJECTS - 400, MAX_SUBJECTS))
              if s.resident_id]
    assert len(people) > 100
    for person in people:
        parse_resident_id(person.resident_id)
    with pytest.raises(ValueError):
        SubjectGenerator(province="31", seed=1, count=MAX_SUBJECTS + 1)


def test_the_same_seed_gives_the_same_subjects_and_another_seed_others() -> None:
    first = SubjectGenerator(province="33", seed=7, count=100)
    again = SubjectGenerator(province="33", seed=7, count=100)
    other = SubjectGenerator(province="33", seed=8, count=100)
    assert [first.subject(i) for i in range(100)] == [again.subject(i) for i in range(100)]
    assert [first.subject(i).name for i in range(100)] != \
        [other.subject(i).name for i in range(100)]


def test_the_overlap_set_is_the_same_organisations_in_both_provinces() -> None:
    shandong = SubjectGenerator(province="37", seed=1, count=300, shared_with="11", shared=40)
    beijing = SubjectGenerator(province="11", seed=1, count=200, shared_with="37", shared=40)
    shared_37 = [shandong.subject(i) for i in range(260, 300)]
    shared_11 = [beijing.subject(i) for i in range(160, 200)]
    for left, right in zip(shared_37, shared_11, strict=True):
        assert left.model_dump(exclude={"source_record_id"}) == \
            right.model_dump(exclude={"source_record_id"})
        assert left.credit_code and parse_credit_code(left.credit_code).check_ok
        assert left.division_code.startswith("11")  # the lower province is their home
    own_37 = {shandong.subject(i).credit_code for i in range(260)} - {""}
    own_11 = {beijing.subject(i).credit_code for i in range(160)} - {""}
    shared_codes = {s.credit_code for s in shared_37}
    assert len(shared_codes) == 40
    assert not own_37 & own_11 and not shared_codes & (own_37 | own_11)


def test_every_nth_subject_can_carry_an_unknown_division() -> None:
    generator = SubjectGenerator(province="37", seed=1, count=30, invalid_every=10)
    divisions = [generator.subject(i).division_code for i in range(30)]
    assert [i for i, d in enumerate(divisions) if d == UNKNOWN_DIVISION] == [9, 19, 29]


@pytest.mark.parametrize("arguments", [
    {"province": "99", "seed": 1, "count": 10},
    {"province": "37", "seed": 1, "count": 10, "shared_with": "37", "shared": 2},
    {"province": "37", "seed": 1, "count": 10, "shared_with": "11", "shared": 11},
])
def test_impossible_generators_are_refused(arguments: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SubjectGenerator(**arguments)  # type: ignore[arg-type]


def test_draws_are_deterministic_in_range_and_weighted() -> None:
    first, again, other = Draws("1/37/5"), Draws("1/37/5"), Draws("1/37/6")
    assert [first.randrange(1000) for _ in range(50)] == \
        [again.randrange(1000) for _ in range(50)] != [other.randrange(1000) for _ in range(50)]
    draws = Draws("spread")
    assert {draws.randint(3, 9) for _ in range(500)} == set(range(3, 10))
    assert all(0 <= draws.random() < 1 for _ in range(500))
    picked = [draws.weighted("abc", (1, 1, 4)) for _ in range(3000)]  # weights 1, 0, 3
    assert "b" not in picked and 0.65 < picked.count("c") / len(picked) < 0.85


def test_production_records_follow_a_life_cycle_whose_intervals_pass() -> None:
    batches = invent_batch_ids("37", 1, 4)
    assert all(b.startswith("B37") and len(b) == 16 for b in batches)
    records = [trace_record("37", 1, batches, n) for n in range(40)]
    assert len({r.record_id for r in records}) == 40
    plant = [r for r in records if r.batch_id == batches[0]]
    assert [r.activity.type for r in plant[:5]] == \
        ["PLANTING", "FERTILISER", "PESTICIDE", "INSPECTION", "HARVEST"]
    pesticide, harvest = plant[2], plant[4]
    assert pesticide.activity.type == "PESTICIDE"
    interval = pesticide.activity.pre_harvest_interval_days
    assert (harvest.occur_time - pesticide.occur_time).days >= interval
    animal = [r.activity.type for r in records if r.batch_id == batches[1]][:5]
    assert animal == ["FEED", "VETERINARY_DRUG", "FEED", "INSPECTION", "SLAUGHTER"]


def test_production_record_ids_sort_in_the_order_the_records_were_made() -> None:
    batches = invent_batch_ids("37", 1, 3)
    numbers = [0, 1, 9, 10, 11, 999, 1000, 99_999]
    ids = [trace_record("37", 1, batches, n).record_id for n in numbers]
    assert ids == [trace_record_id("37", n) for n in numbers]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
