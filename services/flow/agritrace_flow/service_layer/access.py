"""Who may record and read what in the flow service (method-level rules are in
entrypoints/policy.py):
- a subject operator records for its own subject: its batches, what it ships, what it
  receives, what its market admits, what it transforms;
- a platform client acts for the subjects of its province, and sends the internal-trace
  records of its own province;
- regulators read within their jurisdiction (the batch's origin or its owner's division);
- ops administrators and service accounts (bridges, query) act anywhere.
Who sees which part of a chain is the query service's job; here only the owner, the services
and regulators read. `actor=None` is the process itself: trusted."""

from __future__ import annotations

from agritrace_flow.domain.model import Batch
from agritrace_kernel.auth.principal import Principal, PrincipalKind
from agritrace_kernel.errors import PermissionDenied

Actor = Principal | None
_ANYWHERE = frozenset({PrincipalKind.OPS_ADMIN, PrincipalKind.SERVICE})


def _deny(actor: Principal, action: str, reason: str) -> PermissionDenied:
    return PermissionDenied(
        f"a {actor.kind.value.lower().replace('_', ' ')} may not {action}",
        reason=reason, metadata={"kind": actor.kind.value},
    )


def acts_for(actor: Actor, subject_id: str, division_code: str) -> bool:
    if actor is None or actor.kind in _ANYWHERE:
        return True
    if actor.kind is PrincipalKind.SUBJECT_OPERATOR:
        return actor.subject_id == subject_id
    if actor.kind is PrincipalKind.PLATFORM_CLIENT:
        return actor.covers_division(division_code)
    return False


def check_acts_for(actor: Actor, subject_id: str, division_code: str, action: str) -> None:
    if not acts_for(actor, subject_id, division_code):
        assert actor is not None
        raise _deny(actor, f"{action} for subject {subject_id}", "NOT_OWN_SUBJECT")


def check_province(actor: Actor, province: str) -> None:
    """Internal-trace records come from their own province's platform."""
    if actor is None or actor.kind in _ANYWHERE:
        return
    if actor.kind is PrincipalKind.PLATFORM_CLIENT and actor.jurisdiction == province:
        return
    raise _deny(actor, f"send production records of province {province}", "NOT_OWN_PROVINCE")


def may_read(actor: Actor, batch: Batch) -> bool:
    if actor is None or actor.kind in _ANYWHERE:
        return True
    if actor.is_regulator or actor.kind is PrincipalKind.PLATFORM_CLIENT:
        return actor.covers_division(batch.origin_division) or actor.covers_division(
            batch.subject_division)
    return actor.kind is PrincipalKind.SUBJECT_OPERATOR and actor.subject_id == batch.subject_id


def check_read(actor: Actor, batch: Batch) -> None:
    if not may_read(actor, batch):
        assert actor is not None
        raise _deny(actor, f"read batch {batch.batch_id}", "NOT_PERMITTED")
