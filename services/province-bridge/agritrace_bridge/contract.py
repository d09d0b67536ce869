"""The provincial platform contract, version 1: the JSON documents a provincial platform's REST
API exchanges with the national bridge (docs/provincial-contract.md is the prose of it).

Both sides use these models: the bridge's REST adapter parses answers with them, the simulator
writes them. They validate and serialise only; no I/O. Readers ignore unknown fields so a
province may add its own without breaking the bridge (a tolerant reader), and models that
carry personal data (resident ID and phone numbers) keep it out of their repr, so logging a
model by mistake does not leak it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

CONTRACT_VERSION = "v1"
# Subjects per page: the default when the bridge asks for 0, and the cap above which a
# platform answers with the cap (AIP-158 style, never an error).
DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 1000
# Internal-trace records per answer: the default and the cap.
DEFAULT_RECORD_LIMIT = 500
MAX_RECORD_LIMIT = 1000
PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://agritrace.example.cn/problems/"

Province = Annotated[str, StringConstraints(pattern=r"^\d{2}$")]
RecordId = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                            pattern=r"^[A-Za-z0-9._:-]+$")]
Reason = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]*$")]
Amount = Annotated[str, StringConstraints(pattern=r"^\d{1,9}(\.\d{1,3})?$")]
Unit = Literal["KG", "T", "G", "L", "PIECE", "BOX", "HEAD"]
Days = Annotated[int, Field(ge=0, le=3650)]


class _Document(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# --------------------------------------------------------------------------------------------
# Subjects (GET /v1/subjects)
# --------------------------------------------------------------------------------------------


class SubjectKind(StrEnum):
    """The economic role (registry SubjectKind without its prefix)."""

    ENTERPRISE = "ENTERPRISE"
    COOPERATIVE = "COOPERATIVE"
    FAMILY_FARM = "FAMILY_FARM"
    INDIVIDUAL_FARMER = "INDIVIDUAL_FARMER"
    PROCESSOR = "PROCESSOR"
    TRADER = "TRADER"
    WHOLESALE_MARKET = "WHOLESALE_MARKET"
    RETAILER = "RETAILER"
    COLLECTIVE = "COLLECTIVE"


class Subject(_Document):
    """One registration as the province holds it; maps onto the registry's ImportRecord.

    The platform sends what it has; the national registry validates identifiers, divisions and
    duplicates and reports each record (created, merged, conflict, rejected). So the contract
    only requires the shape, not valid data: an invalid record must still reach the report."""

    source_record_id: RecordId
    kind: str  # a SubjectKind; anything else is reported as rejected, not refused here
    name: Annotated[str, StringConstraints(max_length=400)]
    credit_code: str = ""
    resident_id: str = Field(default="", repr=False)
    division_code: str = ""
    address: str = ""
    legal_representative: str = ""
    contact_phone: str = Field(default="", repr=False)
    update_time: AwareDatetime | None = None


class SubjectPage(_Document):
    """One page of subjects in the platform's stable order (by source_record_id)."""

    subjects: list[Subject]
    # Empty on the last page.
    next_page_token: str = ""
    # Subjects the listing holds at the time of the request (progress, completeness checks).
    total_size: int = Field(default=0, ge=0)


# --------------------------------------------------------------------------------------------
# Internal-trace records (GET /v1/trace-records)
# --------------------------------------------------------------------------------------------


class Quantity(_Document):
    amount: Amount
    unit: Unit


class Planting(_Document):
    type: Literal["PLANTING"] = "PLANTING"
    variety: str
    area_mu: Amount


class Fertiliser(_Document):
    type: Literal["FERTILISER"] = "FERTILISER"
    name: str
    amount: Quantity


class Pesticide(_Document):
    type: Literal["PESTICIDE"] = "PESTICIDE"
    name: str
    registration_number: str  # 农药登记证号
    amount: Quantity
    pre_harvest_interval_days: Days  # 安全间隔期


class Feed(_Document):
    type: Literal["FEED"] = "FEED"
    name: str
    amount: Quantity


class VeterinaryDrug(_Document):
    type: Literal["VETERINARY_DRUG"] = "VETERINARY_DRUG"
    name: str
    approval_number: str  # 兽药批准文号
    dose: Quantity
    withdrawal_period_days: Days  # 休药期


class Harvest(_Document):
    type: Literal["HARVEST"] = "HARVEST"
    quantity: Quantity


class Slaughter(_Document):
    type: Literal["SLAUGHTER"] = "SLAUGHTER"
    heads: Annotated[int, Field(ge=1)]
    quarantine_certificate: str  # 检疫证明


class Inspection(_Document):
    type: Literal["INSPECTION"] = "INSPECTION"
    item: str
    passed: bool
    result: str = ""
    inspector: str = ""


Activity = Annotated[
    Planting | Fertiliser | Pesticide | Feed | VeterinaryDrug | Harvest | Slaughter | Inspection,
    Field(discriminator="type"),
]
ACTIVITY_TYPES: tuple[str, ...] = ("PLANTING", "FERTILISER", "PESTICIDE", "FEED",
                                   "VETERINARY_DRUG", "HARVEST", "SLAUGHTER", "INSPECTION")


class TraceRecord(_Document):
    """A production-process record; maps onto flow's InternalTraceRecord (the province is the
    bridge's own, so it is not repeated here)."""

    record_id: RecordId
    # The national batch (flow batch id) the activity belongs to.
    batch_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    occur_time: AwareDatetime
    activity: Activity
    # When the platform last changed the record; a change puts it after the cursor again.
    update_time: AwareDatetime | None = None


class TraceRecordPage(_Document):
    """Records changed after a cursor, oldest change first."""

    records: list[TraceRecord]
    # Pass it back to continue; equal to the request's cursor when nothing changed since.
    next_cursor: str
    # True when more changes are waiting right now (ask again without waiting).
    has_more: bool = False


# --------------------------------------------------------------------------------------------
# National records pushed to the province (PUT /v1/national-records/{record_id})
# --------------------------------------------------------------------------------------------


class NationalRecord(_Document):
    """A national fact that concerns the province: a subject registered or reviewed, codes
    issued, a shipment into or out of the province. Never carries personal data in clear."""

    # The national event id: pushing the same id again changes nothing.
    record_id: RecordId
    # What happened, e.g. SUBJECT_REGISTERED, SUBJECT_REVIEWED, CODES_ISSUED, BATCH_SHIPPED.
    type: Reason
    occur_time: AwareDatetime
    # The national subject the record is about, if any.
    subject_id: str = ""
    # The event's details (non-personal JSON).
    payload: dict[str, object] = Field(default_factory=dict)


class PushResult(_Document):
    record_id: RecordId
    accepted_time: AwareDatetime
    # True when the platform already held this record (the push changed nothing).
    replayed: bool = False


# --------------------------------------------------------------------------------------------
# SSO token verification (POST /v1/sso/verify)
# --------------------------------------------------------------------------------------------


class TokenVerifyRequest(_Document):
    token: Annotated[str, Field(min_length=1, max_length=8192, repr=False)]


class TokenVerification(_Document):
    """RFC 7662 style: `active` says whether the platform accepts the exchanged token."""

    active: bool
    # Why not (TOKEN_EXPIRED, TOKEN_INVALID, TOKEN_WRONG_AUDIENCE), when inactive.
    reason: str = ""
    account_id: str = ""
    username: str = ""
    kind: str = ""
    jurisdiction: str = ""
    audience: str = ""
    expire_time: AwareDatetime | None = None


# --------------------------------------------------------------------------------------------
# Health and problems
# --------------------------------------------------------------------------------------------


class Health(_Document):
    status: Literal["ok", "degraded"]
    province: Province
    contract_version: str = CONTRACT_VERSION
    time: AwareDatetime | None = None


class InvalidParam(_Document):
    name: str
    reason: str


class Problem(_Document):
    """RFC 9457 problem details, plus `reason` (a stable UPPER_SNAKE id to branch on) and the
    bad parameters of a 400."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""
    reason: str = ""
    invalid_params: list[InvalidParam] = Field(default_factory=list)

    @classmethod
    def of(cls, status: int, reason: str, title: str, detail: str = "",
           invalid_params: list[InvalidParam] | None = None) -> Problem:
        return cls(type=PROBLEM_TYPE_BASE + reason.lower().replace("_", "-"), title=title,
                   status=status, detail=detail, reason=reason,
                   invalid_params=invalid_params or [])

