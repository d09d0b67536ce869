"""The flow domain: product batches, hand-overs, market-gate decisions, transformations and
production-process (internal-trace) records, with the rules that hold between them. Free of
any framework."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum

from agritrace_kernel.errors import FailedPrecondition, InvalidArgument

MAX_CODES_PER_RECORD = 10_000
CHINA_TIME = timezone(timedelta(hours=8))
# Transformations balance within this share of the input: weighing and packaging losses.
BALANCE_TOLERANCE = Decimal("0.02")
_QUANTUM = Decimal("0.001")
_MAX_AMOUNT = Decimal("1000000000")


class Unit(StrEnum):
    KG = "KG"
    T = "T"
    G = "G"
    L = "L"
    PIECE = "PIECE"
    BOX = "BOX"
    HEAD = "HEAD"

    @property
    def in_kg(self) -> Decimal | None:
        """Kilograms per unit for mass units (to compare quantities across mass units)."""
        return {Unit.KG: Decimal(1), Unit.T: Decimal(1000), Unit.G: Decimal("0.001")}.get(self)


@dataclass(frozen=True, order=True)
class Quantity:
    amount: Decimal
    unit: Unit

    @classmethod
    def parse(cls, amount: str, unit: str, field_path: str) -> Quantity:
        try:
            value = Decimal(amount.strip())
        except (InvalidOperation, AttributeError):
            raise InvalidArgument.of(f"{field_path}.amount",
                                     "is not a decimal number") from None
        if not value.is_finite() or value <= 0:
            raise InvalidArgument.of(f"{field_path}.amount", "must be a positive number")
        if value >= _MAX_AMOUNT:
            raise InvalidArgument.of(f"{field_path}.amount", "is implausibly large")
        if value != value.quantize(_QUANTUM):
            raise InvalidArgument.of(f"{field_path}.amount", "has more than 3 decimals")
        try:
            parsed_unit = Unit(unit.strip().upper())
        except ValueError:
            raise InvalidArgument.of(
                f"{field_path}.unit", f"must be one of {', '.join(u.value for u in Unit)}"
            ) from None
        return cls(value.quantize(_QUANTUM, ROUND_HALF_UP), parsed_unit)

    def comparable(self, other: Quantity) -> bool:
        return self.unit is other.unit or (
            self.unit.in_kg is not None and other.unit.in_kg is not None)

    def in_unit_of(self, other: Quantity) -> Decimal:
        """This amount expressed in `other`'s unit (they must be comparable)."""
        if self.unit is other.unit:
            return self.amount
        assert self.unit.in_kg is not None and other.unit.in_kg is not None
        return (self.amount * self.unit.in_kg / other.unit.in_kg).quantize(_QUANTUM)

    def minus(self, other: Quantity) -> Quantity:
        return Quantity((self.amount - other.in_unit_of(self)).quantize(_QUANTUM), self.unit)

    def plus(self, other: Quantity) -> Quantity:
        return Quantity((self.amount + other.in_unit_of(self)).quantize(_QUANTUM), self.unit)

    def __str__(self) -> str:
        return f"{self.amount.normalize():f} {self.unit.value}"


class CertificateBasis(StrEnum):
    PROCESS_CONTROL = "PROCESS_CONTROL"  # 质量控制
    SELF_TEST = "SELF_TEST"  # 自行检测
    COMMISSIONED_TEST = "COMMISSIONED_TEST"  # 委托检测


@dataclass(frozen=True)
class Certificate:
    """承诺达标合格证: what the producer commits to, on what basis."""

    certificate_id: str
    producer_name: str
    contact_phone_masked: str
    issue_date: date
    commitment: str
    basis: CertificateBasis
    test_result: str = ""


@dataclass(frozen=True)
class Batch:
    batch_id: str
    subject_id: str
    subject_division: str
    product_code: str
    product_name: str
    category: str
    quantity: Quantity
    production_date: date
    origin_division: str
    certificate: Certificate | None
    parent_batch_ids: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    code_count: int = 0
    created_at: datetime | None = None
    # The latest harvest or slaughter record's time (None before one): with `flags`, all
    # that judging the flags of further records needs to know of the earlier ones.
    ended_at: datetime | None = None

    @property
    def province(self) -> str:
        return self.origin_division[:2]


@dataclass(frozen=True)
class Shipment:
    shipment_id: str
    batch_id: str
    seller_subject_id: str
    buyer_subject_id: str
    codes: tuple[str, ...]
    quantity: Quantity
    ship_time: datetime
    transport_document: str
    received_at: datetime | None = None


class EntryRefusal(StrEnum):
    UNKNOWN_CODE = "UNKNOWN_CODE"
    NOT_ACTIVATED = "NOT_ACTIVATED"
    VOID = "VOID"
    NO_CERTIFICATE = "NO_CERTIFICATE"
    SHIPPED_TO_SOMEONE_ELSE = "SHIPPED_TO_SOMEONE_ELSE"
    FLAGGED = "FLAGGED"


@dataclass(frozen=True)
class MarketEntry:
    entry_id: str
    market_subject_id: str
    admitted: bool
    refusal: EntryRefusal | None
    reason: str
    batch_id: str
    code: str
    certificate_id: str
    check_time: datetime


class TransformationKind(StrEnum):
    SPLIT = "SPLIT"
    MERGE = "MERGE"  # 混批
    REPACK = "REPACK"  # 重新包装
    PROCESS = "PROCESS"

    @property
    def derive_reason(self) -> str:
        """The coding service's reason for the derived codes."""
        return {TransformationKind.MERGE: "MIX"}.get(self, self.value)


@dataclass(frozen=True)
class TransformationInput:
    batch_id: str
    quantity: Quantity
    codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Transformation:
    transformation_id: str
    subject_id: str
    kind: TransformationKind
    inputs: tuple[TransformationInput, ...]
    output_batch_id: str
    output_codes: tuple[str, ...]
    occurred_at: datetime


def check_balance(kind: TransformationKind, inputs: list[Quantity], output: Quantity) -> None:
    """Inputs and output must be comparable and balance: the output equals the inputs within
    BALANCE_TOLERANCE, except that processing may lose weight (output ≤ inputs + tolerance)."""
    for index, quantity in enumerate(inputs):
        if not quantity.comparable(output):
            raise InvalidArgument.of(
                f"inputs[{index}].quantity.unit",
                f"{quantity.unit} cannot be compared with the output's {output.unit}")
    total = sum((quantity.in_unit_of(output) for quantity in inputs), Decimal(0))
    slack = total * BALANCE_TOLERANCE
    if output.amount > total + slack:
        raise FailedPrecondition(
            f"the output ({output}) exceeds the inputs ({total.normalize():f} "
            f"{output.unit.value}) by more than {BALANCE_TOLERANCE:%}",
            reason="TRANSFORMATION_UNBALANCED")
    if kind is not TransformationKind.PROCESS and output.amount < total - slack:
        raise FailedPrecondition(
            f"the output ({output}) is less than the inputs ({total.normalize():f} "
            f"{output.unit.value}) by more than {BALANCE_TOLERANCE:%}; record the loss as "
            "PROCESS", reason="TRANSFORMATION_UNBALANCED")


class Activity(StrEnum):
    PLANTING = "PLANTING"
    FERTILISER = "FERTILISER"
    PESTICIDE = "PESTICIDE"
    FEED = "FEED"
    VETERINARY_DRUG = "VETERINARY_DRUG"
    HARVEST = "HARVEST"
    SLAUGHTER = "SLAUGHTER"
    INSPECTION = "INSPECTION"

    @property
    def ends_production(self) -> bool:
        return self in (Activity.HARVEST, Activity.SLAUGHTER)

    @property
    def has_interval(self) -> bool:
        return self in (Activity.PESTICIDE, Activity.VETERINARY_DRUG)


# The activities that can change a batch's flags; the others never need them recomputed.
FLAG_ACTIVITIES = frozenset({Activity.PESTICIDE, Activity.VETERINARY_DRUG, Activity.HARVEST,
                             Activity.SLAUGHTER, Activity.INSPECTION})

INTERVAL_FLAGS = {
    Activity.PESTICIDE: "PESTICIDE_INTERVAL_NOT_PASSED",  # 安全间隔期
    Activity.VETERINARY_DRUG: "WITHDRAWAL_PERIOD_NOT_PASSED",  # 休药期
}
FAILED_INSPECTION = "INSPECTION_FAILED"


@dataclass(frozen=True)
class InternalTrace:
    source_province: str
    source_record_id: str
    batch_id: str
    activity: Activity
    occurred_at: datetime
    details: dict[str, str] = field(default_factory=dict)
    interval_days: int = 0  # pesticide pre-harvest interval / drug withdrawal period
    passed: bool = True  # inspections

    @property
    def safe_from(self) -> datetime:
        """When the goods may be harvested or slaughtered after this application."""
        return self.occurred_at + timedelta(days=self.interval_days)


def interval_flags(records: list[InternalTrace], production_date: date) -> set[str]:
    """Flags of a batch's internal trace: an application whose interval had not passed by the
    harvest or slaughter (the latest such record, or the batch's production date), and a
    failed inspection."""
    return _judge(records, latest_end(records), production_date)


def latest_end(records: Iterable[InternalTrace],
               ended_at: datetime | None = None) -> datetime | None:
    """The end of production: the latest harvest or slaughter among `records` and `ended_at`
    (an earlier end, None if none); None when there is none."""
    ends = [r.occurred_at for r in records
            if r.activity is Activity.HARVEST or r.activity is Activity.SLAUGHTER]
    if ended_at is not None:
        ends.append(ended_at)
    return max(ends) if ends else None


def _judge(records: Iterable[InternalTrace], end: datetime | None,
           production_date: date) -> set[str]:
    """The flags `records` raise when production ended at `end` (None: on the production
    date)."""
    flags: set[str] = set()
    for record in records:
        activity = record.activity
        if activity is Activity.INSPECTION and not record.passed:
            flags.add(FAILED_INSPECTION)
        # has_interval, spelled out: this runs for every record of a capture message.
        if not record.interval_days or (activity is not Activity.PESTICIDE
                                        and activity is not Activity.VETERINARY_DRUG):
            continue
        if end is not None:
            too_early = record.safe_from > end and record.occurred_at <= end
        else:  # the production date is a Chinese calendar date
            too_early = record.safe_from.astimezone(CHINA_TIME).date() > production_date
        if too_early:
            flags.add(INTERVAL_FLAGS[activity])
    return flags


def end_moves(ended_at: datetime | None, new: Iterable[InternalTrace]) -> bool:
    """Whether `new` records move a batch's end of production (then flags_after needs the
    batch's earlier applications)."""
    return latest_end(new, ended_at) != ended_at


def flags_after(flags: Iterable[str], ended_at: datetime | None,
                new: Sequence[InternalTrace], production_date: date,
                applications: Sequence[InternalTrace] | None = None,
                ) -> tuple[set[str], datetime | None]:
    """A batch's flags and end of production after `new` records, judged from its flags and
    end of production before them — equal to interval_flags (and latest_end) of all its
    records, old and new, when `flags` and `ended_at` are those of the old ones:
    - a failed inspection, old (its flag) or new, flags the batch whatever comes after;
    - while the end of production stays where it was, every old application keeps its
      verdict (the old flags say which kinds were too early), so only the new records are
      judged;
    - when it moves, every application is judged again against the new end: `applications`
      must then hold the old ones (pesticide and drug records with an interval)."""
    end = latest_end(new, ended_at)
    old = set(flags)
    judged: Sequence[InternalTrace] = new
    kept = old & {FAILED_INSPECTION}
    if end == ended_at:
        kept |= old & set(INTERVAL_FLAGS.values())
    elif applications is None:
        raise ValueError("the end of production moved: the earlier applications are needed")
    else:
        judged = [*applications, *new]
    return kept | _judge(judged, end, production_date), end
