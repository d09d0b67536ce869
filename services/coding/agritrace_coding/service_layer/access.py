"""Who may do what with codes, decided from the principal (method-level rules are in
entrypoints/policy.py):
- subject operators issue for their own subject and act on its codes;
- a printing company is a registered subject: its operators receive the pre-print runs
  addressed to it (export, label, confirm printing, void spoiled labels not yet bound to
  goods), and nothing else;
- platform clients act for the subjects of their own province (the provincial platform
  prints download batches);
- regulators read within their jurisdiction;
- ops administrators and service accounts (e.g. the flow service) act anywhere.
`actor=None` is the process itself (sweeps, start-up): trusted."""

from __future__ import annotations

from agritrace_coding.domain.model import Issuance
from agritrace_kernel.auth.principal import Principal, PrincipalKind
from agritrace_kernel.errors import PermissionDenied

Actor = Principal | None
_ANYWHERE = frozenset({PrincipalKind.OPS_ADMIN, PrincipalKind.SERVICE})


def _deny(actor: Principal, action: str, reason: str) -> PermissionDenied:
    return PermissionDenied(
        f"a {actor.kind.value.lower().replace('_', ' ')} may not {action}",
        reason=reason,
        metadata={"kind": actor.kind.value},
    )


def _acts_for_subject(actor: Principal, subject_id: str, division_code: str) -> bool:
    if actor.kind in _ANYWHERE:
        return True
    if actor.kind is PrincipalKind.SUBJECT_OPERATOR:
        return actor.subject_id == subject_id
    if actor.kind is PrincipalKind.PLATFORM_CLIENT:
        return actor.covers_division(division_code)
    return False


def check_issue(actor: Actor, subject_id: str, division_code: str) -> None:
    if actor is None or _acts_for_subject(actor, subject_id, division_code):
        return
    raise _deny(actor, f"issue codes for subject {subject_id}", "NOT_OWN_SUBJECT")


def acts_as_owner(actor: Actor, issuance: Issuance) -> bool:
    """Whether the actor acts for the subject the codes were issued to."""
    return actor is None or _acts_for_subject(actor, issuance.subject_id,
                                              issuance.subject_division)


def check_owner(actor: Actor, issuance: Issuance) -> None:
    """Binding codes to goods and deriving: the subject the codes were issued to."""
    if actor is None or acts_as_owner(actor, issuance):
        return
    raise _deny(actor, f"act on the codes of subject {issuance.subject_id}", "NOT_OWN_CODES")


def check_handle(actor: Actor, issuance: Issuance) -> None:
    """Exporting, rendering, confirming printing, voiding: the owner, or the printing
    company a pre-print run is addressed to."""
    if actor is None or _acts_for_subject(actor, issuance.subject_id, issuance.subject_division):
        return
    if (
        actor.kind is PrincipalKind.SUBJECT_OPERATOR
        and issuance.printer_subject_id
        and actor.subject_id == issuance.printer_subject_id
    ):
        return
    raise _deny(actor, f"handle the codes of subject {issuance.subject_id}", "NOT_OWN_CODES")


def may_read(actor: Actor, issuance: Issuance) -> bool:
    if actor is None:
        return True
    if actor.is_regulator:
        return actor.covers_division(issuance.subject_division)
    try:
        check_handle(actor, issuance)
    except PermissionDenied:
        return False
    return True


def check_read(actor: Actor, issuance: Issuance) -> None:
    if not may_read(actor, issuance):
        assert actor is not None
        raise _deny(actor, f"read the codes of subject {issuance.subject_id}", "NOT_PERMITTED")


def check_list(actor: Actor, subject_id: str, division_code: str) -> None:
    """Listing a subject's issuances (a printing company lists its own runs as subject)."""
    if actor is None or _acts_for_subject(actor, subject_id, division_code):
        return
    if actor.is_regulator and actor.covers_division(division_code):
        return
    raise _deny(actor, f"list the issuances of subject {subject_id}", "NOT_PERMITTED")


def sees_details(actor: Actor) -> bool:
    """Whether a VerifyCode answer may name the subject and batch: any authenticated caller
    (anonymous scans get the state only; the query service shows consumers the origin)."""
    return actor is not None
