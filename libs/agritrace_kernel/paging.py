"""Opaque page tokens (AIP-158): the position after the last item of a page, plus a digest of
the filters, so a token is refused when replayed with other filters."""

from __future__ import annotations

import base64
import binascii
import json

from agritrace_kernel.errors import InvalidArgument


def encode_token(parts: list[object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


def decode_token(token: str, field_path: str, size: int) -> list[object]:
    """The parts of a token this service issued with `size` parts; INVALID_ARGUMENT else."""
    try:
        parts = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, TypeError):
        parts = None
    if not isinstance(parts, list) or len(parts) != size:
        raise InvalidArgument.of(field_path, "is not a token this service issued")
    return parts


def page_size(requested: int, default: int, maximum: int, field: str = "page_size") -> int:
    """AIP-158 page size: 0 means the default; negative is refused; above the maximum is
    capped."""
    if requested < 0:
        raise InvalidArgument.of(field, "must not be negative")
    return min(requested or default, maximum)
