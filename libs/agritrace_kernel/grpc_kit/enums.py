"""Proto enums <-> domain enums, built once per servicer (imports convert hundreds of thousands
of messages; a dict look-up per value is what they can afford)."""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from google.protobuf.descriptor import EnumDescriptor

E = TypeVar("E", bound=Enum)


def enum_by_number(descriptor: EnumDescriptor, enum_type: type[E], prefix: str) -> dict[int, E]:
    """Proto number -> the domain member named like the proto value without `prefix`
    (SUBJECT_KIND_ENTERPRISE -> SubjectKind("ENTERPRISE")); *_UNSPECIFIED maps to nothing."""
    return {
        value.number: enum_type(value.name.removeprefix(prefix))
        for value in descriptor.values
        if not value.name.endswith("_UNSPECIFIED")
    }
