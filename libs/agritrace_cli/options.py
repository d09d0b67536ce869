"""Command-line options several command groups share."""

from __future__ import annotations

from typing import Annotated

import typer

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

RequestIdOption = Annotated[
    str | None,
    typer.Option(
        "--request-id",
        help="Idempotency key, 1-64 characters (default: a new UUID, printed); "
        "reuse it to retry safely.",
    ),
]
