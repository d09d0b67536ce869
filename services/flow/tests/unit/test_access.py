"""Who may record and read what in the flow service (service_layer/access.py): one table,
written out by hand, of every kind of caller x five actions, checked twice - calling the access
rules directly, and through the use cases against the in-memory fakes.

The subjects (fakes.py): COOP, a cooperative in county 370783 (Shandong, 37); MARKET, a
wholesale market in 110106 (Beijing, 11); RETAILER, a supermarket in 110105. A change of who
may do what must change a cell here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from agritrace_flow.domain.model import Activity, Batch, Quantity, TransformationKind, Unit
from agritrace_flow.service_layer import access
from agritrace_flow.service_layer.services import (
    BatchInput,
    FlowService,
    ShipmentInput,
    TraceInput,
)
from agritrace_kernel.auth.principal import Principal
from agritrace_kernel.errors import PermissionDenied
from agritrace_testing.fakes import load_beside

fakes = load_beside(__file__, "fakes.py", "agritrace_flow_unit_fakes")

COOP, MARKET, RETAILER = fakes.COOP, fakes.MARKET, fakes.RETAILER

# -- the table ---------------------------------------------------------------------------------

CREATE = "create a batch for the cooperative"
SHIP = "ship as the cooperative"
RECEIVE = "receive as the market"
TRACE = "record an internal trace of province 37"
READ = "read a Shandong batch"
ACTIONS = [CREATE, SHIP, RECEIVE, TRACE, READ]

# Why each action is refused.
DENIAL_REASONS = {
    CREATE: "NOT_OWN_SUBJECT",
    SHIP: "NOT_OWN_SUBJECT",
    RECEIVE: "NOT_OWN_SUBJECT",
    TRACE: "NOT_OWN_PROVINCE",
    READ: "NOT_PERMITTED",
}

Y, N = True, False

#                                    create  ship  receive  trace  read
MATRIX: dict[str, tuple[bool, ...]] = {
    fakes.PROCESS:                  (Y,      Y,    Y,       Y,     Y),
    fakes.OPERATOR_COOP:            (Y,      Y,    N,       N,     Y),
    fakes.OPERATOR_MARKET:          (N,      N,    Y,       N,     N),
    fakes.OPERATOR_RETAILER:        (N,      N,    N,       N,     N),
    fakes.PLATFORM_37:              (Y,      Y,    N,       Y,     Y),
    fakes.PLATFORM_11:              (N,      N,    Y,       N,     N),
    fakes.REGULATOR_COUNTY:         (N,      N,    N,       N,     Y),
    fakes.REGULATOR_PROVINCE:       (N,      N,    N,       N,     Y),
    fakes.REGULATOR_OTHER_PROVINCE: (N,      N,    N,       N,     N),
    fakes.REGULATOR_NATIONAL:       (N,      N,    N,       N,     Y),
    fakes.OPS_ADMIN:                (Y,      Y,    Y,       Y,     Y),
    fakes.SERVICE_ACCOUNT:          (Y,      Y,    Y,       Y,     Y),
}

CELLS = [
    pytest.param(caller, action, allowed, id=f"{caller}-{action.split()[0]}")
    for caller, row in MATRIX.items()
    for action, allowed in zip(ACTIONS, row, strict=True)
]


def test_the_table_covers_every_caller() -> None:
    assert set(MATRIX) == set(fakes.PRINCIPALS)


# -- 1. the access rules, called directly ------------------------------------------------------

SHANDONG_BATCH = Batch(
    batch_id="B370000000000001", subject_id=COOP, subject_division="370783",
    product_code="010403001", product_name="寿光番茄", category="PLANT/VEGETABLE/SOLANACEOUS",
    quantity=Quantity(Decimal("500.000"), Unit.KG), production_date=date(2024, 4, 30),
    origin_division="370783", certificate=None,
    created_at=datetime(2024, 5, 1, 8, 0, tzinfo=UTC),
)

DIRECT: dict[str, Callable[[Principal | None], None]] = {
    CREATE: lambda actor: access.check_acts_for(actor, COOP, "370783", "create batches"),
    SHIP: lambda actor: access.check_acts_for(actor, COOP, "370783", "ship goods"),
    RECEIVE: lambda actor: access.check_acts_for(actor, MARKET, "110106", "receive goods"),
    TRACE: lambda actor: access.check_province(actor, "37"),
    READ: lambda actor: access.check_read(actor, SHANDONG_BATCH),
}


@pytest.mark.parametrize(("caller", "action", "allowed"), CELLS)
def test_the_access_rules(
    principals: dict[str, Principal | None], caller: str, action: str, allowed: bool
) -> None:
    actor = principals[caller]
    if allowed:
        DIRECT[action](actor)
        return
    with pytest.raises(PermissionDenied) as error:
        DIRECT[action](actor)
    assert error.value.reason == DENIAL_REASONS[action]
    assert actor is not None
    assert error.value.metadata == {"kind": actor.kind.value}


@pytest.mark.parametrize("caller", list(MATRIX))
def test_may_read_agrees_with_check_read(
    principals: dict[str, Principal | None], caller: str
) -> None:
    actor = principals[caller]
    assert access.may_read(actor, SHANDONG_BATCH) is MATRIX[caller][ACTIONS.index(READ)]


@pytest.mark.parametrize("caller", list(MATRIX))
def test_acts_for_agrees_with_check_acts_for(
    principals: dict[str, Principal | None], caller: str
) -> None:
    actor = principals[caller]
    assert access.acts_for(actor, COOP, "370783") is MATRIX[caller][ACTIONS.index(CREATE)]
    assert access.acts_for(actor, MARKET, "110106") is MATRIX[caller][ACTIONS.index(RECEIVE)]


def test_a_denial_says_who_may_not_do_what(principals: dict[str, Principal | None]) -> None:
    with pytest.raises(PermissionDenied) as error:
        access.check_acts_for(principals[fakes.PLATFORM_11], COOP, "370783", "ship goods")

    assert error.value.message == f"a platform client may not ship goods for subject {COOP}"


def test_a_batch_is_readable_in_its_owners_jurisdiction_as_in_its_origins(
    principals: dict[str, Principal | None]
) -> None:
    # Shandong goods that a Beijing market repackaged: owned in 11, grown in 37.
    repacked = Batch(
        batch_id="B370000000000009", subject_id=MARKET, subject_division="110106",
        product_code="010403001", product_name="番茄", category="PLANT/VEGETABLE/SOLANACEOUS",
        quantity=Quantity(Decimal("50.000"), Unit.KG), production_date=date(2024, 4, 30),
        origin_division="370783", certificate=None)

    readers = {caller for caller, actor in principals.items()
               if access.may_read(actor, repacked)}

    assert readers == {fakes.PROCESS, fakes.OPERATOR_MARKET, fakes.PLATFORM_37,
                       fakes.PLATFORM_11, fakes.REGULATOR_COUNTY, fakes.REGULATOR_PROVINCE,
                       fakes.REGULATOR_NATIONAL, fakes.OPS_ADMIN, fakes.SERVICE_ACCOUNT}


def test_an_operator_bound_to_no_subject_acts_for_none() -> None:
    unbound = Principal(
        account_id="acc-unbound", kind=fakes.PRINCIPALS[fakes.OPERATOR_COOP].kind,
        username="unbound", subject_id="", jurisdiction="", roles=frozenset(),
        session_id="s", audience="agritrace")

    assert access.acts_for(unbound, COOP, "370783") is False
    assert access.may_read(unbound, SHANDONG_BATCH) is False


# -- 2. the same table, through the use cases ---------------------------------------------------


def _batch_input(codes: tuple[str, ...] = ()) -> BatchInput:
    return BatchInput(subject_id=COOP, product_code="010403001", product_name="寿光番茄",
                      amount="500", unit="KG", production_date=date(2024, 4, 30),
                      origin_division="", certificate=None, codes=codes)


def _setup_batch(service: FlowService, coding: Any) -> tuple[str, list[str]]:
    """A batch of COOP with two codes, one of them shipped to MARKET (by the process)."""
    codes = coding.issue(COOP, 2)
    batch = service.create_batch("req-setup", _batch_input(tuple(codes))).value
    service.record_shipment("req-setup-ship", ShipmentInput(
        batch.batch_id, COOP, MARKET, (codes[0],), "100", "KG", None, ""))
    return batch.batch_id, codes


def _attempt(service: FlowService, coding: Any, action: str,
             actor: Principal | None) -> Callable[[], object]:
    """The action as a call, its set-up (as the process) done."""
    if action == CREATE:
        return lambda: service.create_batch("req-cell", _batch_input(), actor=actor)
    batch_id, codes = _setup_batch(service, coding)
    return {
        SHIP: lambda: service.record_shipment("req-cell", ShipmentInput(
            batch_id, COOP, RETAILER, (codes[1],), "100", "KG", None, ""), actor=actor),
        RECEIVE: lambda: service.confirm_receipt("req-cell", MARKET, codes[0], actor=actor),
        TRACE: lambda: service.record_internal_trace(TraceInput(
            "37", "SD-0001", batch_id, datetime(2024, 4, 28, tzinfo=UTC), Activity.FERTILISER,
            {}), actor=actor),
        READ: lambda: service.get_batch(batch_id, actor=actor),
    }[action]


@pytest.mark.parametrize(("caller", "action", "allowed"), CELLS)
def test_the_use_cases_apply_the_table(
    service: FlowService, database: Any, coding: Any,
    principals: dict[str, Principal | None], caller: str, action: str, allowed: bool
) -> None:
    attempt = _attempt(service, coding, action, principals[caller])
    before = database.snapshot()
    published = list(database.published)
    commits = database.commits

    if allowed:
        attempt()
        assert database.commits == commits + (action != READ)
        return
    with pytest.raises(PermissionDenied) as error:
        attempt()
    assert error.value.reason == DENIAL_REASONS[action]
    assert database.committed == before
    assert database.published == published
    assert database.commits == commits


@pytest.mark.parametrize("caller", list(MATRIX))
def test_reading_the_history_follows_the_read_column(
    service: FlowService, coding: Any, principals: dict[str, Principal | None], caller: str
) -> None:
    batch_id, _ = _setup_batch(service, coding)
    actor = principals[caller]
    if MATRIX[caller][ACTIONS.index(READ)]:
        page, _ = service.history(batch_id, 10, "", actor=actor)
        assert [entry.kind for entry in page] == ["CREATED", "SHIPPED"]
        return
    with pytest.raises(PermissionDenied) as error:
        service.history(batch_id, 10, "", actor=actor)
    assert error.value.reason == "NOT_PERMITTED"


@pytest.mark.parametrize("caller", list(MATRIX))
def test_recording_a_market_entry_follows_the_receive_column(
    service: FlowService, database: Any, coding: Any,
    principals: dict[str, Principal | None], caller: str
) -> None:
    _, codes = _setup_batch(service, coding)
    actor = principals[caller]
    events = len(database.published)
    if MATRIX[caller][ACTIONS.index(RECEIVE)]:
        entry = service.record_market_entry("req-cell", MARKET, codes[0], "", None,
                                            actor=actor).value
        assert database.committed.entries == {entry.entry_id: entry}
        return
    with pytest.raises(PermissionDenied) as error:
        service.record_market_entry("req-cell", MARKET, codes[0], "", None, actor=actor)
    assert error.value.reason == "NOT_OWN_SUBJECT"
    assert len(database.published) == events
    assert database.committed.entries == {}


@pytest.mark.parametrize("caller", list(MATRIX))
def test_transforming_the_cooperatives_goods_follows_the_create_column(
    service: FlowService, database: Any, coding: Any,
    principals: dict[str, Principal | None], caller: str
) -> None:
    batch_id, _ = _setup_batch(service, coding)
    actor = principals[caller]
    before = database.snapshot()

    def run() -> Any:
        return service.record_transformation(
            "req-cell", COOP, TransformationKind.SPLIT, [(batch_id, "100", "KG", ())],
            BatchInput(COOP, "010403001", "", "100", "KG", date(2024, 4, 30), "", None), 0,
            actor=actor)

    if MATRIX[caller][ACTIONS.index(CREATE)]:
        batch, _ = run().value
        assert batch.parent_batch_ids == (batch_id,)
        return
    with pytest.raises(PermissionDenied) as error:
        run()
    assert error.value.reason == "NOT_OWN_SUBJECT"
    assert database.committed == before
    assert coding.calls_named("derive") == []
