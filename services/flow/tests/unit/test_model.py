"""The flow domain's rules (domain/model.py): quantities, the balance of a transformation and
the flags an internal trace raises on a batch."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from agritrace_flow.domain.model import (
    BALANCE_TOLERANCE,
    FAILED_INSPECTION,
    Activity,
    InternalTrace,
    Quantity,
    TransformationKind,
    Unit,
    check_balance,
    end_moves,
    flags_after,
    interval_flags,
    latest_end,
)
from agritrace_kernel.errors import FailedPrecondition, InvalidArgument

PESTICIDE_FLAG = "PESTICIDE_INTERVAL_NOT_PASSED"
WITHDRAWAL_FLAG = "WITHDRAWAL_PERIOD_NOT_PASSED"
CHINA = timezone(timedelta(hours=8))


def q(amount: str, unit: Unit = Unit.KG) -> Quantity:
    return Quantity(Decimal(amount), unit)


def violations(error: pytest.ExceptionInfo[InvalidArgument]) -> list[tuple[str, str]]:
    return [(v.field, v.description) for v in error.value.violations]


# -- Quantity.parse ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "unit", "expected"),
    [
        ("12.5", "KG", Quantity(Decimal("12.500"), Unit.KG)),
        (" 3 ", " t ", Quantity(Decimal("3.000"), Unit.T)),
        ("250", "g", Quantity(Decimal("250.000"), Unit.G)),
        ("1.234", "L", Quantity(Decimal("1.234"), Unit.L)),
        ("1.2340", "kg", Quantity(Decimal("1.234"), Unit.KG)),  # a trailing zero is no decimal
        ("0.001", "KG", Quantity(Decimal("0.001"), Unit.KG)),
        ("24", "piece", Quantity(Decimal("24.000"), Unit.PIECE)),
        ("6", "Box", Quantity(Decimal("6.000"), Unit.BOX)),
        ("2", "HEAD", Quantity(Decimal("2.000"), Unit.HEAD)),
        ("999999999.999", "KG", Quantity(Decimal("999999999.999"), Unit.KG)),
        ("1E+2", "KG", Quantity(Decimal("100.000"), Unit.KG)),
    ],
)
def test_parse_reads_an_amount_with_up_to_3_decimals_and_a_unit(
    amount: str, unit: str, expected: Quantity
) -> None:
    parsed = Quantity.parse(amount, unit, "batch.quantity")

    assert parsed == expected
    assert parsed.amount.as_tuple().exponent == -3  # always stored with 3 decimals


@pytest.mark.parametrize(
    ("amount", "problem"),
    [
        ("", "is not a decimal number"),
        ("twelve", "is not a decimal number"),
        ("1,5", "is not a decimal number"),
        ("0", "must be a positive number"),
        ("0.000", "must be a positive number"),
        ("-1", "must be a positive number"),
        ("NaN", "must be a positive number"),
        ("Infinity", "must be a positive number"),
        ("1.2345", "has more than 3 decimals"),
        ("0.0001", "has more than 3 decimals"),
        ("1000000000", "is implausibly large"),
    ],
)
def test_parse_refuses_a_bad_amount_naming_the_field(amount: str, problem: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        Quantity.parse(amount, "KG", "shipment.quantity")

    assert violations(error) == [("shipment.quantity.amount", problem)]


@pytest.mark.parametrize("unit", ["", "kilogram", "LB", "斤"])
def test_parse_refuses_an_unknown_unit_listing_the_known_ones(unit: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        Quantity.parse("1", unit, "inputs[0].quantity")

    assert violations(error) == [
        ("inputs[0].quantity.unit", "must be one of KG, T, G, L, PIECE, BOX, HEAD")]


@pytest.mark.parametrize(
    ("a", "b", "comparable"),
    [
        (q("1", Unit.KG), q("1", Unit.T), True),
        (q("1", Unit.T), q("1", Unit.G), True),
        (q("1", Unit.G), q("1", Unit.KG), True),
        (q("1", Unit.PIECE), q("1", Unit.PIECE), True),
        (q("1", Unit.KG), q("1", Unit.PIECE), False),
        (q("1", Unit.PIECE), q("1", Unit.KG), False),
        (q("1", Unit.KG), q("1", Unit.L), False),
        (q("1", Unit.BOX), q("1", Unit.PIECE), False),
        (q("1", Unit.HEAD), q("1", Unit.KG), False),
    ],
)
def test_mass_units_compare_with_each_other_and_other_units_only_with_themselves(
    a: Quantity, b: Quantity, comparable: bool
) -> None:
    assert a.comparable(b) is comparable
    assert b.comparable(a) is comparable


def test_quantities_convert_between_mass_units() -> None:
    assert q("1.5", Unit.T).in_unit_of(q("1")) == Decimal("1500.000")
    assert q("250", Unit.G).in_unit_of(q("1")) == Decimal("0.250")
    assert q("2500", Unit.KG).in_unit_of(q("1", Unit.T)) == Decimal("2.500")
    assert q("1", Unit.G).in_unit_of(q("1", Unit.T)) == Decimal("0.000")  # below 3 decimals
    assert q("7", Unit.PIECE).in_unit_of(q("1", Unit.PIECE)) == Decimal("7")


def test_plus_and_minus_keep_the_unit_of_the_left_side() -> None:
    assert q("1", Unit.T).minus(q("250")) == Quantity(Decimal("0.750"), Unit.T)
    assert q("100").plus(q("0.5", Unit.T)) == Quantity(Decimal("600.000"), Unit.KG)
    assert q("100").minus(q("100")) == Quantity(Decimal("0.000"), Unit.KG)


def test_a_quantity_prints_without_trailing_zeros() -> None:
    assert str(Quantity.parse("12.500", "kg", "q")) == "12.5 KG"
    assert str(Quantity.parse("1000", "T", "q")) == "1000 T"


# -- check_balance -----------------------------------------------------------------------------

ALL_KINDS = list(TransformationKind)
NOT_PROCESS = [kind for kind in TransformationKind if kind is not TransformationKind.PROCESS]


def test_the_tolerance_is_two_percent() -> None:
    assert Decimal("0.02") == BALANCE_TOLERANCE


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("output", ["200", "204", "203.999", "200.001"])
def test_an_output_equal_to_the_inputs_or_up_to_2_percent_more_balances(
    kind: TransformationKind, output: str
) -> None:
    check_balance(kind, [q("120"), q("80")], q(output))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_an_output_more_than_2_percent_above_the_inputs_is_unbalanced(
    kind: TransformationKind
) -> None:
    with pytest.raises(FailedPrecondition) as error:
        check_balance(kind, [q("120"), q("80")], q("204.001"))

    assert error.value.reason == "TRANSFORMATION_UNBALANCED"
    assert error.value.message == (
        "the output (204.001 KG) exceeds the inputs (200 KG) by more than 2%")


@pytest.mark.parametrize("kind", NOT_PROCESS)
@pytest.mark.parametrize("output", ["196", "196.001", "199.999"])
def test_an_output_up_to_2_percent_below_the_inputs_balances(
    kind: TransformationKind, output: str
) -> None:
    check_balance(kind, [q("120"), q("80")], q(output))


@pytest.mark.parametrize("kind", NOT_PROCESS)
def test_only_processing_may_lose_more_than_2_percent(kind: TransformationKind) -> None:
    with pytest.raises(FailedPrecondition) as error:
        check_balance(kind, [q("120"), q("80")], q("195.999"))

    assert error.value.reason == "TRANSFORMATION_UNBALANCED"
    assert error.value.message.endswith("by more than 2%; record the loss as PROCESS")
    assert "less than the inputs (200 KG)" in error.value.message


@pytest.mark.parametrize("output", ["195.999", "120", "0.001"])
def test_processing_may_lose_weight(output: str) -> None:
    check_balance(TransformationKind.PROCESS, [q("120"), q("80")], q(output))


def test_inputs_in_other_mass_units_are_converted_to_the_outputs_unit() -> None:
    inputs = [q("1", Unit.T), q("500"), q("250000", Unit.G)]  # 1750 kg

    check_balance(TransformationKind.MERGE, inputs, q("1750"))
    check_balance(TransformationKind.MERGE, inputs, q("1.785", Unit.T))  # +2 %
    with pytest.raises(FailedPrecondition):
        check_balance(TransformationKind.MERGE, inputs, q("1.786", Unit.T))
    with pytest.raises(FailedPrecondition):
        check_balance(TransformationKind.MERGE, inputs, q("1.714", Unit.T))  # -2.06 %


def test_pieces_balance_against_pieces() -> None:
    check_balance(TransformationKind.REPACK, [q("100", Unit.PIECE)], q("100", Unit.PIECE))
    with pytest.raises(FailedPrecondition):
        check_balance(TransformationKind.REPACK, [q("100", Unit.PIECE)], q("103", Unit.PIECE))


def test_an_input_that_cannot_be_compared_with_the_output_is_named() -> None:
    with pytest.raises(InvalidArgument) as error:
        check_balance(TransformationKind.MERGE, [q("10"), q("5", Unit.PIECE)], q("15"))

    assert violations(error) == [
        ("inputs[1].quantity.unit", "PIECE cannot be compared with the output's KG")]


def test_a_merge_asks_coding_for_mixed_codes_the_others_for_their_own_reason() -> None:
    assert [kind.derive_reason for kind in TransformationKind] == [
        "SPLIT", "MIX", "REPACK", "PROCESS"]


# -- interval_flags ----------------------------------------------------------------------------

SPRAYED = datetime(2024, 4, 20, 6, 0, tzinfo=UTC)


def trace(activity: Activity, at: datetime, interval_days: int = 0, *, passed: bool = True,
          record_id: str = "") -> InternalTrace:
    return InternalTrace("37", record_id or f"{activity.value}-{at:%m%d%H%M}", "B370000000000001",
                         activity, at, {}, interval_days, passed)


def test_only_pesticides_and_veterinary_drugs_have_an_interval() -> None:
    assert {a for a in Activity if a.has_interval} == {Activity.PESTICIDE,
                                                       Activity.VETERINARY_DRUG}
    assert {a for a in Activity if a.ends_production} == {Activity.HARVEST, Activity.SLAUGHTER}


def test_a_harvest_inside_the_pre_harvest_interval_flags_the_batch() -> None:
    records = [trace(Activity.PESTICIDE, SPRAYED, 7),
               trace(Activity.HARVEST, SPRAYED + timedelta(days=5))]

    assert interval_flags(records, date(2024, 4, 25)) == {PESTICIDE_FLAG}


def test_a_harvest_one_minute_before_the_interval_ends_is_still_inside() -> None:
    records = [trace(Activity.PESTICIDE, SPRAYED, 7),
               trace(Activity.HARVEST, SPRAYED + timedelta(days=7, minutes=-1))]

    assert interval_flags(records, date(2024, 4, 27)) == {PESTICIDE_FLAG}


@pytest.mark.parametrize("after", [timedelta(days=7), timedelta(days=9)])
def test_a_harvest_once_the_interval_has_passed_raises_no_flag(after: timedelta) -> None:
    records = [trace(Activity.PESTICIDE, SPRAYED, 7), trace(Activity.HARVEST, SPRAYED + after)]

    assert interval_flags(records, date(2024, 4, 29)) == set()


def test_spraying_after_the_harvest_does_not_concern_the_harvested_batch() -> None:
    records = [trace(Activity.HARVEST, SPRAYED - timedelta(hours=1)),
               trace(Activity.PESTICIDE, SPRAYED, 7)]

    assert interval_flags(records, date(2024, 4, 20)) == set()


def test_the_latest_harvest_is_the_one_that_counts() -> None:
    # Picked over several days: the batch was harvested when its last picking was.
    records = [trace(Activity.PESTICIDE, SPRAYED, 7),
               trace(Activity.HARVEST, SPRAYED + timedelta(days=3)),
               trace(Activity.HARVEST, SPRAYED + timedelta(days=8))]

    assert interval_flags(records, date(2024, 4, 28)) == set()


@pytest.mark.parametrize(
    ("production_date", "flags"),
    [
        (date(2024, 4, 26), {PESTICIDE_FLAG}),  # safe from the 27th
        (date(2024, 4, 27), set()),  # produced the day it became safe
        (date(2024, 4, 28), set()),
    ],
)
def test_without_a_harvest_record_the_production_date_counts(
    production_date: date, flags: set[str]
) -> None:
    assert interval_flags([trace(Activity.PESTICIDE, SPRAYED, 7)], production_date) == flags


def test_an_application_without_an_interval_raises_no_flag() -> None:
    records = [trace(Activity.PESTICIDE, SPRAYED, 0),
               trace(Activity.FERTILISER, SPRAYED, 30),  # not an interval activity
               trace(Activity.HARVEST, SPRAYED + timedelta(hours=1))]

    assert interval_flags(records, date(2024, 4, 20)) == set()


def test_a_slaughter_inside_the_withdrawal_period_flags_the_batch() -> None:
    dosed = datetime(2024, 4, 1, 9, 0, tzinfo=UTC)
    records = [trace(Activity.VETERINARY_DRUG, dosed, 28),
               trace(Activity.SLAUGHTER, dosed + timedelta(days=20))]

    assert interval_flags(records, date(2024, 4, 21)) == {WITHDRAWAL_FLAG}


def test_a_slaughter_after_the_withdrawal_period_raises_no_flag() -> None:
    dosed = datetime(2024, 4, 1, 9, 0, tzinfo=UTC)
    records = [trace(Activity.VETERINARY_DRUG, dosed, 28),
               trace(Activity.SLAUGHTER, dosed + timedelta(days=28))]

    assert interval_flags(records, date(2024, 4, 29)) == set()


def test_a_drug_withdrawal_without_slaughter_record_is_judged_by_the_production_date() -> None:
    dosed = datetime(2024, 4, 1, 9, 0, tzinfo=UTC)

    assert interval_flags([trace(Activity.VETERINARY_DRUG, dosed, 28)],
                          date(2024, 4, 28)) == {WITHDRAWAL_FLAG}
    assert interval_flags([trace(Activity.VETERINARY_DRUG, dosed, 28)],
                          date(2024, 4, 29)) == set()


def test_both_intervals_are_flagged_together() -> None:
    records = [trace(Activity.PESTICIDE, SPRAYED, 7),
               trace(Activity.VETERINARY_DRUG, SPRAYED, 7),
               trace(Activity.HARVEST, SPRAYED + timedelta(days=1))]

    assert interval_flags(records, date(2024, 4, 21)) == {PESTICIDE_FLAG, WITHDRAWAL_FLAG}


def test_a_failed_inspection_flags_the_batch_a_passed_one_does_not() -> None:
    passed = trace(Activity.INSPECTION, SPRAYED, passed=True, record_id="I-1")
    failed = trace(Activity.INSPECTION, SPRAYED, passed=False, record_id="I-2")

    assert interval_flags([passed], date(2024, 4, 20)) == set()
    assert interval_flags([passed, failed], date(2024, 4, 20)) == {FAILED_INSPECTION}
    assert FAILED_INSPECTION == "INSPECTION_FAILED"


def test_a_failed_inspection_and_an_interval_are_both_flagged() -> None:
    records = [trace(Activity.PESTICIDE, SPRAYED, 7),
               trace(Activity.INSPECTION, SPRAYED + timedelta(days=1), passed=False),
               trace(Activity.HARVEST, SPRAYED + timedelta(days=2))]

    assert interval_flags(records, date(2024, 4, 22)) == {PESTICIDE_FLAG, FAILED_INSPECTION}


def test_safe_from_is_the_application_plus_the_interval() -> None:
    assert trace(Activity.PESTICIDE, SPRAYED, 7).safe_from == datetime(2024, 4, 27, 6, 0,
                                                                       tzinfo=UTC)


# Regression (found by this test, fixed):
# interval_flags compares `safe_from.date()` - the calendar date in whatever time
# zone the datetime happens to carry - with the production date, a Chinese calendar date. The
# same application gives different flags depending on how its instant is expressed: sprayed
# 2024-04-24 20:00 UTC (= 04-25 04:00 in China) with a 7-day interval is safe only from
# 2024-05-02 04:00 China time, so goods produced on 2024-05-01 were produced inside the
# interval - which is what the +08:00 form says, while the UTC form (the form every record
# read back from the store has: repository.py reads timestamps with as_utc) says they were
# not. A batch produced on the last day of an interval escapes its flag for applications made
# between 16:00 and 24:00 UTC. Comparing in China time (astimezone(+08:00).date()) fixes it.
@pytest.mark.parametrize("zone", [UTC, CHINA], ids=["utc", "china"])
def test_the_interval_against_the_production_date_does_not_depend_on_the_time_zone(
    zone: timezone
) -> None:
    sprayed = datetime(2024, 4, 24, 20, 0, tzinfo=UTC).astimezone(zone)

    assert interval_flags([trace(Activity.PESTICIDE, sprayed, 7)],
                          date(2024, 5, 1)) == {PESTICIDE_FLAG}


# -- flags_after: judging only what new records change ---------------------------------------


def _random_record(rng: random.Random, number: int) -> InternalTrace:
    activity = rng.choice([Activity.PESTICIDE, Activity.VETERINARY_DRUG, Activity.HARVEST,
                           Activity.SLAUGHTER, Activity.INSPECTION, Activity.FERTILISER])
    # Whole hours over three weeks, so that records often share an instant with an end.
    at = datetime(2024, 4, 1, tzinfo=UTC) + timedelta(hours=rng.randrange(0, 21 * 24, 6))
    return InternalTrace("37", f"R{number}", "B370000000000001", activity, at, {},
                         rng.choice([0, 1, 3, 7, 14]) if activity.has_interval else 0,
                         rng.random() > 0.1)


@pytest.mark.parametrize("seed", range(300))
def test_flags_judged_message_by_message_equal_those_of_all_the_records(seed: int) -> None:
    """Records arrive in chunks (a capture message each); after every chunk the flags and the
    end of production judged from the batch's previous flags, previous end and — when the end
    moved — its earlier applications, are those of all its records judged at once."""
    rng = random.Random(seed)
    production_date = date(2024, 4, 1) + timedelta(days=rng.randrange(0, 25))
    records: list[InternalTrace] = []
    flags: set[str] = set()
    ended_at: datetime | None = None
    for _ in range(rng.randrange(1, 8)):
        new = [_random_record(rng, len(records) + n) for n in range(rng.randrange(1, 6))]
        applications = None
        if end_moves(ended_at, new):
            applications = [r for r in records if r.activity.has_interval and r.interval_days]
        flags, ended_at = flags_after(flags, ended_at, new, production_date, applications)
        records.extend(new)
        assert flags == interval_flags(records, production_date)
        assert ended_at == latest_end(records)


def test_a_later_harvest_clears_a_flag_only_when_the_applications_are_judged_again() -> None:
    sprayed = trace(Activity.PESTICIDE, SPRAYED, 7)
    early = trace(Activity.HARVEST, SPRAYED + timedelta(days=3))
    flags, ended_at = flags_after(set(), None, [sprayed, early], date(2024, 4, 30), [])
    assert (flags, ended_at) == ({PESTICIDE_FLAG}, early.occurred_at)

    late = trace(Activity.HARVEST, SPRAYED + timedelta(days=10))
    assert end_moves(ended_at, [late])
    with pytest.raises(ValueError):
        flags_after(flags, ended_at, [late], date(2024, 4, 30))
    assert flags_after(flags, ended_at, [late], date(2024, 4, 30), [sprayed]) == (
        set(), late.occurred_at)
    # A record that does not move the end keeps the earlier verdicts without them.
    assert not end_moves(ended_at, [trace(Activity.FERTILISER, SPRAYED)])
    assert flags_after(flags, ended_at, [trace(Activity.HARVEST, SPRAYED)],
                       date(2024, 4, 30)) == ({PESTICIDE_FLAG}, early.occurred_at)
