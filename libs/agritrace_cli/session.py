"""`agritrace login` / `agritrace logout`, and the stored session later commands use.

The session lives in `$AGRITRACE_CONFIG_DIR/session.json` (default `~/.config/agritrace`),
readable by its owner only. A stored access token that is about to expire is renewed with
the refresh token (which rotates) before a command runs.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Final

import grpc
import typer

from agritrace.sso.v1 import sso_pb2, sso_pb2_grpc
from agritrace_cli.client import exit_on_rpc_error, settings_from_context
from agritrace_cli.rendering import stderr_console

CONFIG_DIR_ENV_VAR: Final = "AGRITRACE_CONFIG_DIR"
# Where sso answers when it is not at the platform address (microservices behind no gateway).
SSO_ADDRESS_ENV_VAR: Final = "AGRITRACE_SSO_ADDRESS"
PASSWORD_ENV_VAR: Final = "AGRITRACE_PASSWORD"
RENEW_MARGIN_SECONDS: Final = 60


def session_path() -> Path:
    base = os.environ.get(CONFIG_DIR_ENV_VAR) or Path.home() / ".config" / "agritrace"
    return Path(base) / "session.json"


def sso_address(address: str) -> str:
    return os.environ.get(SSO_ADDRESS_ENV_VAR) or address


@dataclass(frozen=True)
class StoredSession:
    address: str
    sso_address: str
    username: str
    access_token: str
    refresh_token: str
    expires_at: float

    def save(self) -> None:
        path = session_path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(self), handle)
        temporary.replace(path)

    @classmethod
    def load(cls) -> StoredSession | None:
        try:
            return cls(**json.loads(session_path().read_text()))
        except (OSError, ValueError, TypeError):
            return None

    @classmethod
    def from_tokens(
        cls, address: str, sso: str, username: str, tokens: sso_pb2.TokenSet
    ) -> StoredSession:
        return cls(address, sso, username, tokens.access_token, tokens.refresh_token,
                   time.time() + tokens.expires_in)


def _sso(channel: grpc.Channel) -> sso_pb2_grpc.SsoServiceStub:
    return sso_pb2_grpc.SsoServiceStub(channel)  # type: ignore[no-untyped-call]


def stored_access_token(address: str, timeout_seconds: float) -> str | None:
    """The stored session's access token for this address, renewed when about to expire;
    None when there is no usable session (commands then call anonymously)."""
    stored = StoredSession.load()
    if stored is None or stored.address != address:
        return None
    if stored.expires_at - RENEW_MARGIN_SECONDS > time.time():
        return stored.access_token
    try:
        with grpc.insecure_channel(stored.sso_address) as channel:
            renewed = _sso(channel).Refresh(
                sso_pb2.RefreshRequest(refresh_token=stored.refresh_token),
                timeout=timeout_seconds,
            )
    except grpc.RpcError:
        return None  # expired or revoked: `agritrace login` again
    StoredSession.from_tokens(address, stored.sso_address, stored.username,
                              renewed.tokens).save()
    return str(renewed.tokens.access_token)


def login(
    ctx: typer.Context,
    username: Annotated[str, typer.Option("--username", "-u", help="Sign-in name.")] = "admin",
    password: Annotated[
        str | None,
        typer.Option("--password", envvar=PASSWORD_ENV_VAR, hidden=True,
                     help=f"Password (prefer the prompt or {PASSWORD_ENV_VAR})."),
    ] = None,
) -> None:
    """Sign in and store the session for later commands."""
    settings = settings_from_context(ctx)
    secret = password or typer.prompt("Password", hide_input=True)
    sso = sso_address(settings.address)
    with exit_on_rpc_error(settings, stderr_console()), grpc.insecure_channel(sso) as channel:
        answer = _sso(channel).Login(
            sso_pb2.LoginRequest(username=username, password=secret),
            timeout=settings.timeout_seconds,
        )
    StoredSession.from_tokens(settings.address, sso, username, answer.tokens).save()
    kind = sso_pb2.AccountKind.Name(answer.account.kind).removeprefix("ACCOUNT_KIND_")
    typer.echo(f"signed in as {answer.account.username} ({kind}); "
               f"session stored in {session_path()}")


def logout(ctx: typer.Context) -> None:
    """End the stored session, here and on the server."""
    settings = settings_from_context(ctx)
    stored = StoredSession.load()
    if stored is None:
        typer.echo("not signed in")
        return
    token = stored_access_token(stored.address, settings.timeout_seconds)
    if token is not None:
        with exit_on_rpc_error(settings, stderr_console()), \
                grpc.insecure_channel(stored.sso_address) as channel:
            _sso(channel).Logout(
                sso_pb2.LogoutRequest(), metadata=(("authorization", f"Bearer {token}"),),
                timeout=settings.timeout_seconds,
            )
    session_path().unlink(missing_ok=True)
    typer.echo("signed out")
