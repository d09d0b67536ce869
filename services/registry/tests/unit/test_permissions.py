"""The permission matrix of the registry: every RPC x every kind of caller, on two layers.

1. Method level (entrypoints/policy.py): may this principal call the RPC at all?
2. Use-case level (service_layer/access.py, through the use cases and the in-memory fakes):
   on this subject, in this division - allowed, or refused with exactly which reason?

Both tables are written out by hand, one cell per caller: they are the specification, not a
restatement of the code. A change of who may do what must change a cell here."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from agritrace.registry.v1 import registry_pb2
from agritrace_kernel.auth.principal import Principal, PrincipalKind, Role
from agritrace_kernel.errors import NotFound, PermissionDenied
from agritrace_registry.domain.identifiers import credit_code_check_char
from agritrace_registry.domain.model import (
    RegistrationInput,
    ReviewDecision,
    SubjectKind,
    SubjectStatus,
)
from agritrace_registry.entrypoints.policy import POLICIES
from agritrace_registry.service_layer.importer import SubjectImporter
from agritrace_registry.service_layer.ports import SubjectQuery
from agritrace_registry.service_layer.services import RegistryService

# -- the callers ---------------------------------------------------------------------------------

ANONYMOUS = "anonymous"
OPS_ADMIN = "ops_admin"
SERVICE = "service"
NATIONAL_REVIEWER = "national_reviewer"
PROVINCE_33_REVIEWER = "province_33_reviewer"
COUNTY_330106_REVIEWER = "county_330106_reviewer"
COUNTY_330106_INSPECTOR = "county_330106_inspector_only"
COUNTY_330102_REVIEWER = "neighbour_county_330102_reviewer"
PLATFORM_33 = "platform_client_33"
PLATFORM_32 = "platform_client_32"
OPERATOR_BOUND = "operator_bound_to_home_subject"
OPERATOR_UNBOUND = "operator_unbound_330106"

CALLERS = [
    ANONYMOUS,
    OPS_ADMIN,
    SERVICE,
    NATIONAL_REVIEWER,
    PROVINCE_33_REVIEWER,
    COUNTY_330106_REVIEWER,
    COUNTY_330106_INSPECTOR,
    COUNTY_330102_REVIEWER,
    PLATFORM_33,
    PLATFORM_32,
    OPERATOR_BOUND,
    OPERATOR_UNBOUND,
]


def _principal(
    name: str,
    kind: PrincipalKind,
    jurisdiction: str = "",
    roles: frozenset[str] = frozenset(),
    subject_id: str = "",
) -> Principal:
    return Principal(
        account_id=f"acc-{name}",
        kind=kind,
        username=name,
        subject_id=subject_id,
        jurisdiction=jurisdiction,
        roles=roles,
        session_id="s",
        audience="agritrace",
    )


REVIEWER = frozenset({Role.REVIEWER})


def principal(caller: str, home_subject_id: str = "") -> Principal | None:
    """The principal of a kind of caller; the bound operator operates `home_subject_id`.
    ANONYMOUS is None (at the use-case level None is the trusted process itself)."""
    kind = PrincipalKind
    return {
        ANONYMOUS: lambda: None,
        OPS_ADMIN: lambda: _principal("ops", kind.OPS_ADMIN),
        SERVICE: lambda: _principal("svc", kind.SERVICE),
        NATIONAL_REVIEWER: lambda: _principal("nat", kind.REGULATOR, "", REVIEWER),
        PROVINCE_33_REVIEWER: lambda: _principal("zj", kind.REGULATOR, "33", REVIEWER),
        COUNTY_330106_REVIEWER: lambda: _principal("xh", kind.REGULATOR, "330106", REVIEWER),
        COUNTY_330106_INSPECTOR: lambda: _principal(
            "xh-insp", kind.REGULATOR, "330106", frozenset({Role.INSPECTOR})),
        COUNTY_330102_REVIEWER: lambda: _principal("sc", kind.REGULATOR, "330102", REVIEWER),
        PLATFORM_33: lambda: _principal("plat-zj", kind.PLATFORM_CLIENT, "33"),
        PLATFORM_32: lambda: _principal("plat-js", kind.PLATFORM_CLIENT, "32"),
        OPERATOR_BOUND: lambda: _principal(
            "op-home", kind.SUBJECT_OPERATOR, "330106",
            subject_id=home_subject_id or "S-home"),
        OPERATOR_UNBOUND: lambda: _principal("op-new", kind.SUBJECT_OPERATOR, "330106"),
    }[caller]()


# -- 1. method level -----------------------------------------------------------------------------

RPC = "/agritrace.registry.v1.RegistryService/"
ALLOW, DENY = True, False

METHOD_MATRIX: dict[str, dict[str, bool]] = {
    "RegisterSubject": {
        ANONYMOUS: DENY,
        OPS_ADMIN: ALLOW,
        SERVICE: DENY,
        NATIONAL_REVIEWER: ALLOW,
        PROVINCE_33_REVIEWER: ALLOW,
        COUNTY_330106_REVIEWER: ALLOW,
        COUNTY_330106_INSPECTOR: ALLOW,
        COUNTY_330102_REVIEWER: ALLOW,
        PLATFORM_33: ALLOW,
        PLATFORM_32: ALLOW,
        OPERATOR_BOUND: ALLOW,
        OPERATOR_UNBOUND: ALLOW,
    },
    "GetSubject": {
        ANONYMOUS: DENY,
        OPS_ADMIN: ALLOW,
        SERVICE: ALLOW,
        NATIONAL_REVIEWER: ALLOW,
        PROVINCE_33_REVIEWER: ALLOW,
        COUNTY_330106_REVIEWER: ALLOW,
        COUNTY_330106_INSPECTOR: ALLOW,
        COUNTY_330102_REVIEWER: ALLOW,
        PLATFORM_33: ALLOW,
        PLATFORM_32: ALLOW,
        OPERATOR_BOUND: ALLOW,
        OPERATOR_UNBOUND: ALLOW,
    },
    "LookupSubject": {
        ANONYMOUS: DENY,
        OPS_ADMIN: ALLOW,
        SERVICE: ALLOW,
        NATIONAL_REVIEWER: ALLOW,
        PROVINCE_33_REVIEWER: ALLOW,
        COUNTY_330106_REVIEWER: ALLOW,
        COUNTY_330106_INSPECTOR: ALLOW,
        COUNTY_330102_REVIEWER: ALLOW,
        PLATFORM_33: ALLOW,
        PLATFORM_32: ALLOW,
        OPERATOR_BOUND: ALLOW,
        OPERATOR_UNBOUND: ALLOW,
    },
    "ListSubjects": {
        ANONYMOUS: DENY,
        OPS_ADMIN: ALLOW,
        SERVICE: ALLOW,
        NATIONAL_REVIEWER: ALLOW,
        PROVINCE_33_REVIEWER: ALLOW,
        COUNTY_330106_REVIEWER: ALLOW,
        COUNTY_330106_INSPECTOR: ALLOW,
        COUNTY_330102_REVIEWER: ALLOW,
        PLATFORM_33: ALLOW,
        PLATFORM_32: ALLOW,
        OPERATOR_BOUND: DENY,
        OPERATOR_UNBOUND: DENY,
    },
    "UpdateSubject": {
        ANONYMOUS: DENY,
        OPS_ADMIN: ALLOW,
        SERVICE: DENY,
        NATIONAL_REVIEWER: ALLOW,
        PROVINCE_33_REVIEWER: ALLOW,
        COUNTY_330106_REVIEWER: ALLOW,
        COUNTY_330106_INSPECTOR: ALLOW,
        COUNTY_330102_REVIEWER: ALLOW,
        PLATFORM_33: DENY,
        PLATFORM_32: DENY,
        OPERATOR_BOUND: ALLOW,
        OPERATOR_UNBOUND: ALLOW,
    },
    "ReviewSubject": {
        ANONYMOUS: DENY,
        OPS_ADMIN: ALLOW,
        SERVICE: DENY,
        NATIONAL_REVIEWER: ALLOW,
        PROVINCE_33_REVIEWER: ALLOW,
        COUNTY_330106_REVIEWER: ALLOW,
        COUNTY_330106_INSPECTOR: DENY,
        COUNTY_330102_REVIEWER: ALLOW,
        PLATFORM_33: DENY,
        PLATFORM_32: DENY,
        OPERATOR_BOUND: DENY,
        OPERATOR_UNBOUND: DENY,
    },
    "ImportSubjects": {
        ANONYMOUS: DENY,
        OPS_ADMIN: ALLOW,
        SERVICE: DENY,
        NATIONAL_REVIEWER: DENY,
        PROVINCE_33_REVIEWER: DENY,
        COUNTY_330106_REVIEWER: DENY,
        COUNTY_330106_INSPECTOR: DENY,
        COUNTY_330102_REVIEWER: DENY,
        PLATFORM_33: ALLOW,
        PLATFORM_32: ALLOW,
        OPERATOR_BOUND: DENY,
        OPERATOR_UNBOUND: DENY,
    },
}


def test_the_matrix_covers_every_rpc_and_every_caller() -> None:
    served = {method.name for method in registry_pb2.DESCRIPTOR.services_by_name[
        "RegistryService"].methods}
    assert set(METHOD_MATRIX) == served
    assert len(served) == 7
    assert set(POLICIES) == {RPC + method for method in served}
    for row in METHOD_MATRIX.values():
        assert list(row) == CALLERS


@pytest.mark.parametrize(
    ("method", "caller", "allowed"),
    [
        pytest.param(method, caller, allowed,
                     id=f"{method}-{caller}-{'allowed' if allowed else 'denied'}")
        for method, row in METHOD_MATRIX.items()
        for caller, allowed in row.items()
    ],
)
def test_method_level(method: str, caller: str, allowed: bool) -> None:
    rule = POLICIES.rule_for(RPC + method)

    assert rule is not None
    assert rule.allows(principal(caller)) is allowed


# -- 2. use-case level ---------------------------------------------------------------------------

PROCESS = "process_actor_none"  # actor=None: the process itself, trusted
USE_CASE_CALLERS = [PROCESS, *CALLERS[1:]]

OK = "OK"
# A look-up outside the caller's scope answers NOT_FOUND, exactly as for an unregistered key:
# whether an ID number is registered elsewhere is itself personal data.
HIDDEN = "HIDDEN"
OUTSIDE_JURISDICTION = "OUTSIDE_JURISDICTION"
NOT_OWN_SUBJECT = "NOT_OWN_SUBJECT"
NOT_PERMITTED = "NOT_PERMITTED"
NOT_A_REVIEWER = "NOT_A_REVIEWER"
ALREADY_BOUND = "ALREADY_BOUND_TO_SUBJECT"


def credit_code(division: str, serial: int) -> str:
    body = f"91{division}MA{serial:07d}"
    return body + credit_code_check_char(body)


HOME_CODE = credit_code("330106", 1)  # Hangzhou Xihu district, Zhejiang (33)
FAR_CODE = credit_code("320102", 2)  # Nanjing Xuanwu district, Jiangsu (32)
NEW_CODE = credit_code("330106", 3)


def company(code: str, division: str, name: str, **changes: Any) -> RegistrationInput:
    base = RegistrationInput(
        kind=SubjectKind.ENTERPRISE,
        name=name,
        credit_code=code,
        division_code=division,
        address="某路1号",
        legal_representative="王五",
    )
    return dataclasses.replace(base, **changes)


HOME = company(HOME_CODE, "330106", "杭州西湖龙井茶叶有限公司")
FAR = company(FAR_CODE, "320102", "南京玄武雨花茶业有限公司")
NEW = company(NEW_CODE, "330106", "杭州西湖新茶专业合作社")


@dataclasses.dataclass
class World:
    service: RegistryService
    importer: SubjectImporter
    database: Any
    home_id: str
    far_id: str

    def id_of(self, which: str) -> str:
        return {"home": self.home_id, "far": self.far_id}[which]


@pytest.fixture
def world(service: RegistryService, importer: SubjectImporter, database: Any) -> World:
    home = service.register_subject("seed-home", HOME, actor=None)
    far = service.register_subject("seed-far", FAR, actor=None)
    return World(service, importer, database, home.subject_id, far.subject_id)


Operation = Callable[[World, Principal | None], None]


def _get(which: str) -> Operation:
    def run(w: World, actor: Principal | None) -> None:
        assert w.service.get_subject(w.id_of(which), actor=actor).subject_id == w.id_of(which)
    return run


def _lookup(which: str) -> Operation:
    code = {"home": HOME_CODE, "far": FAR_CODE}[which]

    def run(w: World, actor: Principal | None) -> None:
        found = w.service.lookup_subject(credit_code=code, actor=actor)
        assert found.subject_id == w.id_of(which)
    return run


def _update(which: str) -> Operation:
    data = {"home": HOME, "far": FAR}[which]

    def run(w: World, actor: Principal | None) -> None:
        updated = w.service.update_subject(
            w.id_of(which), dataclasses.replace(data, address="新地址8号"), ["address"], 1,
            actor=actor,
        )
        assert updated.address == "新地址8号"
        assert updated.version == 2
    return run


def _review(which: str) -> Operation:
    def run(w: World, actor: Principal | None) -> None:
        reviewed = w.service.review_subject(
            w.id_of(which), ReviewDecision.APPROVE, "", 1, actor=actor)
        assert reviewed.status is SubjectStatus.APPROVED
    return run


def _register(w: World, actor: Principal | None) -> None:
    created = w.service.register_subject("req-new", NEW, actor=actor)
    assert created.division_code == "330106"
    assert created.subject_id in w.database.committed.subjects


def _import(province: str) -> Operation:
    def run(w: World, actor: Principal | None) -> None:
        run_ = w.importer.begin(f"imp-{province}", province, actor=actor)
        assert run_.source_province == province
    return run


OPERATIONS: dict[str, Operation] = {
    "get_home_330106": _get("home"),
    "get_far_320102": _get("far"),
    "lookup_home_330106": _lookup("home"),
    "lookup_far_320102": _lookup("far"),
    "update_home_330106": _update("home"),
    "update_far_320102": _update("far"),
    "approve_home_330106": _review("home"),
    "approve_far_320102": _review("far"),
    "register_in_330106": _register,
    "import_province_33": _import("33"),
    "import_province_32": _import("32"),
}

USE_CASE_MATRIX: dict[str, dict[str, str]] = {
    "get_home_330106": {
        PROCESS: OK,
        OPS_ADMIN: OK,
        SERVICE: OK,
        NATIONAL_REVIEWER: OK,
        PROVINCE_33_REVIEWER: OK,
        COUNTY_330106_REVIEWER: OK,
        COUNTY_330106_INSPECTOR: OK,
        COUNTY_330102_REVIEWER: OUTSIDE_JURISDICTION,
        PLATFORM_33: OK,
        PLATFORM_32: OUTSIDE_JURISDICTION,
        OPERATOR_BOUND: OK,
        OPERATOR_UNBOUND: NOT_OWN_SUBJECT,
    },
    "get_far_320102": {
        PROCESS: OK,
        OPS_ADMIN: OK,
        SERVICE: OK,
        NATIONAL_REVIEWER: OK,
        PROVINCE_33_REVIEWER: OUTSIDE_JURISDICTION,
        COUNTY_330106_REVIEWER: OUTSIDE_JURISDICTION,
        COUNTY_330106_INSPECTOR: OUTSIDE_JURISDICTION,
        COUNTY_330102_REVIEWER: OUTSIDE_JURISDICTION,
        PLATFORM_33: OUTSIDE_JURISDICTION,
        PLATFORM_32: OK,
        OPERATOR_BOUND: NOT_OWN_SUBJECT,
        OPERATOR_UNBOUND: NOT_OWN_SUBJECT,
    },
    "lookup_home_330106": {
        PROCESS: OK,
        OPS_ADMIN: OK,
        SERVICE: OK,
        NATIONAL_REVIEWER: OK,
        PROVINCE_33_REVIEWER: OK,
        COUNTY_330106_REVIEWER: OK,
        COUNTY_330106_INSPECTOR: OK,
        COUNTY_330102_REVIEWER: HIDDEN,
        PLATFORM_33: OK,
        PLATFORM_32: HIDDEN,
        OPERATOR_BOUND: OK,
        OPERATOR_UNBOUND: HIDDEN,
    },
    "lookup_far_320102": {
        PROCESS: OK,
        OPS_ADMIN: OK,
        SERVICE: OK,
        NATIONAL_REVIEWER: OK,
        PROVINCE_33_REVIEWER: HIDDEN,
        COUNTY_330106_REVIEWER: HIDDEN,
        COUNTY_330106_INSPECTOR: HIDDEN,
        COUNTY_330102_REVIEWER: HIDDEN,
        PLATFORM_33: HIDDEN,
        PLATFORM_32: OK,
        OPERATOR_BOUND: HIDDEN,
        OPERATOR_UNBOUND: HIDDEN,
    },
    "update_home_330106": {
        PROCESS: OK,
        OPS_ADMIN: OK,
        SERVICE: OUTSIDE_JURISDICTION,
        NATIONAL_REVIEWER: OK,
        PROVINCE_33_REVIEWER: OK,
        COUNTY_330106_REVIEWER: OK,
        COUNTY_330106_INSPECTOR: OK,
        COUNTY_330102_REVIEWER: OUTSIDE_JURISDICTION,
        PLATFORM_33: OUTSIDE_JURISDICTION,
        PLATFORM_32: OUTSIDE_JURISDICTION,
        OPERATOR_BOUND: OK,
        OPERATOR_UNBOUND: OUTSIDE_JURISDICTION,
    },
    "update_far_320102": {
        PROCESS: OK,
        OPS_ADMIN: OK,
        SERVICE: OUTSIDE_JURISDICTION,
        NATIONAL_REVIEWER: OK,
        PROVINCE_33_REVIEWER: OUTSIDE_JURISDICTION,
        COUNTY_330106_REVIEWER: OUTSIDE_JURISDICTION,
        COUNTY_330106_INSPECTOR: OUTSIDE_JURISDICTION,
        COUNTY_330102_REVIEWER: OUTSIDE_JURISDICTION,
        PLATFORM_33: OUTSIDE_JURISDICTION,
        PLATFORM_32: OUTSIDE_JURISDICTION,
        OPERATOR_BOUND: OUTSIDE_JURISDICTION,
        OPERATOR_UNBOUND: OUTSIDE_JURISDICTION,
    },
    "approve_home_330106": {
        PROCESS: OK,
        OPS_ADMIN: OK,
        SERVICE: NOT_A_REVIEWER,
        NATIONAL_REVIEWER: OK,
        PROVINCE_33_REVIEWER: OK,
        COUNTY_330106_REVIEWER: OK,
        COUNTY_330106_INSPECTOR: NOT_A_REVIEWER,
        COUNTY_330102_REVIEWER: OUTSIDE_JURISDICTION,
        PLATFORM_33: NOT_A_REVIEWER,
        PLATFORM_32: NOT_A_REVIEWER,
        OPERATOR_BOUND: NOT_A_REVIEWER,
        OPERATOR_UNBOUND: NOT_A_REVIEWER,
    },
    "approve_far_320102": {
        PROCESS: OK,
        OPS_ADMIN: OK,
        SERVICE: NOT_A_REVIEWER,
        NATIONAL_REVIEWER: OK,
        PROVINCE_33_REVIEWER: OUTSIDE_JURISDICTION,
        COUNTY_330106_REVIEWER: OUTSIDE_JURISDICTION,
        COUNTY_330106_INSPECTOR: NOT_A_REVIEWER,
        COUNTY_330102_REVIEWER: OUTSIDE_JURISDICTION,
        PLATFORM_33: NOT_A_REVIEWER,
        PLATFORM_32: NOT_A_REVIEWER,
        OPERATOR_BOUND: NOT_A_REVIEWER,
        OPERATOR_UNBOUND: NOT_A_REVIEWER,
    },
    "register_in_330106": {
        PROCESS: OK,
        OPS_ADMIN: OK,
        SERVICE: OUTSIDE_JURISDICTION,
        NATIONAL_REVIEWER: OK,
        PROVINCE_33_REVIEWER: OK,
        COUNTY_330106_REVIEWER: OK,
        COUNTY_330106_INSPECTOR: OK,
        COUNTY_330102_REVIEWER: OUTSIDE_JURISDICTION,
        PLATFORM_33: OK,
        PLATFORM_32: OUTSIDE_JURISDICTION,
        OPERATOR_BOUND: ALREADY_BOUND,
        OPERATOR_UNBOUND: OK,
    },
    "import_province_33": {
        PROCESS: OK,
        OPS_ADMIN: OK,
        SERVICE: OUTSIDE_JURISDICTION,
        NATIONAL_REVIEWER: OUTSIDE_JURISDICTION,
        PROVINCE_33_REVIEWER: OUTSIDE_JURISDICTION,
        COUNTY_330106_REVIEWER: OUTSIDE_JURISDICTION,
        COUNTY_330106_INSPECTOR: OUTSIDE_JURISDICTION,
        COUNTY_330102_REVIEWER: OUTSIDE_JURISDICTION,
        PLATFORM_33: OK,
        PLATFORM_32: OUTSIDE_JURISDICTION,
        OPERATOR_BOUND: OUTSIDE_JURISDICTION,
        OPERATOR_UNBOUND: OUTSIDE_JURISDICTION,
    },
    "import_province_32": {
        PROCESS: OK,
        OPS_ADMIN: OK,
        SERVICE: OUTSIDE_JURISDICTION,
        NATIONAL_REVIEWER: OUTSIDE_JURISDICTION,
        PROVINCE_33_REVIEWER: OUTSIDE_JURISDICTION,
        COUNTY_330106_REVIEWER: OUTSIDE_JURISDICTION,
        COUNTY_330106_INSPECTOR: OUTSIDE_JURISDICTION,
        COUNTY_330102_REVIEWER: OUTSIDE_JURISDICTION,
        PLATFORM_33: OUTSIDE_JURISDICTION,
        PLATFORM_32: OK,
        OPERATOR_BOUND: OUTSIDE_JURISDICTION,
        OPERATOR_UNBOUND: OUTSIDE_JURISDICTION,
    },
}

# ListSubjects: which of the seeded subjects the caller gets back, or the refusal.
HOME_ONLY, FAR_ONLY, BOTH, NEITHER = ("home",), ("far",), ("home", "far"), ()
LIST_MATRIX: dict[str, dict[str, tuple[str, ...] | str]] = {
    "": {
        PROCESS: BOTH,
        OPS_ADMIN: BOTH,
        SERVICE: BOTH,
        NATIONAL_REVIEWER: BOTH,
        PROVINCE_33_REVIEWER: HOME_ONLY,
        COUNTY_330106_REVIEWER: HOME_ONLY,
        COUNTY_330106_INSPECTOR: HOME_ONLY,
        COUNTY_330102_REVIEWER: NEITHER,
        PLATFORM_33: HOME_ONLY,
        PLATFORM_32: FAR_ONLY,
        OPERATOR_BOUND: NOT_PERMITTED,
        OPERATOR_UNBOUND: NOT_PERMITTED,
    },
    "3301": {
        PROCESS: HOME_ONLY,
        OPS_ADMIN: HOME_ONLY,
        SERVICE: HOME_ONLY,
        NATIONAL_REVIEWER: HOME_ONLY,
        PROVINCE_33_REVIEWER: HOME_ONLY,
        COUNTY_330106_REVIEWER: HOME_ONLY,
        COUNTY_330106_INSPECTOR: HOME_ONLY,
        COUNTY_330102_REVIEWER: NEITHER,
        PLATFORM_33: HOME_ONLY,
        PLATFORM_32: OUTSIDE_JURISDICTION,
        OPERATOR_BOUND: NOT_PERMITTED,
        OPERATOR_UNBOUND: NOT_PERMITTED,
    },
    "32": {
        PROCESS: FAR_ONLY,
        OPS_ADMIN: FAR_ONLY,
        SERVICE: FAR_ONLY,
        NATIONAL_REVIEWER: FAR_ONLY,
        PROVINCE_33_REVIEWER: OUTSIDE_JURISDICTION,
        COUNTY_330106_REVIEWER: OUTSIDE_JURISDICTION,
        COUNTY_330106_INSPECTOR: OUTSIDE_JURISDICTION,
        COUNTY_330102_REVIEWER: OUTSIDE_JURISDICTION,
        PLATFORM_33: OUTSIDE_JURISDICTION,
        PLATFORM_32: FAR_ONLY,
        OPERATOR_BOUND: NOT_PERMITTED,
        OPERATOR_UNBOUND: NOT_PERMITTED,
    },
}


def test_the_use_case_matrices_cover_every_caller() -> None:
    assert set(USE_CASE_MATRIX) == set(OPERATIONS)
    for row in [*USE_CASE_MATRIX.values(), *LIST_MATRIX.values()]:
        assert list(row) == USE_CASE_CALLERS


def _actor(caller: str, world: World) -> Principal | None:
    return principal(ANONYMOUS if caller == PROCESS else caller, world.home_id)


@pytest.mark.parametrize(
    ("operation", "caller", "expected"),
    [
        pytest.param(operation, caller, expected, id=f"{operation}-{caller}-{expected}")
        for operation, row in USE_CASE_MATRIX.items()
        for caller, expected in row.items()
    ],
)
def test_use_case_level(world: World, operation: str, caller: str, expected: str) -> None:
    actor = _actor(caller, world)
    before, published = world.database.snapshot(), len(world.database.published)

    if expected == OK:
        OPERATIONS[operation](world, actor)
        return
    if expected == HIDDEN:
        with pytest.raises(NotFound) as hidden:
            OPERATIONS[operation](world, actor)
        assert hidden.value.reason == "SUBJECT_NOT_FOUND"
        return
    with pytest.raises(PermissionDenied) as denied:
        OPERATIONS[operation](world, actor)

    assert denied.value.reason == expected
    assert actor is not None and denied.value.metadata["kind"] == actor.kind.value
    # A refusal changes nothing.
    assert world.database.snapshot() == before
    assert len(world.database.published) == published


@pytest.mark.parametrize(
    ("prefix", "caller", "expected"),
    [
        pytest.param(prefix, caller, expected, id=f"list_{prefix or 'all'}-{caller}-"
                     + (expected if isinstance(expected, str) else "+".join(expected) or "none"))
        for prefix, row in LIST_MATRIX.items()
        for caller, expected in row.items()
    ],
)
def test_list_level(
    world: World, prefix: str, caller: str, expected: tuple[str, ...] | str
) -> None:
    actor = _actor(caller, world)

    if isinstance(expected, str):
        with pytest.raises(PermissionDenied) as denied:
            world.service.list_subjects(SubjectQuery(division_prefix=prefix), 50, "",
                                        actor=actor)
        assert denied.value.reason == expected
        return
    page, token = world.service.list_subjects(
        SubjectQuery(division_prefix=prefix), 50, "", actor=actor)
    assert sorted(s.subject_id for s in page) == sorted(world.id_of(w) for w in expected)
    assert token == ""


# -- the two layers together ---------------------------------------------------------------------

RPC_OF_OPERATION = {
    "get_home_330106": "GetSubject",
    "get_far_320102": "GetSubject",
    "lookup_home_330106": "LookupSubject",
    "lookup_far_320102": "LookupSubject",
    "update_home_330106": "UpdateSubject",
    "update_far_320102": "UpdateSubject",
    "approve_home_330106": "ReviewSubject",
    "approve_far_320102": "ReviewSubject",
    "register_in_330106": "RegisterSubject",
    "import_province_33": "ImportSubjects",
    "import_province_32": "ImportSubjects",
}


@pytest.mark.parametrize("caller", CALLERS[1:])
def test_whatever_the_method_level_refuses_the_use_case_refuses_too(caller: str) -> None:
    """Defence in depth, read off the two tables above: a use case called from elsewhere
    than the gRPC servicer (a worker, the CLI) must not let through what the RPC refuses."""
    leaks = [
        operation
        for operation, rpc in RPC_OF_OPERATION.items()
        if not METHOD_MATRIX[rpc][caller] and USE_CASE_MATRIX[operation][caller] == OK
    ] + [
        f"list {prefix!r}"
        for prefix, row in LIST_MATRIX.items()
        if not METHOD_MATRIX["ListSubjects"][caller] and not isinstance(row[caller], str)
    ]
    assert leaks == []
