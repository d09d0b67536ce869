"""The subject registry's domain: subjects, their identity keys, the review state machine and
the de-duplication rules of imports. No framework imports here."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from agritrace_kernel.errors import FailedPrecondition, InvalidArgument, ViolationCollector
from agritrace_registry.domain import identifiers
from agritrace_registry.domain.divisions import DivisionCatalog


class SubjectKind(StrEnum):
    ENTERPRISE = "ENTERPRISE"
    COOPERATIVE = "COOPERATIVE"
    FAMILY_FARM = "FAMILY_FARM"
    INDIVIDUAL_FARMER = "INDIVIDUAL_FARMER"
    PROCESSOR = "PROCESSOR"
    TRADER = "TRADER"
    WHOLESALE_MARKET = "WHOLESALE_MARKET"
    RETAILER = "RETAILER"
    COLLECTIVE = "COLLECTIVE"


# Which identity document each kind of subject registers with.
ORGANISATION_KINDS = frozenset(
    {
        SubjectKind.ENTERPRISE,
        SubjectKind.COOPERATIVE,
        SubjectKind.PROCESSOR,
        SubjectKind.WHOLESALE_MARKET,
        SubjectKind.COLLECTIVE,
    }
)
PERSON_KINDS = frozenset({SubjectKind.INDIVIDUAL_FARMER})
# Family farms, traders and retailers may be registered businesses or natural persons.


class SubjectStatus(StrEnum):
    PENDING_REVIEW = "PENDING_REVIEW"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    SUSPENDED = "SUSPENDED"


class ReviewDecision(StrEnum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"
    SUSPEND = "SUSPEND"
    REINSTATE = "REINSTATE"


# The review state machine: (from, decision) -> to. Anything else is an illegal move.
REVIEW_TRANSITIONS: dict[tuple[SubjectStatus, ReviewDecision], SubjectStatus] = {
    (SubjectStatus.PENDING_REVIEW, ReviewDecision.APPROVE): SubjectStatus.APPROVED,
    (SubjectStatus.PENDING_REVIEW, ReviewDecision.REJECT): SubjectStatus.REJECTED,
    (SubjectStatus.APPROVED, ReviewDecision.SUSPEND): SubjectStatus.SUSPENDED,
    (SubjectStatus.SUSPENDED, ReviewDecision.REINSTATE): SubjectStatus.APPROVED,
}
DECISIONS_NEEDING_REASON = frozenset({ReviewDecision.REJECT, ReviewDecision.SUSPEND})

FLAG_CREDIT_CODE_CHECK_FAILED = "CREDIT_CODE_CHECK_FAILED"
FLAG_IMPORT_CONFLICT = "IMPORT_CONFLICT"

MAX_NAME = 200
MAX_ADDRESS = 300
MAX_PERSON_NAME = 100
MAX_REASON = 500


class PersonalDataProtector(Protocol):
    """Port: how personal data is protected at rest. `digest` is a keyed, deterministic hash
    for equality look-ups; `seal` is reversible encryption for authorised disclosure."""

    def digest(self, value: str) -> str: ...
    def seal(self, value: str) -> str: ...
    def unseal(self, sealed: str) -> str: ...


def normalize_text(value: str) -> str:
    """NFKC (full-width to half-width), trimmed, inner whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", value).split())


def name_key(name: str) -> str:
    """What two spellings of one name have in common: no spaces, no case, NFKC."""
    return "".join(normalize_text(name).split()).casefold()


@dataclass(frozen=True)
class RegistrationInput:
    """A registration as received: raw strings, kind possibly missing."""

    kind: SubjectKind | None
    name: str = ""
    credit_code: str = ""
    resident_id: str = ""
    division_code: str = ""
    address: str = ""
    legal_representative: str = ""
    contact_phone: str = ""


@dataclass(frozen=True)
class IdentityKey:
    """The key under which a subject is unique nationally."""

    kind: str  # "credit_code" or "resident_id"
    value: str  # the credit code, or the keyed digest of the resident ID number


@dataclass(frozen=True)
class ValidRegistration:
    """A registration that passed every rule, normalised. Clear personal data lives only in
    memory here, on its way to being sealed."""

    kind: SubjectKind
    name: str
    division_code: str
    credit_code: str | None = None
    credit_code_check_ok: bool = True
    resident_id: str | None = None
    address: str = ""
    legal_representative: str = ""
    contact_phone: str | None = None

    def identity_key(self, protector: PersonalDataProtector) -> IdentityKey:
        if self.credit_code is not None:
            return IdentityKey("credit_code", self.credit_code)
        assert self.resident_id is not None
        return IdentityKey("resident_id", protector.digest(self.resident_id))

    @property
    def review_flags(self) -> tuple[str, ...]:
        return () if self.credit_code_check_ok else (FLAG_CREDIT_CODE_CHECK_FAILED,)


def validate_registration(
    data: RegistrationInput, catalog: DivisionCatalog, prefix: str = "registration"
) -> ValidRegistration:
    """Checks every rule and reports every violation at once (InvalidArgument)."""
    problems = ViolationCollector(prefix)
    if data.kind is None:
        problems.add("kind", "is required")
    name = normalize_text(data.name)
    if not name:
        problems.add("name", "is required")
    elif len(name) > MAX_NAME:
        problems.add("name", f"is longer than {MAX_NAME} characters")

    credit: identifiers.CreditCodeCheck | None = None
    resident_id: str | None = None
    if data.credit_code.strip():
        try:
            credit = identifiers.parse_credit_code(data.credit_code)
        except identifiers.IdentifierError as error:
            problems.add(error.field, error.reason)
    if data.resident_id.strip():
        try:
            resident_id = identifiers.parse_resident_id(data.resident_id)
        except identifiers.IdentifierError as error:
            problems.add(error.field, error.reason)
    has_credit = bool(data.credit_code.strip())
    has_person = bool(data.resident_id.strip())
    if data.kind is not None:
        if data.kind in ORGANISATION_KINDS and not has_credit:
            problems.add("credit_code", f"is required for {data.kind.value}")
        elif data.kind in PERSON_KINDS and not has_person:
            problems.add("resident_id", f"is required for {data.kind.value}")
        elif not has_credit and not has_person:
            problems.add("credit_code", "a credit code or a resident ID number is required")
    if has_credit and has_person:
        problems.add("resident_id", "give either a credit code or a resident ID number, not both")
    if data.kind in ORGANISATION_KINDS and has_person:
        problems.add("resident_id", f"is not accepted for {data.kind.value}; use credit_code")
    if data.kind in PERSON_KINDS and has_credit:
        problems.add("credit_code", f"is not accepted for {data.kind.value}; use resident_id")

    division_code = unicodedata.normalize("NFKC", data.division_code).strip()
    try:
        catalog.require_county(division_code)
    except identifiers.IdentifierError as error:
        problems.add(error.field, error.reason)

    address = normalize_text(data.address)
    if len(address) > MAX_ADDRESS:
        problems.add("address", f"is longer than {MAX_ADDRESS} characters")
    representative = normalize_text(data.legal_representative)
    if len(representative) > MAX_PERSON_NAME:
        problems.add("legal_representative", f"is longer than {MAX_PERSON_NAME} characters")
    phone: str | None = None
    if data.contact_phone.strip():
        try:
            phone = identifiers.normalize_phone(data.contact_phone)
        except identifiers.IdentifierError as error:
            problems.add(error.field, error.reason)
    problems.raise_if_any()
    assert data.kind is not None
    return ValidRegistration(
        kind=data.kind,
        name=name,
        division_code=division_code,
        credit_code=credit.code if credit else None,
        credit_code_check_ok=credit.check_ok if credit else True,
        resident_id=resident_id,
        address=address,
        legal_representative=representative,
        contact_phone=phone,
    )


def _protect_phone(phone: str | None, protector: PersonalDataProtector) -> tuple[str | None, str]:
    if not phone:
        return None, ""
    return protector.seal(phone), identifiers.mask_phone(phone)


@dataclass(frozen=True)
class ProtectedPersonalData:
    """A registration's personal data as it is kept: digest and sealed value of the ID
    number, sealed phone, and their masked forms. Never the clear values."""

    resident_id_digest: str | None = None
    resident_id_sealed: str | None = None
    resident_id_masked: str = ""
    contact_phone_sealed: str | None = None
    contact_phone_masked: str = ""

    @classmethod
    def of(
        cls, registration: ValidRegistration, protector: PersonalDataProtector
    ) -> ProtectedPersonalData:
        phone_sealed, phone_masked = _protect_phone(registration.contact_phone, protector)
        resident_id = registration.resident_id
        if resident_id is None:
            return cls(contact_phone_sealed=phone_sealed, contact_phone_masked=phone_masked)
        return cls(
            resident_id_digest=protector.digest(resident_id),
            resident_id_sealed=protector.seal(resident_id),
            resident_id_masked=identifiers.mask_resident_id(resident_id),
            contact_phone_sealed=phone_sealed,
            contact_phone_masked=phone_masked,
        )

    def identity_key(self, registration: ValidRegistration) -> IdentityKey:
        if registration.credit_code is not None:
            return IdentityKey("credit_code", registration.credit_code)
        assert self.resident_id_digest is not None
        return IdentityKey("resident_id", self.resident_id_digest)


@dataclass(frozen=True)
class Provenance:
    source: str  # "national" or "province:NN"
    source_record_id: str
    first_seen: datetime


NATIONAL_SOURCE = "national"


def province_source(province: str) -> str:
    return f"province:{province}"


@dataclass
class Subject:
    """A registered producer or trader. Personal data is held only protected (digest + sealed)
    and masked."""

    subject_id: str
    kind: SubjectKind
    name: str
    division_code: str
    created_at: datetime
    updated_at: datetime
    credit_code: str | None = None
    resident_id_digest: str | None = None
    resident_id_sealed: str | None = None
    resident_id_masked: str = ""
    address: str = ""
    legal_representative: str = ""
    contact_phone_sealed: str | None = None
    contact_phone_masked: str = ""
    status: SubjectStatus = SubjectStatus.PENDING_REVIEW
    status_reason: str = ""
    review_flags: list[str] = field(default_factory=list)
    version: int = 1
    provenance: list[Provenance] = field(default_factory=list)
    suspected_duplicate_ids: list[str] = field(default_factory=list)

    @classmethod
    def register(
        cls,
        subject_id: str,
        registration: ValidRegistration,
        protector: PersonalDataProtector,
        now: datetime,
        personal: ProtectedPersonalData | None = None,
    ) -> Subject:
        """A new subject in PENDING_REVIEW. `personal` may carry the registration's personal
        data already protected (bulk imports do that ahead of time)."""
        if personal is None:
            personal = ProtectedPersonalData.of(registration, protector)
        return cls(
            subject_id=subject_id,
            kind=registration.kind,
            name=registration.name,
            division_code=registration.division_code,
            created_at=now,
            updated_at=now,
            credit_code=registration.credit_code,
            address=registration.address,
            legal_representative=registration.legal_representative,
            review_flags=list(registration.review_flags),
            resident_id_digest=personal.resident_id_digest,
            resident_id_sealed=personal.resident_id_sealed,
            resident_id_masked=personal.resident_id_masked,
            contact_phone_sealed=personal.contact_phone_sealed,
            contact_phone_masked=personal.contact_phone_masked,
        )

    @property
    def identity_key(self) -> IdentityKey:
        if self.credit_code is not None:
            return IdentityKey("credit_code", self.credit_code)
        assert self.resident_id_digest is not None
        return IdentityKey("resident_id", self.resident_id_digest)

    @property
    def province(self) -> str:
        return self.division_code[:2]

    def _set_phone(self, phone: str | None, protector: PersonalDataProtector) -> None:
        self.contact_phone_sealed, self.contact_phone_masked = _protect_phone(phone, protector)

    def review(self, decision: ReviewDecision, reason: str, now: datetime) -> SubjectStatus:
        """Moves through the state machine; refuses illegal moves. Returns the old status."""
        reason = normalize_text(reason)
        if decision in DECISIONS_NEEDING_REASON and not reason:
            raise InvalidArgument.of("reason", f"is required to {decision.value.lower()}")
        if len(reason) > MAX_REASON:
            raise InvalidArgument.of("reason", f"is longer than {MAX_REASON} characters")
        target = REVIEW_TRANSITIONS.get((self.status, decision))
        if target is None:
            allowed = sorted(d.value for (s, d) in REVIEW_TRANSITIONS if s is self.status)
            raise FailedPrecondition(
                f"cannot {decision.value.lower()} a subject in {self.status.value}"
                + (f"; allowed: {', '.join(allowed)}" if allowed else ""),
                reason="ILLEGAL_STATUS_TRANSITION",
                metadata={"from": self.status.value, "decision": decision.value},
            )
        previous = self.status
        self.status = target
        self.status_reason = reason if decision in DECISIONS_NEEDING_REASON else ""
        if target is SubjectStatus.APPROVED:
            self.review_flags = []
        self._touch(now)
        return previous

    def update(
        self,
        changes: ValidRegistration,
        fields: Sequence[str],
        protector: PersonalDataProtector,
        now: datetime,
    ) -> None:
        """Applies the named fields of an already validated registration. A rejected subject
        that is corrected goes back to review."""
        for name in fields:
            if name == "contact_phone":
                self._set_phone(changes.contact_phone, protector)
            else:
                setattr(self, name, getattr(changes, name))
        if self.status is SubjectStatus.REJECTED:
            self.status = SubjectStatus.PENDING_REVIEW
            self.status_reason = ""
        self._touch(now)

    def flag(self, review_flag: str, now: datetime | None = None) -> bool:
        """Adds a review flag; a stored subject (`now` given) gets a new version. Returns
        whether anything changed."""
        if review_flag in self.review_flags:
            return False
        self.review_flags.append(review_flag)
        if now is not None:
            self._touch(now)
        return True

    def _touch(self, now: datetime) -> None:
        self.version += 1
        self.updated_at = now


UPDATABLE_FIELDS = frozenset(
    {"name", "address", "legal_representative", "contact_phone", "division_code"}
)


# -- de-duplication of imported records ------------------------------------------------------

MATERIAL_FIELDS = ("kind", "name", "division_code")


def contradictions(existing: Subject, incoming: ValidRegistration) -> list[str]:
    """Material fields on which an incoming record disagrees with the known subject.

    Names are compared by `name_key`, so spacing, width and case variants of one name agree;
    addresses, phones and representatives change over time and never make a conflict."""
    differing = []
    if existing.kind is not incoming.kind:
        differing.append("kind")
    if name_key(existing.name) != name_key(incoming.name):
        differing.append("name")
    if existing.division_code != incoming.division_code:
        differing.append("division_code")
    return differing
