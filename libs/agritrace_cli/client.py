"""Connecting to the registry and showing its errors.

Address: `--address`, else AGRITRACE_ADDRESS, else 127.0.0.1:50051. When AGRITRACE_TOKEN is
set, every call carries `authorization: Bearer <token>` metadata (for when the registry starts
checking it). Errors: a grpc.RpcError becomes its status code, its message and the details of
its google.rpc.Status (field violations, ErrorInfo reason, ...), on stderr, and exit code 1.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import grpc
import typer
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from rich.console import Console
from rich.text import Text

from agritrace.coding.v1 import coding_pb2_grpc
from agritrace.registry.v1 import registry_pb2_grpc

ADDRESS_ENV_VAR: Final = "AGRITRACE_ADDRESS"
TOKEN_ENV_VAR: Final = "AGRITRACE_TOKEN"
DEFAULT_ADDRESS: Final = "127.0.0.1:50051"
DEFAULT_TIMEOUT_SECONDS: Final = 30.0
RPC_ERROR_EXIT_CODE: Final = 1

Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How to reach the registry; built once by the root command and shared via ctx.obj."""

    address: str = DEFAULT_ADDRESS
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    bearer_token: str | None = None

    @classmethod
    def from_options(cls, address: str | None, timeout_seconds: float) -> ClientSettings:
        address = address or os.environ.get(ADDRESS_ENV_VAR) or DEFAULT_ADDRESS
        return cls(address=address, timeout_seconds=timeout_seconds)

    @property
    def token(self) -> str | None:
        """AGRITRACE_TOKEN, else the session `agritrace login` stored for this address."""
        from agritrace_cli.session import stored_access_token

        if self.bearer_token is not None:
            return self.bearer_token
        return os.environ.get(TOKEN_ENV_VAR, "").strip() or stored_access_token(
            self.address, self.timeout_seconds
        )

    @property
    def call_metadata(self) -> Metadata:
        """Metadata for every call: the bearer token when one is configured."""
        token = self.token
        if token is None:
            return ()
        return (("authorization", f"Bearer {token}"),)


def settings_from_context(ctx: typer.Context) -> ClientSettings:
    """The settings the root callback stored; defaults when a sub-app runs on its own."""
    settings = ctx.find_root().obj
    if isinstance(settings, ClientSettings):
        return settings
    return ClientSettings.from_options(None, DEFAULT_TIMEOUT_SECONDS)


# The generated stub module is untyped; binding the class to a typed name keeps strict mypy
# quiet whether or not typed stubs (mypy-protobuf's mypy_grpc) are generated later.
_make_stub: Callable[[grpc.Channel], registry_pb2_grpc.RegistryServiceStub] = (
    registry_pb2_grpc.RegistryServiceStub
)


@contextmanager
def registry_stub(settings: ClientSettings) -> Iterator[registry_pb2_grpc.RegistryServiceStub]:
    """A stub on a fresh channel, closed afterwards.

    The channel is plaintext: the registry has no TLS endpoint yet.
    """
    channel = grpc.insecure_channel(settings.address)
    try:
        yield _make_stub(channel)
    finally:
        channel.close()


_make_coding_stub: Callable[[grpc.Channel], coding_pb2_grpc.CodingServiceStub] = (
    coding_pb2_grpc.CodingServiceStub
)


@contextmanager
def coding_stub(settings: ClientSettings) -> Iterator[coding_pb2_grpc.CodingServiceStub]:
    """A coding-service stub on a fresh channel to the same address, closed afterwards."""
    channel = grpc.insecure_channel(settings.address)
    try:
        yield _make_coding_stub(channel)
    finally:
        channel.close()


def rich_status_of(error: grpc.RpcError) -> status_pb2.Status | None:
    """The google.rpc.Status carried in the error's trailers, if any and consistent."""
    if not isinstance(error, grpc.Call):
        return None
    try:
        return rpc_status.from_call(error)
    except ValueError:
        # The trailer disagrees with the status line; show the status line alone.
        return None


def _describe_detail(detail: any_pb2.Any) -> list[str]:
    """Readable lines for one google.rpc error detail."""
    bad_request = error_details_pb2.BadRequest()
    if detail.Unpack(bad_request):
        lines = ["field violations:"]
        for violation in bad_request.field_violations:
            reason = f" [{violation.reason}]" if violation.reason else ""
            lines.append(f"  {violation.field or '(request)'}: {violation.description}{reason}")
        return lines
    error_info = error_details_pb2.ErrorInfo()
    if detail.Unpack(error_info):
        domain = f" (domain {error_info.domain})" if error_info.domain else ""
        lines = [f"reason: {error_info.reason}{domain}"]
        lines.extend(f"  {key}: {value}" for key, value in sorted(error_info.metadata.items()))
        return lines
    precondition_failure = error_details_pb2.PreconditionFailure()
    if detail.Unpack(precondition_failure):
        lines = ["precondition failures:"]
        for failure in precondition_failure.violations:
            lines.append(f"  {failure.type} {failure.subject}: {failure.description}")
        return lines
    resource_info = error_details_pb2.ResourceInfo()
    if detail.Unpack(resource_info):
        return [
            f"resource: {resource_info.resource_type} {resource_info.resource_name}"
            + (f": {resource_info.description}" if resource_info.description else "")
        ]
    retry_info = error_details_pb2.RetryInfo()
    if detail.Unpack(retry_info):
        return [f"retry after: {retry_info.retry_delay.ToTimedelta().total_seconds():g}s"]
    localized_message = error_details_pb2.LocalizedMessage()
    if detail.Unpack(localized_message):
        return [f"message ({localized_message.locale}): {localized_message.message}"]
    return [f"detail: {detail.type_url}"]


def describe_rpc_error(error: grpc.RpcError) -> list[str]:
    """The lines shown for a failed call: code and message, then the status details."""
    if isinstance(error, grpc.Call):
        code = error.code()
        code_name = code.name if code is not None else "UNKNOWN"
        message = error.details() or ""
    else:
        code_name, message = "UNKNOWN", str(error)
    lines = [f"error: {code_name}: {message}"]
    status = rich_status_of(error)
    if status is not None:
        for detail in status.details:
            lines.extend(_describe_detail(detail))
    return lines


def print_rpc_error(console: Console, error: grpc.RpcError, settings: ClientSettings) -> None:
    for number, line in enumerate(describe_rpc_error(error)):
        console.print(Text(line, style="bold red" if number == 0 else ""))
    if isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.UNAVAILABLE:
        console.print(Text(f"(registry address: {settings.address})", style="dim"))


@contextmanager
def exit_on_rpc_error(settings: ClientSettings, error_console: Console) -> Iterator[None]:
    """Turns a grpc.RpcError in the block into its description on stderr and exit code 1."""
    try:
        yield
    except grpc.RpcError as error:
        print_rpc_error(error_console, error, settings)
        raise typer.Exit(RPC_ERROR_EXIT_CODE) from None
