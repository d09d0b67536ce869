"""The `agritrace` command: `app` is the console-script entry point."""

from __future__ import annotations

from typing import Annotated

import typer

from agritrace_cli import session
from agritrace_cli.client import (
    ADDRESS_ENV_VAR,
    DEFAULT_ADDRESS,
    DEFAULT_TIMEOUT_SECONDS,
    TOKEN_ENV_VAR,
    ClientSettings,
)
from agritrace_cli.codes import codes_app
from agritrace_cli.subjects import subjects_app

app = typer.Typer(
    name="agritrace",
    help=(
        "Operator tool for the AgriTrace national registry. "
        f"Set {TOKEN_ENV_VAR} to send a bearer token with every call."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold personal data from import files
)
app.add_typer(subjects_app, name="subjects")
app.add_typer(codes_app, name="codes")
app.command("login")(session.login)
app.command("logout")(session.logout)


@app.callback()
def connect(
    ctx: typer.Context,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            envvar=ADDRESS_ENV_VAR,
            show_default=DEFAULT_ADDRESS,
            help="Registry host:port.",
        ),
    ] = None,
    timeout_seconds: Annotated[
        float,
        typer.Option("--timeout", min=0.1, help="Seconds to wait for each single call."),
    ] = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Operator tool for the AgriTrace national registry."""
    ctx.obj = ClientSettings.from_options(address, timeout_seconds)
