"""Method-level authorization: every RPC of a service has a rule saying who may call it at
all. A service declares its table next to its servicer and checks it is complete at
start-up, so no RPC can be open by accident; at call time a method without a rule is refused.
Finer decisions (which subject, which division) belong to the use cases, with
`current_principal()` and `Principal.covers_division`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from google.protobuf.descriptor import ServiceDescriptor

from agritrace_kernel.auth.principal import Principal, PrincipalKind, Role


@dataclass(frozen=True)
class Rule:
    """Whether a caller (None: anonymous) may call a method at all."""

    description: str
    predicate: Callable[[Principal | None], bool]

    def allows(self, principal: Principal | None) -> bool:
        return self.predicate(principal)

    def __call__(self, principal: Principal | None) -> bool:
        return self.predicate(principal)

    def __str__(self) -> str:
        return self.description


ANONYMOUS_ALLOWED = Rule("anyone, even without a token", lambda principal: True)
"""Anyone. A token, if sent, is still verified, and the call then runs as its principal."""

DENY_ALL = Rule("nobody", lambda principal: False)
"""Nobody (e.g. an RPC declared in the proto but not served yet)."""


def authenticated(*kinds: PrincipalKind) -> Rule:
    """Any authenticated principal of one of `kinds` (of any kind when none are given)."""
    allowed = frozenset(kinds)

    def predicate(principal: Principal | None) -> bool:
        return principal is not None and (not allowed or principal.kind in allowed)

    names = ", ".join(sorted(allowed)) if allowed else "any kind"
    return Rule(f"authenticated ({names})", predicate)


def regulator_with_role(role: Role | str) -> Rule:
    """A regulator (of any jurisdiction) holding `role`."""

    def predicate(principal: Principal | None) -> bool:
        return principal is not None and principal.is_regulator and principal.has_role(role)

    return Rule(f"regulator with role {role}", predicate)


def any_of(*rules: Rule) -> Rule:
    """Allowed when one of `rules` allows."""
    return Rule(
        " or ".join(rule.description for rule in rules),
        lambda principal: any(rule.allows(principal) for rule in rules),
    )


def all_of(*rules: Rule) -> Rule:
    """Allowed when every one of `rules` allows."""
    return Rule(
        " and ".join(rule.description for rule in rules),
        lambda principal: all(rule.allows(principal) for rule in rules),
    )


class IncompletePolicy(Exception):
    """A served method has no rule: refuse to start."""


class PolicyTable(Mapping[str, Rule]):
    """Full method name ("/agritrace.registry.v1.RegistryService/GetSubject") -> rule."""

    def __init__(self, rules: Mapping[str, Rule] | None = None) -> None:
        self._rules: dict[str, Rule] = {}
        for method, rule in (rules or {}).items():
            if not method.startswith("/") or method.count("/") != 2:
                raise ValueError(f"{method!r} is not a full method name (/pkg.Service/Method)")
            self._rules[method] = rule

    @classmethod
    def for_service(cls, service: ServiceDescriptor | str, rules: Mapping[str, Rule]
                    ) -> PolicyTable:
        """A table from short method names: `for_service(DESCRIPTOR, {"Login": ...})`."""
        name = service if isinstance(service, str) else service.full_name
        return cls({f"/{name}/{method}": rule for method, rule in rules.items()})

    def merged(self, *others: PolicyTable) -> PolicyTable:
        """One table for a server hosting several services."""
        rules = dict(self._rules)
        for other in others:
            rules.update(other._rules)
        return PolicyTable(rules)

    def rule_for(self, full_method: str) -> Rule | None:
        return self._rules.get(full_method)

    def check_complete(self, service: ServiceDescriptor) -> None:
        """Raises IncompletePolicy naming every method of `service` that has no rule."""
        missing = [
            f"/{service.full_name}/{method.name}"
            for method in service.methods
            if f"/{service.full_name}/{method.name}" not in self._rules
        ]
        if missing:
            raise IncompletePolicy(
                f"no authorization rule for {', '.join(missing)}: declare one for every RPC"
            )

    def __getitem__(self, full_method: str) -> Rule:
        return self._rules[full_method]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)
