"""RegistryService use cases against the in-memory fakes (see conftest.py and fakes.py)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from agritrace_kernel.errors import (
    AlreadyExists,
    ConcurrencyConflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from agritrace_kernel.paging import encode_token
from agritrace_registry.domain.identifiers import (
    credit_code_check_char,
    new_subject_id,
    parse_subject_id,
)
from agritrace_registry.domain.model import (
    Provenance,
    RegistrationInput,
    ReviewDecision,
    SubjectKind,
    SubjectStatus,
)
from agritrace_registry.service_layer.ports import SubjectQuery
from agritrace_registry.service_layer.services import RegistryService

CREDIT_CODE = "91330106MA2XXXXX0Y"
OTHER_CREDIT_CODE = "91330102MA2AAAAA1B"
RESIDENT_ID = "33010619900101123X"
PHONE = "13800011111"
# A well-formed subject id that the seeded generator never issues.
UNKNOWN_ID = new_subject_id("33", lambda bits: 12345)


def organisation(**changes: Any) -> RegistrationInput:
    base = RegistrationInput(
        kind=SubjectKind.ENTERPRISE,
        name="杭州西湖龙井茶叶有限公司",
        credit_code=CREDIT_CODE,
        division_code="330106",
        address="杭州市西湖区龙井路1号",
        legal_representative="王五",
    )
    return dataclasses.replace(base, **changes)


def farmer(**changes: Any) -> RegistrationInput:
    base = RegistrationInput(
        kind=SubjectKind.INDIVIDUAL_FARMER,
        name="张三",
        resident_id=RESIDENT_ID,
        division_code="330106",
        contact_phone=PHONE,
    )
    return dataclasses.replace(base, **changes)


def credit_code(division: str, serial: int) -> str:
    body = f"91{division}MA{serial:07d}"
    return body + credit_code_check_char(body)


def field_of(error: pytest.ExceptionInfo[InvalidArgument]) -> list[str]:
    return [v.field for v in error.value.violations]


def assert_nothing_written(database: Any) -> None:
    assert database.committed.subjects == {}
    assert database.committed.requests == {}
    assert database.committed.provenance == []
    assert database.published == []


# -- register ------------------------------------------------------------------------------------


def test_register_creates_a_subject_pending_review(
    service: RegistryService, database: Any, clock: Any, subject_ids: Any
) -> None:
    subject = service.register_subject("req-1", organisation())

    assert subject.subject_id == subject_ids.issued[0]
    assert parse_subject_id(subject.subject_id)[1:3] == "33"
    assert subject.status is SubjectStatus.PENDING_REVIEW
    assert subject.version == 1
    assert subject.credit_code == CREDIT_CODE
    assert subject.created_at == clock.now
    assert subject.provenance == [Provenance("national", "", clock.now)]
    assert database.subject_ids() == [subject.subject_id]
    assert database.committed.requests["req-1"].result_id == subject.subject_id


def test_register_publishes_subject_registered_on_commit(
    service: RegistryService, database: Any
) -> None:
    subject = service.register_subject("req-1", organisation())

    assert [event.routing_key for event in database.published] == ["registry.subject_registered"]
    assert database.published[0].payload == {
        "subject_id": subject.subject_id,
        "kind": "ENTERPRISE",
        "name": "杭州西湖龙井茶叶有限公司",
        "division_code": "330106",
        "credit_code": CREDIT_CODE,
        "status": "PENDING_REVIEW",
        "version": 1,
    }


def test_the_registered_event_carries_no_personal_data(
    service: RegistryService, database: Any, protector: Any
) -> None:
    subject = service.register_subject("req-1", farmer())

    (event,) = database.published
    text = json.dumps(event.payload, ensure_ascii=False)
    assert RESIDENT_ID not in text
    assert RESIDENT_ID.lower() not in text
    assert PHONE not in text
    assert protector.digest(RESIDENT_ID) not in text
    assert "sealed:" not in text
    assert event.payload["subject_id"] == subject.subject_id
    assert event.payload["credit_code"] == ""


def test_a_retry_with_the_same_request_id_returns_the_same_subject(
    service: RegistryService, database: Any
) -> None:
    first = service.register_subject("req-1", organisation())
    # The same registration typed differently (spaces, full width) is the same request.
    again = service.register_subject(
        " req-1 ",
        organisation(name=" 杭州西湖龙井茶叶有限公司\u3000", credit_code=CREDIT_CODE.lower()),
    )

    assert again.subject_id == first.subject_id
    assert again.version == first.version
    assert len(database.committed.subjects) == 1
    assert len(database.published) == 1


def test_the_same_request_id_with_another_registration_is_refused(
    service: RegistryService, database: Any
) -> None:
    service.register_subject("req-1", organisation())
    before = database.snapshot()

    with pytest.raises(FailedPrecondition) as error:
        service.register_subject("req-1", organisation(credit_code=OTHER_CREDIT_CODE))

    assert error.value.reason == "REQUEST_ID_REUSED"
    assert database.committed == before
    assert len(database.published) == 1


def test_a_second_registration_of_a_credit_code_already_exists(
    service: RegistryService, database: Any
) -> None:
    first = service.register_subject("req-1", organisation())

    with pytest.raises(AlreadyExists) as error:
        service.register_subject("req-2", organisation(name="另一个名字", division_code="330102"))

    assert error.value.reason == "SUBJECT_ALREADY_REGISTERED"
    assert error.value.metadata == {"subject_id": first.subject_id, "key": "credit_code"}
    assert database.subject_ids() == [first.subject_id]
    assert "req-2" not in database.committed.requests
    assert len(database.published) == 1


def test_a_second_registration_of_a_resident_id_already_exists(
    service: RegistryService, database: Any
) -> None:
    first = service.register_subject("req-1", farmer())

    with pytest.raises(AlreadyExists) as error:
        # Same person, written with a lower-case x and spaces, as a trader this time.
        service.register_subject(
            "req-2", farmer(kind=SubjectKind.TRADER, resident_id=" 330106 19900101 123x ")
        )

    assert error.value.metadata == {"subject_id": first.subject_id, "key": "resident_id"}
    # The error never carries the number.
    assert RESIDENT_ID not in str(error.value)
    assert database.subject_ids() == [first.subject_id]


@pytest.mark.parametrize(
    ("request_id", "data", "bad_field"),
    [
        ("req-1", organisation(credit_code=""), "registration.credit_code"),
        ("req-1", organisation(kind=None), "registration.kind"),
        ("req-1", farmer(resident_id=RESIDENT_ID[:-1] + "1"), "registration.resident_id"),
        ("req-1", organisation(division_code="110103"), "registration.division_code"),
        ("", organisation(), "request_id"),
        ("   ", organisation(), "request_id"),
        ("r" * 65, organisation(), "request_id"),
    ],
)
def test_invalid_input_writes_nothing(
    request_id: str, data: RegistrationInput, bad_field: str,
    service: RegistryService, database: Any,
) -> None:
    with pytest.raises(InvalidArgument) as error:
        service.register_subject(request_id, data)

    assert bad_field in field_of(error)
    assert_nothing_written(database)
    assert database.commits == 0


def test_a_registration_failing_half_way_leaves_nothing_behind(
    catalog: Any, protector: Any, clock: Any, database: Any, uow_factory: Any
) -> None:
    # Two registrations draw the same subject id (as two racing requests might): the second
    # fails when its subject is added, after nothing else of it was committed.
    service = RegistryService(
        uow_factory, catalog, protector, clock=clock, new_subject_id=lambda _: UNKNOWN_ID
    )
    first = service.register_subject("req-1", organisation())
    before = database.snapshot()

    with pytest.raises(AlreadyExists):
        service.register_subject("req-2", organisation(credit_code=OTHER_CREDIT_CODE))

    assert database.committed == before
    assert database.subject_ids() == [first.subject_id]
    assert len(database.published) == 1


# -- get and lookup ------------------------------------------------------------------------------


def test_get_subject(service: RegistryService) -> None:
    created = service.register_subject("req-1", organisation())
    assert service.get_subject(created.subject_id.lower()) == created

    with pytest.raises(InvalidArgument) as error:
        service.get_subject("not-an-id")
    assert field_of(error) == ["subject_id"]

    with pytest.raises(NotFound) as missing:
        service.get_subject(UNKNOWN_ID)
    assert missing.value.reason == "SUBJECT_NOT_FOUND"


def test_lookup_by_credit_code(service: RegistryService) -> None:
    created = service.register_subject("req-1", organisation())
    service.register_subject("req-2", organisation(credit_code=OTHER_CREDIT_CODE))

    found = service.lookup_subject(credit_code=" " + CREDIT_CODE.lower() + " ")

    assert found.subject_id == created.subject_id


def test_lookup_by_resident_id_with_a_lower_case_x(service: RegistryService) -> None:
    created = service.register_subject("req-1", farmer())

    found = service.lookup_subject(resident_id=RESIDENT_ID.lower())

    assert found.subject_id == created.subject_id
    assert found.resident_id_masked == "330106********123X"


def test_lookup_of_an_unknown_key_is_not_found(service: RegistryService) -> None:
    service.register_subject("req-1", organisation())
    with pytest.raises(NotFound):
        service.lookup_subject(credit_code=OTHER_CREDIT_CODE)
    with pytest.raises(NotFound) as error:
        service.lookup_subject(resident_id=RESIDENT_ID)
    assert RESIDENT_ID not in str(error.value)


@pytest.mark.parametrize(
    ("keys", "bad_field"),
    [
        ({}, "key"),
        ({"credit_code": CREDIT_CODE, "resident_id": RESIDENT_ID}, "key"),
        ({"credit_code": "91330106"}, "credit_code"),
        ({"resident_id": RESIDENT_ID[:-1] + "1"}, "resident_id"),
    ],
)
def test_lookup_refuses_bad_keys(
    keys: dict[str, str], bad_field: str, service: RegistryService
) -> None:
    with pytest.raises(InvalidArgument) as error:
        service.lookup_subject(**keys)
    assert field_of(error) == [bad_field]


# -- update --------------------------------------------------------------------------------------


def test_update_changes_only_the_fields_in_the_mask(
    service: RegistryService, database: Any, clock: Any
) -> None:
    created = service.register_subject("req-1", organisation())
    clock.advance(hours=1)

    updated = service.update_subject(
        created.subject_id,
        organisation(name="杭州西湖龙井茶业有限公司", address="不会被读取"),
        ["name"],
        expected_version=1,
    )

    assert updated.name == "杭州西湖龙井茶业有限公司"
    assert updated.address == "杭州市西湖区龙井路1号"
    assert updated.version == 2
    assert updated.updated_at == clock.now
    assert database.subject(created.subject_id).name == "杭州西湖龙井茶业有限公司"
    event = database.published[-1]
    assert event.name == "subject_updated"
    assert event.payload["changed_fields"] == ["name"]
    assert event.payload["version"] == 2


def test_update_of_a_farmer_keeps_the_identity_and_protects_the_new_phone(
    service: RegistryService, database: Any, protector: Any
) -> None:
    created = service.register_subject("req-1", farmer())

    updated = service.update_subject(
        created.subject_id, farmer(contact_phone="139 1234 5678"), ["contact_phone"], 1
    )

    assert updated.contact_phone_masked == "139****5678"
    assert updated.resident_id_digest == created.resident_id_digest
    assert service.lookup_subject(resident_id=RESIDENT_ID).subject_id == created.subject_id
    text = json.dumps(database.published[-1].payload, ensure_ascii=False)
    assert "13912345678" not in text
    assert RESIDENT_ID not in text


@pytest.mark.parametrize(
    "fields", [["nickname"], ["name", "status"], ["credit_code"], ["resident_id"], ["kind"], []]
)
def test_update_refuses_unknown_fields_and_identity_keys(
    fields: list[str], service: RegistryService, database: Any
) -> None:
    created = service.register_subject("req-1", organisation())
    before = database.snapshot()

    with pytest.raises(InvalidArgument) as error:
        service.update_subject(
            created.subject_id,
            organisation(credit_code=OTHER_CREDIT_CODE, kind=SubjectKind.PROCESSOR, name="新"),
            fields,
            1,
        )

    assert field_of(error) == ["update_mask"]
    assert database.committed == before
    assert len(database.published) == 1


def test_update_with_a_stale_version_is_a_concurrency_conflict(
    service: RegistryService, database: Any
) -> None:
    created = service.register_subject("req-1", organisation())
    service.update_subject(created.subject_id, organisation(address="一"), ["address"], 1)
    before = database.snapshot()

    with pytest.raises(ConcurrencyConflict) as error:
        service.update_subject(created.subject_id, organisation(address="二"), ["address"], 1)

    assert error.value.metadata == {"current_version": "2"}
    assert database.committed == before
    assert database.subject(created.subject_id).address == "一"
    assert len(database.published) == 2


def test_update_needs_a_version(service: RegistryService) -> None:
    created = service.register_subject("req-1", organisation())
    with pytest.raises(InvalidArgument) as error:
        service.update_subject(created.subject_id, organisation(address="一"), ["address"], 0)
    assert field_of(error) == ["version"]


def test_update_validates_the_changed_fields(service: RegistryService, database: Any) -> None:
    created = service.register_subject("req-1", organisation())
    before = database.snapshot()
    with pytest.raises(InvalidArgument) as error:
        service.update_subject(
            created.subject_id, organisation(division_code="330100", name=""),
            ["division_code", "name"], 1,
        )
    assert sorted(field_of(error)) == ["registration.division_code", "registration.name"]
    assert database.committed == before


def test_update_of_an_unknown_subject_is_not_found(service: RegistryService) -> None:
    with pytest.raises(NotFound):
        service.update_subject(UNKNOWN_ID, organisation(), ["name"], 1)


def test_updating_a_rejected_subject_resubmits_it(service: RegistryService) -> None:
    created = service.register_subject("req-1", organisation())
    rejected = service.review_subject(created.subject_id, ReviewDecision.REJECT, "名称有误", 1)
    assert rejected.status is SubjectStatus.REJECTED

    updated = service.update_subject(
        created.subject_id, organisation(name="杭州西湖龙井茶业有限公司"), ["name"], 2
    )

    assert updated.status is SubjectStatus.PENDING_REVIEW
    assert updated.status_reason == ""
    assert updated.version == 3


# -- review --------------------------------------------------------------------------------------


def test_review_approves_and_announces_it(service: RegistryService, database: Any) -> None:
    created = service.register_subject("req-1", organisation())

    approved = service.review_subject(created.subject_id, ReviewDecision.APPROVE, "", 1)

    assert approved.status is SubjectStatus.APPROVED
    assert approved.version == 2
    assert database.subject(created.subject_id).status is SubjectStatus.APPROVED
    event = database.published[-1]
    assert event.name == "subject_reviewed"
    assert (event.payload["previous_status"], event.payload["decision"],
            event.payload["status"], event.payload["reason"]) == (
        "PENDING_REVIEW", "APPROVE", "APPROVED", "")


def test_review_with_a_reason_and_without_a_version_check(
    service: RegistryService, database: Any
) -> None:
    created = service.register_subject("req-1", organisation())
    service.review_subject(created.subject_id, ReviewDecision.APPROVE, "", 0)

    suspended = service.review_subject(created.subject_id, ReviewDecision.SUSPEND, "抽检不合格", 0)

    assert suspended.status is SubjectStatus.SUSPENDED
    assert suspended.status_reason == "抽检不合格"
    assert database.published[-1].payload["reason"] == "抽检不合格"


def test_an_illegal_review_changes_nothing(service: RegistryService, database: Any) -> None:
    created = service.register_subject("req-1", organisation())
    before = database.snapshot()

    with pytest.raises(FailedPrecondition) as error:
        service.review_subject(created.subject_id, ReviewDecision.REINSTATE, "", 1)

    assert error.value.reason == "ILLEGAL_STATUS_TRANSITION"
    assert database.committed == before
    assert len(database.published) == 1


def test_a_review_with_a_stale_version_is_refused(service: RegistryService, database: Any) -> None:
    created = service.register_subject("req-1", organisation())
    service.review_subject(created.subject_id, ReviewDecision.APPROVE, "", 1)

    with pytest.raises(ConcurrencyConflict):
        service.review_subject(created.subject_id, ReviewDecision.SUSPEND, "抽检", 1)

    assert database.subject(created.subject_id).status is SubjectStatus.APPROVED


def test_a_review_needs_a_decision(service: RegistryService) -> None:
    created = service.register_subject("req-1", organisation())
    with pytest.raises(InvalidArgument) as error:
        service.review_subject(created.subject_id, None, "", 1)
    assert field_of(error) == ["decision"]


# -- list ----------------------------------------------------------------------------------------


@pytest.fixture
def populated(service: RegistryService) -> dict[str, Any]:
    """13 subjects over three counties (two provinces), two kinds, and two statuses."""
    by_id: dict[str, Any] = {}
    divisions = ["330106", "330102", "320102"]
    for serial in range(13):
        division = divisions[serial % 3]
        kind = SubjectKind.ENTERPRISE if serial % 2 == 0 else SubjectKind.COOPERATIVE
        subject = service.register_subject(
            f"req-{serial}",
            organisation(
                kind=kind, name=f"主体{serial}", division_code=division,
                credit_code=credit_code(division, serial),
            ),
        )
        if serial % 4 == 0:
            subject = service.review_subject(subject.subject_id, ReviewDecision.APPROVE, "", 1)
        by_id[subject.subject_id] = subject
    return by_id


def all_pages(
    service: RegistryService, query: SubjectQuery, page_size: int
) -> list[list[str]]:
    pages: list[list[str]] = []
    token = ""
    while True:
        page, token = service.list_subjects(query, page_size, token)
        pages.append([subject.subject_id for subject in page])
        if not token:
            return pages
        assert len(pages) < 50, "pagination does not end"


@pytest.mark.parametrize(
    "query",
    [
        SubjectQuery(),
        SubjectQuery(division_prefix="33"),
        SubjectQuery(division_prefix="3301"),
        SubjectQuery(division_prefix="330106"),
        SubjectQuery(kind=SubjectKind.COOPERATIVE),
        SubjectQuery(status=SubjectStatus.APPROVED),
        SubjectQuery(division_prefix="33", kind=SubjectKind.ENTERPRISE,
                     status=SubjectStatus.PENDING_REVIEW),
    ],
)
def test_pages_of_three_return_every_matching_subject_exactly_once_in_order(
    query: SubjectQuery, service: RegistryService, populated: dict[str, Any]
) -> None:
    expected = sorted(
        subject_id
        for subject_id, subject in populated.items()
        if subject.division_code.startswith(query.division_prefix)
        and (query.kind is None or subject.kind is query.kind)
        and (query.status is None or subject.status is query.status)
    )
    assert expected, "the query should match something"

    pages = all_pages(service, query, 3)

    flat = [subject_id for page in pages for subject_id in page]
    assert flat == expected
    assert all(len(page) == 3 for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= 3
    assert len(pages) == -(-len(expected) // 3)


def test_listing_is_repeatable(service: RegistryService, populated: dict[str, Any]) -> None:
    assert all_pages(service, SubjectQuery(), 4) == all_pages(service, SubjectQuery(), 4)
    first, _ = service.list_subjects(SubjectQuery(), 0, "")  # 0: the default page size
    assert [s.subject_id for s in first] == sorted(populated)


def test_a_token_used_with_other_filters_is_refused(
    service: RegistryService, populated: dict[str, Any]
) -> None:
    _, token = service.list_subjects(SubjectQuery(division_prefix="33"), 3, "")
    assert token

    with pytest.raises(InvalidArgument) as error:
        service.list_subjects(SubjectQuery(division_prefix="32"), 3, token)
    assert field_of(error) == ["page_token"]
    with pytest.raises(InvalidArgument):
        service.list_subjects(
            SubjectQuery(division_prefix="33", kind=SubjectKind.ENTERPRISE), 3, token
        )
    # With the same filters it goes on; a different page size is fine.
    page, _ = service.list_subjects(SubjectQuery(division_prefix="33"), 5, token)
    assert page


@pytest.mark.parametrize(
    "token",
    [
        "garbage!",
        "bm90IGpzb24",  # base64 of "not json"
        encode_token([UNKNOWN_ID, "x"])[:-3] + "%%%",
        "WzFd",  # base64 of "[1]"
        "5",
        "ä",
    ],
)
def test_a_garbage_token_is_refused(
    token: str, service: RegistryService, populated: dict[str, Any]
) -> None:
    with pytest.raises(InvalidArgument) as error:
        service.list_subjects(SubjectQuery(), 3, token)
    assert field_of(error) == ["page_token"]


@pytest.mark.parametrize("prefix", ["99", "3", "33010", "3301060", "33x1", "990000"])
def test_an_invalid_division_prefix_is_refused(prefix: str, service: RegistryService) -> None:
    with pytest.raises(InvalidArgument) as error:
        service.list_subjects(SubjectQuery(division_prefix=prefix), 3, "")
    assert field_of(error) == ["division_prefix"]


def test_a_negative_page_size_is_refused(service: RegistryService) -> None:
    with pytest.raises(InvalidArgument) as error:
        service.list_subjects(SubjectQuery(), -1, "")
    assert field_of(error) == ["page_size"]


def test_listed_subjects_carry_provenance(
    service: RegistryService, populated: dict[str, Any], clock: Any
) -> None:
    page, _ = service.list_subjects(SubjectQuery(), 2, "")
    assert [s.provenance for s in page] == [[Provenance("national", "", clock.now)]] * 2
