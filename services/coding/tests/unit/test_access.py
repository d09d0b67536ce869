"""Who may do what with codes (service_layer/access.py): one table, written out by hand, of
every kind of caller x every kind of action on subject A's codes, checked twice - calling the
access rules directly, and through the use cases against the in-memory fakes.

The subjects (fakes.py): A, a grower in county 330106 (province 33); B, its neighbour in the
same county; P, a printing company in 440305 (province 44) to which A addressed a pre-print
run. A change of who may do what must change a cell here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from agritrace_coding.domain.model import CodeState, Issuance, IssueMode, LabelFormat
from agritrace_coding.service_layer import access
from agritrace_coding.service_layer.services import CodingService
from agritrace_kernel.auth.principal import Principal
from agritrace_kernel.errors import PermissionDenied
from agritrace_testing.fakes import load_beside

fakes = load_beside(__file__, "fakes.py", "agritrace_coding_unit_fakes")

A, B, P = fakes.SUBJECT_A, fakes.SUBJECT_B, fakes.PRINTER_P
BATCH = "LJ-2024-0501"

# -- the table ---------------------------------------------------------------------------------

ISSUE = "issue codes for A"
READ = "read A's pre-print run"
HANDLE = "handle A's run (print, export, label, void)"
OWN = "own A's codes (activate, derive)"
LIST_A = "list the issuances of A"
LIST_P = "list the issuances of P"
ACTIONS = [ISSUE, READ, HANDLE, OWN, LIST_A, LIST_P]

# Why each action is refused.
DENIAL_REASONS = {
    ISSUE: "NOT_OWN_SUBJECT",
    READ: "NOT_PERMITTED",
    HANDLE: "NOT_OWN_CODES",
    OWN: "NOT_OWN_CODES",
    LIST_A: "NOT_PERMITTED",
    LIST_P: "NOT_PERMITTED",
}

Y, N = True, False

#                                      issue  read  handle  own  list A  list P
MATRIX: dict[str, tuple[bool, ...]] = {
    fakes.PROCESS:                    (Y,     Y,    Y,      Y,   Y,      Y),
    fakes.OPERATOR_A:                 (Y,     Y,    Y,      Y,   Y,      N),
    fakes.OPERATOR_B:                 (N,     N,    N,      N,   N,      N),
    fakes.OPERATOR_P:                 (N,     Y,    Y,      N,   N,      Y),
    fakes.OPERATOR_UNBOUND:           (N,     N,    N,      N,   N,      N),
    fakes.PLATFORM_33:                (Y,     Y,    Y,      Y,   Y,      N),
    fakes.PLATFORM_44:                (N,     N,    N,      N,   N,      Y),
    fakes.REGULATOR_COUNTY:           (N,     Y,    N,      N,   Y,      N),
    fakes.REGULATOR_NEIGHBOUR_COUNTY: (N,     N,    N,      N,   N,      N),
    fakes.REGULATOR_PROVINCE:         (N,     Y,    N,      N,   Y,      N),
    fakes.REGULATOR_NATIONAL:         (N,     Y,    N,      N,   Y,      Y),
    fakes.OPS_ADMIN:                  (Y,     Y,    Y,      Y,   Y,      Y),
    fakes.SERVICE_ACCOUNT:            (Y,     Y,    Y,      Y,   Y,      Y),
}

CELLS = [
    pytest.param(caller, action, allowed, id=f"{caller}-{action.split(' (')[0]}")
    for caller, row in MATRIX.items()
    for action, allowed in zip(ACTIONS, row, strict=True)
]


def test_the_table_covers_every_caller() -> None:
    assert set(MATRIX) == set(fakes.PRINCIPALS)


# -- 1. the access rules, called directly ------------------------------------------------------

RUN = Issuance(
    issuance_id=1001, subject_id=A, subject_division=fakes.DIVISION_A, province="33",
    mode=IssueMode.PRE_PRINT, quantity=10, product_batch_id="", printer_subject_id=P,
    line_id="", created_at=datetime(2024, 5, 1, tzinfo=UTC), created_by="",
)

DIRECT: dict[str, Callable[[Principal | None], None]] = {
    ISSUE: lambda actor: access.check_issue(actor, A, fakes.DIVISION_A),
    READ: lambda actor: access.check_read(actor, RUN),
    HANDLE: lambda actor: access.check_handle(actor, RUN),
    OWN: lambda actor: access.check_owner(actor, RUN),
    LIST_A: lambda actor: access.check_list(actor, A, fakes.DIVISION_A),
    LIST_P: lambda actor: access.check_list(actor, P, fakes.DIVISION_P),
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
    assert access.may_read(principals[caller], RUN) is MATRIX[caller][ACTIONS.index(READ)]


def test_the_printer_of_one_run_may_not_handle_the_owners_other_codes(
    principals: dict[str, Principal | None]
) -> None:
    online = Issuance(
        issuance_id=1002, subject_id=A, subject_division=fakes.DIVISION_A, province="33",
        mode=IssueMode.ONLINE, quantity=10, product_batch_id="", printer_subject_id="",
        line_id="", created_at=datetime(2024, 5, 1, tzinfo=UTC), created_by="",
    )
    printer = principals[fakes.OPERATOR_P]

    assert access.may_read(printer, online) is False
    with pytest.raises(PermissionDenied) as error:
        access.check_handle(printer, online)
    assert error.value.reason == "NOT_OWN_CODES"


def test_an_unbound_operator_is_not_the_printer_of_a_run_without_printer(
    principals: dict[str, Principal | None]
) -> None:
    # An operator bound to no subject has subject_id "", as a run without printer has
    # printer_subject_id "": that must not match.
    unbound = principals[fakes.OPERATOR_UNBOUND]
    own_run = Issuance(
        issuance_id=1003, subject_id=A, subject_division=fakes.DIVISION_A, province="33",
        mode=IssueMode.PRE_PRINT, quantity=10, product_batch_id="", printer_subject_id="",
        line_id="", created_at=datetime(2024, 5, 1, tzinfo=UTC), created_by="",
    )

    with pytest.raises(PermissionDenied):
        access.check_handle(unbound, own_run)


@pytest.mark.parametrize("caller", list(MATRIX))
def test_verification_details_are_for_authenticated_callers(
    principals: dict[str, Principal | None], caller: str
) -> None:
    assert access.sees_details(principals[caller]) is (caller != fakes.PROCESS)


# -- 2. the same table through the use cases ---------------------------------------------------


@pytest.fixture
def world(service: CodingService, database: Any) -> dict[str, Any]:
    """A's pre-print run of 10 addressed to P (1..5 printed), and 3 active codes of A."""
    run = service.issue_codes("setup-run", A, IssueMode.PRE_PRINT, 10, "", P)
    run_id = str(run.issuance.issuance_id)
    service.mark_printed("setup-print", [], (run_id, 1, 5))
    online = service.issue_codes("setup-online", A, IssueMode.ONLINE, 3, BATCH)
    active = [record.code for record in online.codes]
    service.mark_printed("setup-activate", active, None)
    assert {database.state_of(code) for code in active} == {CodeState.ACTIVE}
    return {"run_id": run_id, "run_codes": database.codes_of(run.issuance.issuance_id),
            "active": active}


def through_service(service: CodingService, world: dict[str, Any], action: str,
                    actor: Principal | None) -> None:
    run_id = world["run_id"]
    if action == ISSUE:
        service.issue_codes("req-issue", A, IssueMode.ONLINE, 2, actor=actor)
    elif action == READ:
        service.get_issuance(run_id, actor=actor)
        service.list_codes(run_id, 0, "", None, actor=actor)
        service.lineage(world["run_codes"][0], 1, actor=actor)
    elif action == HANDLE:
        service.export_range(run_id, 0, 0, actor=actor)
        service.render_label(world["run_codes"][6], LabelFormat.SVG, actor=actor)
        service.mark_printed("req-print", [], (run_id, 6, 8), actor=actor)
        service.void("req-void", [world["run_codes"][9]], None, "spoiled", actor=actor)
    elif action == OWN:
        service.activate("req-activate", BATCH, [], (run_id, 1, 2), actor=actor)
    elif action == LIST_A:
        service.list_issuances(A, 10, "", actor=actor)
    elif action == LIST_P:
        service.list_issuances(P, 10, "", actor=actor)
    else:  # pragma: no cover
        raise AssertionError(action)


@pytest.mark.parametrize(("caller", "action", "allowed"), CELLS)
def test_the_use_cases_apply_the_table(
    service: CodingService, database: Any, world: dict[str, Any],
    principals: dict[str, Principal | None], caller: str, action: str, allowed: bool,
) -> None:
    actor = principals[caller]
    before = database.snapshot()
    published = len(database.published)

    if allowed:
        through_service(service, world, action, actor)
        return
    with pytest.raises(PermissionDenied) as error:
        through_service(service, world, action, actor)
    assert error.value.reason == DENIAL_REASONS[action]
    assert database.committed == before
    assert len(database.published) == published


@pytest.mark.parametrize("caller", list(MATRIX))
def test_deriving_needs_to_issue_for_the_subject_and_to_own_the_parents(
    service: CodingService, database: Any, world: dict[str, Any],
    principals: dict[str, Principal | None], caller: str,
) -> None:
    actor = principals[caller]
    row = MATRIX[caller]
    allowed = row[ACTIONS.index(ISSUE)] and row[ACTIONS.index(OWN)]
    before = database.snapshot()

    if allowed:
        result = service.derive("req-derive", A, world["active"][:2], "MIX-1", 1, "MIX",
                                actor=actor)
        assert result.issuance.created_by == ("" if actor is None else actor.account_id)
        return
    with pytest.raises(PermissionDenied) as error:
        service.derive("req-derive", A, world["active"][:2], "MIX-1", 1, "MIX", actor=actor)
    assert error.value.reason == "NOT_OWN_SUBJECT"
    assert database.committed == before


def test_an_operator_may_not_derive_another_subjects_codes_into_its_own(
    service: CodingService, database: Any, world: dict[str, Any],
    principals: dict[str, Principal | None],
) -> None:
    before = database.snapshot()

    with pytest.raises(PermissionDenied) as error:
        service.derive("req-derive", B, world["active"][:1], "MIX-1", 1, "MIX",
                       actor=principals[fakes.OPERATOR_B])

    assert error.value.reason == "NOT_OWN_CODES"
    assert database.committed == before


def test_a_line_session_is_opened_by_those_who_may_issue(
    service: CodingService, database: Any, principals: dict[str, Principal | None]
) -> None:
    for caller, row in MATRIX.items():
        actor = principals[caller]
        if row[ACTIONS.index(ISSUE)]:
            session = service.open_line(f"req-line-{caller}", A, BATCH, "line-1", actor=actor)
            assert session.actor is actor
        else:
            with pytest.raises(PermissionDenied) as error:
                service.open_line(f"req-line-{caller}", A, BATCH, "line-1", actor=actor)
            assert error.value.reason == "NOT_OWN_SUBJECT"


def test_the_printer_sees_its_run_when_listing_its_own_issuances(
    service: CodingService, world: dict[str, Any], principals: dict[str, Principal | None]
) -> None:
    page, _ = service.list_issuances(P, 10, "", actor=principals[fakes.OPERATOR_P])

    assert [str(issuance.issuance_id) for issuance, _ in page] == [world["run_id"]]
