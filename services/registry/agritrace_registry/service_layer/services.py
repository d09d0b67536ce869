"""The registry's use cases. Each runs in one unit of work: the state change, the idempotency
record and the event announcing it commit together, or nothing does."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime

from agritrace_kernel import paging
from agritrace_kernel.auth.principal import PrincipalKind
from agritrace_kernel.errors import (
    AlreadyExists,
    ConcurrencyConflict,
    InvalidArgument,
    NotFound,
)
from agritrace_kernel.events.model import Event
from agritrace_kernel.idempotency import (
    RequestRecord,
    check_request_id,
    earlier_result,
    fingerprint,
)
from agritrace_kernel.paging import decode_token, encode_token
from agritrace_registry.domain import identifiers
from agritrace_registry.domain.divisions import DivisionCatalog
from agritrace_registry.domain.model import (
    NATIONAL_SOURCE,
    UPDATABLE_FIELDS,
    IdentityKey,
    PersonalDataProtector,
    RegistrationInput,
    ReviewDecision,
    Subject,
    validate_registration,
)
from agritrace_registry.service_layer import access
from agritrace_registry.service_layer.access import Actor
from agritrace_registry.service_layer.ports import (
    ProvenanceRecord,
    SubjectQuery,
    UnitOfWork,
)

SERVICE = "registry"
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50

Clock = Callable[[], datetime]
IdGenerator = Callable[[str], str]


def utc_now() -> datetime:
    return datetime.now(UTC)


def subject_payload(subject: Subject) -> dict[str, object]:
    """What events say about a subject: identity and public facts, never personal data."""
    return {
        "subject_id": subject.subject_id,
        "kind": subject.kind.value,
        "name": subject.name,
        "division_code": subject.division_code,
        "credit_code": subject.credit_code or "",
        "status": subject.status.value,
        "version": subject.version,
    }


class RegistryService:
    """Application service: the use cases, with their collaborators injected."""

    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        catalog: DivisionCatalog,
        protector: PersonalDataProtector,
        *,
        clock: Clock = utc_now,
        new_subject_id: IdGenerator = identifiers.new_subject_id,
        reader_factory: Callable[[], UnitOfWork] | None = None,
    ) -> None:
        self.uow_factory = uow_factory
        # Queries use units of work that never write (cheaper where the database allows).
        self.reader_factory = reader_factory or uow_factory
        self.catalog = catalog
        self.protector = protector
        self.clock = clock
        self.new_subject_id = new_subject_id

    # -- commands ---------------------------------------------------------------------------

    def register_subject(
        self, request_id: str, data: RegistrationInput, *, actor: Actor = None
    ) -> Subject:
        request_id = check_request_id(request_id)
        registration = validate_registration(data, self.catalog)
        access.check_register(actor, registration.division_code)
        # Keyed: the registration holds a clear ID number, which a plain hash would expose to
        # guessing (ID numbers carry little randomness).
        request_fingerprint = self.protector.digest(fingerprint("register", asdict(registration)))
        with self.uow_factory() as uow:
            replay = self._replayed(uow, request_id, "register", request_fingerprint)
            if replay is not None:
                return replay
            key = registration.identity_key(self.protector)
            existing = uow.subjects.find_by_keys([key]).get(key)
            if existing is not None:
                raise AlreadyExists(
                    f"a subject with this {key.kind} is already registered",
                    reason="SUBJECT_ALREADY_REGISTERED",
                    metadata={"subject_id": existing.subject_id, "key": key.kind},
                )
            now = self.clock()
            subject = Subject.register(
                self.new_subject_id(registration.division_code[:2]),
                registration,
                self.protector,
                now,
            )
            uow.subjects.add_many([subject])
            uow.subjects.add_provenance(
                [ProvenanceRecord(subject.subject_id, NATIONAL_SOURCE, "", "CREATED", None, now)]
            )
            uow.requests.record(
                request_id, RequestRecord("register", request_fingerprint, subject.subject_id)
            )
            payload = subject_payload(subject)
            if actor is not None and actor.kind is PrincipalKind.SUBJECT_OPERATOR:
                # sso binds the operator's account to the subject it registered.
                payload["registered_by_operator"] = actor.account_id
            uow.publish(Event(SERVICE, "subject_registered", payload))
            uow.commit()
        return self.get_subject(subject.subject_id)

    def update_subject(
        self,
        subject_id: str,
        data: RegistrationInput,
        fields: Sequence[str],
        expected_version: int,
        *,
        actor: Actor = None,
    ) -> Subject:
        subject_id = self._parse_id(subject_id)
        unknown = sorted(set(fields) - UPDATABLE_FIELDS)
        if not fields:
            raise InvalidArgument.of("update_mask", "names no field to change")
        if unknown:
            raise InvalidArgument.of(
                "update_mask",
                f"cannot change {', '.join(unknown)}; changeable: "
                + ", ".join(sorted(UPDATABLE_FIELDS)),
            )
        if expected_version <= 0:
            raise InvalidArgument.of("version", "is required: pass the version you read")
        with self.uow_factory() as uow:
            subject = self._require(uow, subject_id)
            access.check_update(actor, subject.subject_id, subject.division_code)
            if "division_code" in fields:
                access.check_move(actor, data.division_code.strip())
            # Validate the merged view so partial updates obey every rule of a registration.
            merged = RegistrationInput(
                kind=subject.kind,
                name=data.name if "name" in fields else subject.name,
                credit_code=subject.credit_code or "",
                resident_id="" if subject.credit_code else self._clear_resident_id(subject),
                division_code=data.division_code if "division_code" in fields
                else subject.division_code,
                address=data.address if "address" in fields else subject.address,
                legal_representative=data.legal_representative
                if "legal_representative" in fields
                else subject.legal_representative,
                contact_phone=data.contact_phone if "contact_phone" in fields
                else self._clear_phone(subject),
            )
            registration = validate_registration(merged, self.catalog)
            if subject.version != expected_version:
                raise ConcurrencyConflict(
                    f"version {expected_version} is stale; the subject is at {subject.version}",
                    metadata={"current_version": str(subject.version)},
                )
            subject.update(registration, sorted(fields), self.protector, self.clock())
            uow.subjects.save(subject, expected_version)
            payload = subject_payload(subject) | {"changed_fields": sorted(fields)}
            uow.publish(Event(SERVICE, "subject_updated", payload))
            uow.commit()
        return self.get_subject(subject_id)

    def review_subject(
        self,
        subject_id: str,
        decision: ReviewDecision | None,
        reason: str,
        expected_version: int,
        *,
        actor: Actor = None,
    ) -> Subject:
        subject_id = self._parse_id(subject_id)
        if decision is None:
            raise InvalidArgument.of("decision", "is required")
        with self.uow_factory() as uow:
            subject = self._require(uow, subject_id)
            access.check_review(actor, subject.division_code)
            if expected_version and subject.version != expected_version:
                raise ConcurrencyConflict(
                    f"version {expected_version} is stale; the subject is at {subject.version}",
                    metadata={"current_version": str(subject.version)},
                )
            version_read = subject.version
            previous = subject.review(decision, reason, self.clock())
            uow.subjects.save(subject, version_read)
            payload = subject_payload(subject) | {
                "previous_status": previous.value,
                "decision": decision.value,
                "reason": subject.status_reason,
            }
            uow.publish(Event(SERVICE, "subject_reviewed", payload))
            uow.commit()
        return self.get_subject(subject_id)

    # -- queries ----------------------------------------------------------------------------

    def get_subject(self, subject_id: str, *, actor: Actor = None) -> Subject:
        subject_id = self._parse_id(subject_id)
        with self.reader_factory() as uow:
            subject = self._require(uow, subject_id)
        access.check_read(actor, subject.subject_id, subject.division_code)
        return subject

    def lookup_subject(
        self, *, credit_code: str = "", resident_id: str = "", actor: Actor = None
    ) -> Subject:
        if bool(credit_code) == bool(resident_id):
            raise InvalidArgument.of("key", "give exactly one of credit_code or resident_id")
        if credit_code:
            try:
                key = IdentityKey("credit_code", identifiers.parse_credit_code(credit_code).code)
            except identifiers.IdentifierError as error:
                raise InvalidArgument.of(error.field, error.reason) from None
        else:
            try:
                normalized = identifiers.parse_resident_id(resident_id)
            except identifiers.IdentifierError as error:
                raise InvalidArgument.of(error.field, error.reason) from None
            key = IdentityKey("resident_id", self.protector.digest(normalized))
        with self.reader_factory() as uow:
            found = uow.subjects.find_by_keys([key]).get(key)
        if found is None or not access.may_read(actor, found.subject_id, found.division_code):
            # The same answer either way: whether an ID number is registered outside the
            # caller's scope is itself personal data.
            raise NotFound(f"no subject holds this {key.kind}", reason="SUBJECT_NOT_FOUND")
        return found

    def list_subjects(
        self, query: SubjectQuery, page_size: int, page_token: str, *, actor: Actor = None
    ) -> tuple[list[Subject], str]:
        """A page of the subjects matching the filters that the actor may see."""
        if query.division_prefix and not self.catalog.is_valid_prefix(query.division_prefix):
            raise InvalidArgument.of(
                "division_prefix", "must be a 2-, 4- or 6-digit code of an existing division"
            )
        size = paging.page_size(page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        filter_fingerprint = fingerprint(query.division_prefix, query.kind, query.status)[:16]
        after = ""
        if page_token:
            token_after, token_filters = decode_token(page_token, "page_token", 2)
            if token_filters != filter_fingerprint:
                raise InvalidArgument.of(
                    "page_token", "was issued for different filters; start from the first page"
                )
            after = str(token_after)
        bounded = SubjectQuery(
            access.list_prefix(actor, query.division_prefix),
            query.kind,
            query.status,
            after_subject_id=after,
            limit=size + 1,
        )
        with self.reader_factory() as uow:
            found = uow.subjects.find(bounded)
        page, more = found[:size], len(found) > size
        next_token = encode_token([page[-1].subject_id, filter_fingerprint]) if more else ""
        return page, next_token

    # -- event handlers ---------------------------------------------------------------------

    def flag_suspected_duplicates(self, event: Event, uow: UnitOfWork) -> None:
        """Worker: a subject registered under one key whose name and county match another
        subject's under a different key is probably one producer twice; mark both pairs for
        reviewers. Runs on `subject_registered` and, for imports, on each
        `import_batch_applied` with that batch's subjects: each subject is checked once, when
        it arrives, against every subject before it (a check of a whole import's subjects
        after each of its calls grew with the square of its pages)."""
        if event.name == "subject_registered":
            subject_ids = [str(event.payload["subject_id"])]
        else:
            subject_ids = [str(subject["subject_id"]) for subject in event.payload["subjects"]]
        pairs = uow.subjects.name_twins(subject_ids)
        if pairs:
            uow.subjects.add_duplicate_suspicions(pairs)

    # -- helpers ----------------------------------------------------------------------------

    def _parse_id(self, subject_id: str) -> str:
        try:
            return identifiers.parse_subject_id(subject_id)
        except identifiers.IdentifierError as error:
            raise InvalidArgument.of(error.field, error.reason) from None

    @staticmethod
    def _require(uow: UnitOfWork, subject_id: str) -> Subject:
        subject = uow.subjects.get(subject_id)
        if subject is None:
            raise NotFound(f"subject {subject_id} does not exist", reason="SUBJECT_NOT_FOUND")
        return subject

    def _replayed(
        self, uow: UnitOfWork, request_id: str, operation: str, request_fingerprint: str
    ) -> Subject | None:
        subject_id = earlier_result(uow.requests, request_id, operation, request_fingerprint)
        return None if subject_id is None else self._require(uow, subject_id)

    def _clear_resident_id(self, subject: Subject) -> str:
        return self.protector.unseal(subject.resident_id_sealed) if subject.resident_id_sealed \
            else ""

    def _clear_phone(self, subject: Subject) -> str:
        return self.protector.unseal(subject.contact_phone_sealed) if subject.contact_phone_sealed \
            else ""
