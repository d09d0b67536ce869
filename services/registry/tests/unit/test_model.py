"""The registry's domain model: registration rules, the review state machine, import
contradictions and the protection of personal data on the entity."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agritrace_kernel.errors import FailedPrecondition, InvalidArgument
from agritrace_registry.domain.divisions import DivisionCatalog
from agritrace_registry.domain.model import (
    FLAG_CREDIT_CODE_CHECK_FAILED,
    FLAG_IMPORT_CONFLICT,
    IdentityKey,
    RegistrationInput,
    ReviewDecision,
    Subject,
    SubjectKind,
    SubjectStatus,
    ValidRegistration,
    contradictions,
    name_key,
    normalize_text,
    validate_registration,
)

NOW = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
SUBJECT_ID = "S330000000000000"  # the model does not check ids; the services do

CREDIT_CODE = "91330106MA2XXXXX0Y"  # valid GB 32100 check character
CREDIT_CODE_BAD_CHECK = "91330106MA2XXXXX0A"  # well-formed, wrong check character
RESIDENT_ID = "33010619900101123X"  # valid GB 11643 check character
PHONE = "13800011111"

ORGANISATION_KINDS = [
    SubjectKind.ENTERPRISE,
    SubjectKind.COOPERATIVE,
    SubjectKind.PROCESSOR,
    SubjectKind.WHOLESALE_MARKET,
    SubjectKind.COLLECTIVE,
]
EITHER_KINDS = [SubjectKind.FAMILY_FARM, SubjectKind.TRADER, SubjectKind.RETAILER]


def organisation(**changes: Any) -> RegistrationInput:
    base = RegistrationInput(
        kind=SubjectKind.ENTERPRISE,
        name="杭州西湖龙井茶叶有限公司",
        credit_code=CREDIT_CODE,
        division_code="330106",
        address="杭州市西湖区龙井路1号",
        legal_representative="王五",
        contact_phone="0571-87654321",
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


def violations(error: pytest.ExceptionInfo[InvalidArgument]) -> dict[str, str]:
    return {v.field: v.description for v in error.value.violations}


def register(
    data: RegistrationInput, catalog: DivisionCatalog, protector: Any, now: datetime = NOW
) -> Subject:
    return Subject.register(SUBJECT_ID, validate_registration(data, catalog), protector, now)


def subject_in(status: SubjectStatus, catalog: DivisionCatalog, protector: Any) -> Subject:
    subject = register(organisation(), catalog, protector)
    path = {
        SubjectStatus.PENDING_REVIEW: [],
        SubjectStatus.APPROVED: [ReviewDecision.APPROVE],
        SubjectStatus.REJECTED: [ReviewDecision.REJECT],
        SubjectStatus.SUSPENDED: [ReviewDecision.APPROVE, ReviewDecision.SUSPEND],
    }[status]
    for decision in path:
        subject.review(decision, "资料不全", NOW)
    assert subject.status is status
    return subject


# -- the review state machine ------------------------------------------------------------------

LEGAL_MOVES = [
    (SubjectStatus.PENDING_REVIEW, ReviewDecision.APPROVE, SubjectStatus.APPROVED),
    (SubjectStatus.PENDING_REVIEW, ReviewDecision.REJECT, SubjectStatus.REJECTED),
    (SubjectStatus.APPROVED, ReviewDecision.SUSPEND, SubjectStatus.SUSPENDED),
    (SubjectStatus.SUSPENDED, ReviewDecision.REINSTATE, SubjectStatus.APPROVED),
]
ILLEGAL_MOVES = [
    (status, decision)
    for status, decision in itertools.product(SubjectStatus, ReviewDecision)
    if (status, decision) not in {(s, d) for s, d, _ in LEGAL_MOVES}
]


def test_there_are_twelve_illegal_moves() -> None:
    assert len(ILLEGAL_MOVES) == 12


@pytest.mark.parametrize(("start", "decision", "target"), LEGAL_MOVES)
def test_every_legal_move(
    start: SubjectStatus,
    decision: ReviewDecision,
    target: SubjectStatus,
    catalog: DivisionCatalog,
    protector: Any,
) -> None:
    subject = subject_in(start, catalog, protector)
    version = subject.version

    previous = subject.review(decision, "经营资质到期", LATER)

    assert previous is start
    assert subject.status is target
    assert subject.version == version + 1
    assert subject.updated_at == LATER
    assert subject.created_at == NOW


@pytest.mark.parametrize(("start", "decision"), ILLEGAL_MOVES)
def test_every_illegal_move_is_a_failed_precondition(
    start: SubjectStatus, decision: ReviewDecision, catalog: DivisionCatalog, protector: Any
) -> None:
    subject = subject_in(start, catalog, protector)
    before = dataclasses.replace(subject)

    with pytest.raises(FailedPrecondition) as error:
        subject.review(decision, "a reason, so only the move itself is wrong", LATER)

    assert error.value.reason == "ILLEGAL_STATUS_TRANSITION"
    assert error.value.metadata == {"from": start.value, "decision": decision.value}
    assert subject.status is start
    assert subject.version == before.version
    assert subject.updated_at == before.updated_at


def test_illegal_move_names_the_allowed_decisions(
    catalog: DivisionCatalog, protector: Any
) -> None:
    subject = subject_in(SubjectStatus.PENDING_REVIEW, catalog, protector)
    with pytest.raises(FailedPrecondition) as error:
        subject.review(ReviewDecision.REINSTATE, "", LATER)
    assert "allowed: APPROVE, REJECT" in error.value.message


@pytest.mark.parametrize(
    ("start", "decision"),
    [
        (SubjectStatus.PENDING_REVIEW, ReviewDecision.REJECT),
        (SubjectStatus.APPROVED, ReviewDecision.SUSPEND),
    ],
)
@pytest.mark.parametrize("reason", ["", "   ", "\u3000"])
def test_reject_and_suspend_need_a_reason(
    start: SubjectStatus,
    decision: ReviewDecision,
    reason: str,
    catalog: DivisionCatalog,
    protector: Any,
) -> None:
    subject = subject_in(start, catalog, protector)
    version = subject.version

    with pytest.raises(InvalidArgument) as error:
        subject.review(decision, reason, LATER)

    assert list(violations(error)) == ["reason"]
    assert subject.status is start
    assert subject.version == version


def test_reason_longer_than_500_characters_is_refused(
    catalog: DivisionCatalog, protector: Any
) -> None:
    subject = subject_in(SubjectStatus.PENDING_REVIEW, catalog, protector)
    with pytest.raises(InvalidArgument) as error:
        subject.review(ReviewDecision.REJECT, "x" * 501, LATER)
    assert list(violations(error)) == ["reason"]
    assert subject.status is SubjectStatus.PENDING_REVIEW


def test_reason_is_kept_for_reject_and_suspend_and_cleared_on_approval(
    catalog: DivisionCatalog, protector: Any
) -> None:
    subject = subject_in(SubjectStatus.APPROVED, catalog, protector)
    subject.review(ReviewDecision.SUSPEND, "  抽检  不合格 ", LATER)
    assert subject.status_reason == "抽检 不合格"
    subject.review(ReviewDecision.REINSTATE, "整改完成", LATER)
    assert subject.status is SubjectStatus.APPROVED
    assert subject.status_reason == ""


def test_approval_clears_review_flags(catalog: DivisionCatalog, protector: Any) -> None:
    subject = register(organisation(credit_code=CREDIT_CODE_BAD_CHECK), catalog, protector)
    assert subject.review_flags == [FLAG_CREDIT_CODE_CHECK_FAILED]
    subject.review(ReviewDecision.APPROVE, "", LATER)
    assert subject.review_flags == []


def test_a_rejected_subject_that_is_updated_goes_back_to_review(
    catalog: DivisionCatalog, protector: Any
) -> None:
    subject = subject_in(SubjectStatus.REJECTED, catalog, protector)
    assert subject.status_reason == "资料不全"
    version = subject.version
    corrected = validate_registration(organisation(name="杭州西湖龙井茶业有限公司"), catalog)

    subject.update(corrected, ["name"], protector, LATER)

    assert subject.status is SubjectStatus.PENDING_REVIEW
    assert subject.status_reason == ""
    assert subject.name == "杭州西湖龙井茶业有限公司"
    assert subject.version == version + 1
    assert subject.updated_at == LATER


def test_an_update_of_an_approved_subject_keeps_its_status(
    catalog: DivisionCatalog, protector: Any
) -> None:
    subject = subject_in(SubjectStatus.APPROVED, catalog, protector)
    changed = validate_registration(organisation(address="西湖区梅家坞"), catalog)
    subject.update(changed, ["address"], protector, LATER)
    assert subject.status is SubjectStatus.APPROVED
    assert subject.address == "西湖区梅家坞"
    # Fields not named stay as they were.
    assert subject.name == "杭州西湖龙井茶叶有限公司"


def test_update_seals_a_new_phone_and_clears_a_removed_one(
    catalog: DivisionCatalog, protector: Any
) -> None:
    subject = register(farmer(), catalog, protector)
    subject.update(validate_registration(farmer(contact_phone="13912345678"), catalog),
                   ["contact_phone"], protector, LATER)
    assert subject.contact_phone_masked == "139****5678"
    assert subject.contact_phone_sealed is not None
    assert protector.unseal(subject.contact_phone_sealed) == "13912345678"

    subject.update(validate_registration(farmer(contact_phone=""), catalog),
                   ["contact_phone"], protector, LATER)
    assert subject.contact_phone_sealed is None
    assert subject.contact_phone_masked == ""
    assert subject.version == 3


def test_flag_adds_once_and_versions_only_stored_subjects(
    catalog: DivisionCatalog, protector: Any
) -> None:
    subject = register(organisation(), catalog, protector)
    assert subject.version == 1

    assert subject.flag(FLAG_IMPORT_CONFLICT) is True  # not stored yet: no new version
    assert subject.version == 1
    assert subject.flag(FLAG_IMPORT_CONFLICT, LATER) is False  # already there
    assert subject.version == 1

    stored = register(organisation(), catalog, protector)
    assert stored.flag(FLAG_IMPORT_CONFLICT, LATER) is True
    assert stored.version == 2
    assert stored.updated_at == LATER
    assert stored.review_flags == [FLAG_IMPORT_CONFLICT]


def test_a_new_subject_is_pending_review_at_version_one(
    catalog: DivisionCatalog, protector: Any
) -> None:
    subject = register(organisation(), catalog, protector)
    assert subject.status is SubjectStatus.PENDING_REVIEW
    assert subject.version == 1
    assert (subject.created_at, subject.updated_at) == (NOW, NOW)
    assert subject.province == "33"
    assert subject.identity_key == IdentityKey("credit_code", CREDIT_CODE)


# -- validate_registration -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ORGANISATION_KINDS)
def test_organisations_need_a_credit_code(kind: SubjectKind, catalog: DivisionCatalog) -> None:
    valid = validate_registration(organisation(kind=kind), catalog)
    assert valid.kind is kind
    assert valid.credit_code == CREDIT_CODE
    assert valid.resident_id is None

    with pytest.raises(InvalidArgument) as error:
        validate_registration(organisation(kind=kind, credit_code=""), catalog)
    assert violations(error) == {"registration.credit_code": f"is required for {kind.value}"}


@pytest.mark.parametrize("kind", ORGANISATION_KINDS)
def test_organisations_may_not_register_with_a_resident_id(
    kind: SubjectKind, catalog: DivisionCatalog
) -> None:
    with pytest.raises(InvalidArgument) as error:
        validate_registration(organisation(kind=kind, credit_code="", resident_id=RESIDENT_ID),
                              catalog)
    found = violations(error)
    assert set(found) == {"registration.credit_code", "registration.resident_id"}
    assert "use credit_code" in found["registration.resident_id"]


def test_individual_farmers_need_a_resident_id(catalog: DivisionCatalog) -> None:
    valid = validate_registration(farmer(), catalog)
    assert valid.resident_id == RESIDENT_ID
    assert valid.credit_code is None

    with pytest.raises(InvalidArgument) as error:
        validate_registration(farmer(resident_id=""), catalog)
    assert violations(error) == {
        "registration.resident_id": "is required for INDIVIDUAL_FARMER"
    }

    with pytest.raises(InvalidArgument) as error:
        validate_registration(farmer(resident_id="", credit_code=CREDIT_CODE), catalog)
    assert set(violations(error)) == {"registration.resident_id", "registration.credit_code"}


@pytest.mark.parametrize("kind", EITHER_KINDS)
def test_family_farms_traders_and_retailers_take_either_document(
    kind: SubjectKind, catalog: DivisionCatalog
) -> None:
    by_code = validate_registration(organisation(kind=kind), catalog)
    by_person = validate_registration(farmer(kind=kind), catalog)
    assert (by_code.credit_code, by_code.resident_id) == (CREDIT_CODE, None)
    assert (by_person.credit_code, by_person.resident_id) == (None, RESIDENT_ID)

    with pytest.raises(InvalidArgument) as error:
        validate_registration(farmer(kind=kind, resident_id=""), catalog)
    assert violations(error) == {
        "registration.credit_code": "a credit code or a resident ID number is required"
    }


@pytest.mark.parametrize("kind", EITHER_KINDS)
def test_both_documents_are_refused(kind: SubjectKind, catalog: DivisionCatalog) -> None:
    with pytest.raises(InvalidArgument) as error:
        validate_registration(farmer(kind=kind, credit_code=CREDIT_CODE), catalog)
    assert violations(error) == {
        "registration.resident_id": "give either a credit code or a resident ID number, not both"
    }


def test_every_violation_is_reported_at_once(catalog: DivisionCatalog) -> None:
    data = RegistrationInput(
        kind=None,
        name="   ",
        credit_code="91330106MA2XXXXX",  # 16 characters
        division_code="330100",  # a city, not a county
        address="路" * 301,
        legal_representative="王" * 101,
        contact_phone="12345",
    )
    with pytest.raises(InvalidArgument) as error:
        validate_registration(data, catalog)
    assert set(violations(error)) == {
        "registration.kind",
        "registration.name",
        "registration.credit_code",
        "registration.division_code",
        "registration.address",
        "registration.legal_representative",
        "registration.contact_phone",
    }
    assert len(error.value.violations) == 7


def test_a_custom_prefix_is_used_for_field_paths(catalog: DivisionCatalog) -> None:
    with pytest.raises(InvalidArgument) as error:
        validate_registration(organisation(name=""), catalog, prefix="records[3]")
    assert list(violations(error)) == ["records[3].name"]


def test_violations_never_repeat_the_resident_id(catalog: DivisionCatalog) -> None:
    mistyped = RESIDENT_ID[:-1] + "7"  # wrong check character
    with pytest.raises(InvalidArgument) as error:
        validate_registration(farmer(resident_id=mistyped), catalog)
    found = violations(error)
    assert list(found) == ["registration.resident_id"]
    assert mistyped not in str(error.value)
    assert "19900101" not in str(error.value)


@pytest.mark.parametrize(
    ("division_code", "fragment"),
    [
        ("110103", "retired"),  # 崇文区, merged into 东城区 in 2010
        ("330100", "county-level"),
        ("999999", "unknown"),
        ("33010", "6 digits"),
        ("", "6 digits"),
    ],
)
def test_the_division_must_be_a_current_county(
    division_code: str, fragment: str, catalog: DivisionCatalog
) -> None:
    with pytest.raises(InvalidArgument) as error:
        validate_registration(organisation(division_code=division_code), catalog)
    found = violations(error)
    assert list(found) == ["registration.division_code"]
    assert fragment in found["registration.division_code"]


def test_a_name_longer_than_200_characters_is_refused(catalog: DivisionCatalog) -> None:
    assert validate_registration(organisation(name="茶" * 200), catalog).name == "茶" * 200
    with pytest.raises(InvalidArgument) as error:
        validate_registration(organisation(name="茶" * 201), catalog)
    assert list(violations(error)) == ["registration.name"]


def test_a_bad_credit_code_check_character_is_accepted_for_review(
    catalog: DivisionCatalog, protector: Any
) -> None:
    valid = validate_registration(organisation(credit_code=CREDIT_CODE_BAD_CHECK), catalog)
    assert valid.credit_code == CREDIT_CODE_BAD_CHECK
    assert valid.credit_code_check_ok is False
    assert valid.review_flags == (FLAG_CREDIT_CODE_CHECK_FAILED,)

    subject = Subject.register(SUBJECT_ID, valid, protector, NOW)
    assert subject.review_flags == [FLAG_CREDIT_CODE_CHECK_FAILED]
    assert subject.status is SubjectStatus.PENDING_REVIEW

    good = validate_registration(organisation(), catalog)
    assert good.credit_code_check_ok is True
    assert good.review_flags == ()


def test_full_width_input_is_normalised(catalog: DivisionCatalog) -> None:
    data = RegistrationInput(
        kind=SubjectKind.TRADER,
        name="  ＡＢＣ\u3000 茶叶  贸易 ",
        resident_id="３３０１０６１９９００１０１１２３ｘ",
        division_code=" 330106 ",
        address="杭州市\u3000西湖区　１号",
        legal_representative=" 张　三 ",
        contact_phone="＋８６ １３８ ０００１ １１１１",
    )
    valid = validate_registration(data, catalog)
    assert valid == ValidRegistration(
        kind=SubjectKind.TRADER,
        name="ABC 茶叶 贸易",
        division_code="330106",
        resident_id=RESIDENT_ID,
        address="杭州市 西湖区 1号",
        legal_representative="张 三",
        contact_phone=PHONE,
    )


def test_full_width_lower_case_credit_code_is_normalised(catalog: DivisionCatalog) -> None:
    full_width = "".join(chr(ord(ch) + 0xFEE0) for ch in CREDIT_CODE.lower())
    valid = validate_registration(organisation(credit_code=f" {full_width} "), catalog)
    assert valid.credit_code == CREDIT_CODE
    assert valid.credit_code_check_ok is True


def test_full_width_division_code_is_normalised(catalog: DivisionCatalog) -> None:
    valid = validate_registration(organisation(division_code="３３０１０６"), catalog)
    assert valid.division_code == "330106"


def test_identity_key_of_a_registration(catalog: DivisionCatalog, protector: Any) -> None:
    by_code = validate_registration(organisation(), catalog)
    by_person = validate_registration(farmer(), catalog)
    assert by_code.identity_key(protector) == IdentityKey("credit_code", CREDIT_CODE)
    assert by_person.identity_key(protector) == IdentityKey(
        "resident_id", protector.digest(RESIDENT_ID)
    )


def test_normalize_text_and_name_key() -> None:
    assert normalize_text("  Ａ\u3000 b\t c ") == "A b c"
    assert name_key(" 西湖 龙井 ＴＥＡ ") == "西湖龙井tea"
    assert name_key("西湖龙井Tea") == name_key("西湖 龙井 ｔｅａ")
    assert name_key("西湖龙井") != name_key("西湖龙井茶")


# -- contradictions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        "杭州西湖龙井茶叶有限公司",
        " 杭州 西湖龙井 茶叶有限公司 ",
        "杭州西湖龙井茶叶有限公司\u3000",
    ],
)
def test_name_variants_are_not_a_conflict(
    variant: str, catalog: DivisionCatalog, protector: Any
) -> None:
    existing = register(organisation(), catalog, protector)
    incoming = validate_registration(organisation(name=variant), catalog)
    assert contradictions(existing, incoming) == []


def test_width_and_case_variants_of_a_latin_name_are_not_a_conflict(
    catalog: DivisionCatalog, protector: Any
) -> None:
    existing = register(organisation(name="Longjing Tea Co"), catalog, protector)
    incoming = validate_registration(organisation(name="ＬＯＮＧＪＩＮＧ  teaco"), catalog)
    assert contradictions(existing, incoming) == []


@pytest.mark.parametrize(
    ("changes", "differing"),
    [
        ({"kind": SubjectKind.PROCESSOR}, ["kind"]),
        ({"name": "杭州西湖龙井茶业有限公司"}, ["name"]),
        ({"division_code": "330102"}, ["division_code"]),
        (
            {"kind": SubjectKind.COOPERATIVE, "name": "梅家坞合作社", "division_code": "330105"},
            ["kind", "name", "division_code"],
        ),
    ],
)
def test_kind_name_and_division_differences_are_conflicts(
    changes: dict[str, Any], differing: list[str], catalog: DivisionCatalog, protector: Any
) -> None:
    existing = register(organisation(), catalog, protector)
    incoming = validate_registration(organisation(**changes), catalog)
    assert contradictions(existing, incoming) == differing


def test_address_phone_and_representative_differences_are_not_conflicts(
    catalog: DivisionCatalog, protector: Any
) -> None:
    existing = register(organisation(), catalog, protector)
    incoming = validate_registration(
        organisation(
            address="另一个地址", contact_phone="13987654321", legal_representative="赵六"
        ),
        catalog,
    )
    assert contradictions(existing, incoming) == []


# -- personal data on the entity -------------------------------------------------------------------


def _all_text(value: object) -> str:
    """Every string reachable from a dataclass, joined."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return " ".join(_all_text(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, list | tuple | set):
        return " ".join(_all_text(item) for item in value)
    return str(value)


def test_register_never_keeps_the_clear_id_number_or_phone(
    catalog: DivisionCatalog, protector: Any
) -> None:
    subject = register(farmer(), catalog, protector)

    text = _all_text(subject) + repr(subject)
    assert RESIDENT_ID not in text
    assert PHONE not in text
    assert subject.resident_id_masked == "330106********123X"
    assert subject.contact_phone_masked == "138****1111"
    assert subject.resident_id_digest == protector.digest(RESIDENT_ID)
    assert subject.resident_id_sealed is not None
    assert subject.contact_phone_sealed is not None
    # Sealed values are reversible for authorised disclosure.
    assert protector.unseal(subject.resident_id_sealed) == RESIDENT_ID
    assert protector.unseal(subject.contact_phone_sealed) == PHONE
    assert subject.identity_key == IdentityKey("resident_id", protector.digest(RESIDENT_ID))


def test_an_organisation_without_phone_has_no_sealed_data(
    catalog: DivisionCatalog, protector: Any
) -> None:
    subject = register(organisation(contact_phone=""), catalog, protector)
    assert subject.resident_id_digest is None
    assert subject.resident_id_sealed is None
    assert subject.resident_id_masked == ""
    assert subject.contact_phone_sealed is None
    assert subject.contact_phone_masked == ""
    assert subject.credit_code == CREDIT_CODE


def test_a_fixed_line_phone_is_masked(catalog: DivisionCatalog, protector: Any) -> None:
    subject = register(organisation(contact_phone="0571-87654321"), catalog, protector)
    assert subject.contact_phone_masked == "0571-******21"
    assert "87654321" not in _all_text(subject)
