"""Which subjects a caller may touch, decided from its principal.

Method-level rules (which kinds of account may call an RPC at all) are in
entrypoints/policy.py; these are the finer rules a use case applies to the subject at hand:
- regulators act within their jurisdiction (national, or a division-code prefix), reviews
  need the REVIEWER role;
- platform clients act for their own province;
- subject operators act on their own subject, and register one in their county while their
  account is not yet bound to a subject;
- ops administrators act anywhere; service accounts read.
`actor=None` is the process itself (event handlers, start-up): trusted."""

from __future__ import annotations

from agritrace_kernel.auth.principal import Principal, PrincipalKind, Role
from agritrace_kernel.errors import PermissionDenied

Actor = Principal | None
_NATIONWIDE = frozenset({PrincipalKind.OPS_ADMIN, PrincipalKind.SERVICE})
_BY_DIVISION = frozenset({PrincipalKind.REGULATOR, PrincipalKind.PLATFORM_CLIENT})


def _deny(actor: Principal, action: str, reason: str = "OUTSIDE_JURISDICTION") -> PermissionDenied:
    return PermissionDenied(
        f"a {actor.kind.value.lower().replace('_', ' ')} may not {action}",
        reason=reason,
        metadata={"kind": actor.kind.value, "jurisdiction": actor.jurisdiction},
    )


def visible_prefix(actor: Actor) -> str | None:
    """Division-code prefix of the subjects the actor may read ("" all); None: no division
    (subject operators see their own subject only)."""
    if actor is None or actor.kind in _NATIONWIDE:
        return ""
    if actor.kind in _BY_DIVISION:
        return actor.jurisdiction
    return None


def may_read(actor: Actor, subject_id: str, division_code: str) -> bool:
    prefix = visible_prefix(actor)
    if prefix is None:
        return actor is not None and actor.subject_id == subject_id
    return division_code.startswith(prefix)


def check_read(actor: Actor, subject_id: str, division_code: str) -> None:
    prefix = visible_prefix(actor)
    if prefix is None:
        assert actor is not None
        if actor.subject_id != subject_id:
            raise _deny(actor, "read another subject", "NOT_OWN_SUBJECT")
    elif not division_code.startswith(prefix):
        assert actor is not None
        raise _deny(actor, f"read a subject of division {division_code}")


def list_prefix(actor: Actor, requested: str) -> str:
    """The division prefix a list actually uses: the request's, narrowed to the actor's
    scope; a request wholly outside the scope is refused."""
    prefix = visible_prefix(actor)
    if prefix is None:
        assert actor is not None
        raise _deny(actor, "list subjects", "NOT_PERMITTED")
    if requested.startswith(prefix):
        return requested
    if prefix.startswith(requested):
        return prefix
    assert actor is not None
    raise _deny(actor, f"list subjects of division {requested}")


def check_register(actor: Actor, division_code: str) -> None:
    if actor is None or actor.kind is PrincipalKind.OPS_ADMIN:
        return
    if actor.kind in _BY_DIVISION and division_code.startswith(actor.jurisdiction):
        return
    if actor.kind is PrincipalKind.SUBJECT_OPERATOR:
        if actor.subject_id:
            raise _deny(actor, "register a second subject", "ALREADY_BOUND_TO_SUBJECT")
        if division_code.startswith(actor.jurisdiction):
            return
    raise _deny(actor, f"register a subject in division {division_code}")


def check_update(actor: Actor, subject_id: str, division_code: str) -> None:
    if actor is None or actor.kind is PrincipalKind.OPS_ADMIN:
        return
    if actor.kind is PrincipalKind.SUBJECT_OPERATOR and actor.subject_id == subject_id:
        return
    if actor.kind is PrincipalKind.REGULATOR and division_code.startswith(actor.jurisdiction):
        return
    raise _deny(actor, f"update subject {subject_id}")


def check_move(actor: Actor, new_division_code: str) -> None:
    """Moving a subject to another division: regulators (into their jurisdiction) and
    administrators; an operator cannot move its own subject out of its registration county."""
    if actor is None or actor.kind is PrincipalKind.OPS_ADMIN:
        return
    if actor.kind is PrincipalKind.REGULATOR and new_division_code.startswith(actor.jurisdiction):
        return
    raise _deny(actor, f"move a subject to division {new_division_code}", "MOVE_NOT_PERMITTED")


def check_review(actor: Actor, division_code: str) -> None:
    if actor is None or actor.kind is PrincipalKind.OPS_ADMIN:
        return
    if actor.kind is PrincipalKind.REGULATOR and actor.has_role(Role.REVIEWER):
        if division_code.startswith(actor.jurisdiction):
            return
        raise _deny(actor, f"review a subject of division {division_code}")
    raise _deny(actor, "review subjects", "NOT_A_REVIEWER")


def check_import(actor: Actor, province: str) -> None:
    if actor is None or actor.kind is PrincipalKind.OPS_ADMIN:
        return
    if actor.kind is PrincipalKind.PLATFORM_CLIENT and actor.jurisdiction == province:
        return
    raise _deny(actor, f"import the history of province {province}")
