"""`python -m agritrace_bridge simulate|faults|openapi ...`.

`simulate` serves a simulated provincial platform until SIGINT or SIGTERM and prints, first,
its URL and then its bridge key (``api_key=...``), one per line, so scripts and tests can
read them. `faults` changes the faults of a running simulator. `openapi` prints the contract
as an OpenAPI 3.1 document."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from agritrace_bridge.simulator import (
    Faults,
    FaultsPatch,
    SimulatedPlatform,
    SimulatorServer,
    SubjectGenerator,
)
from agritrace_kernel.logs import configure_logging

API_KEY_VARIABLE = "AGRITRACE_SIMULATOR_API_KEY"


def _fault_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The fault switches, shared by `simulate` (start values) and `faults` (changes)."""
    base = Faults()

    def default(value: object) -> object:
        return value if defaults else None

    parser.add_argument("--latency-ms", type=int, default=default(base.latency_ms))
    parser.add_argument("--fail-every", type=int, default=default(base.fail_every),
                        help="answer every n-th API request with --fail-status")
    parser.add_argument("--fail-status", type=int, default=default(base.fail_status),
                        choices=(429, 500, 502, 503, 504))
    parser.add_argument("--timeout-every", type=int, default=default(base.timeout_every),
                        help="let every n-th API request hang, then drop it")
    parser.add_argument("--hang-seconds", type=float, default=default(base.hang_seconds))
    parser.add_argument("--down", action=argparse.BooleanOptionalAction,
                        default=default(base.down), help="drop every API request")
    parser.add_argument("--broken-pagination", choices=("", "skip", "repeat"),
                        default=default(base.broken_pagination))


def _fault_values(args: argparse.Namespace) -> dict[str, object]:
    names = FaultsPatch.model_fields
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agritrace_bridge")
    commands = parser.add_subparsers(dest="command", required=True)

    simulate = commands.add_parser("simulate", help="serve a simulated provincial platform")
    simulate.add_argument("--province", required=True, help="two-digit province code")
    simulate.add_argument("--subjects", type=int, default=1000)
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=0, help="0 picks a free port")
    simulate.add_argument("--shared-with", default="",
                          help="the other province of the overlap set")
    simulate.add_argument("--shared", type=int, default=0,
                          help="subjects registered in both provinces (same seed on both)")
    simulate.add_argument("--invalid-every", type=int, default=0,
                          help="every n-th own subject has an unknown division code")
    simulate.add_argument("--batches", type=int, default=20,
                          help="batches the production records go to (ids invented)")
    simulate.add_argument("--initial-records", type=int, default=0)
    simulate.add_argument("--record-rate", type=int, default=0,
                          help="new production records per second")
    simulate.add_argument("--platform-id", default="",
                          help="its id in the national directory (default province-NN)")
    simulate.add_argument("--jwks-file", type=Path,
                          help="national public keys (JWK set) to verify exchanged tokens")
    simulate.add_argument("--sso-address", default="",
                          help="fetch the national public keys from sso at host:port instead")
    simulate.add_argument("--api-key", default=os.environ.get(API_KEY_VARIABLE, ""),
                          help=f"the bridge key (default ${API_KEY_VARIABLE}, else random)")
    simulate.add_argument("--log-level", default="INFO")
    _fault_options(simulate, defaults=True)

    faults = commands.add_parser("faults", help="change the faults of a running simulator")
    faults.add_argument("url")
    faults.add_argument("--api-key", default=os.environ.get(API_KEY_VARIABLE, ""))
    _fault_options(faults, defaults=False)

    commands.add_parser("openapi", help="print the contract as an OpenAPI 3.1 document")
    return parser


def _jwks_source(args: argparse.Namespace) -> Callable[[], str] | None:
    if args.sso_address:
        import grpc

        from agritrace_kernel.auth.sso_client import SsoKeySetSource

        return SsoKeySetSource(grpc.insecure_channel(args.sso_address)).fetch_jwks
    return None


def simulate(args: argparse.Namespace) -> int:
    try:
        generator = SubjectGenerator(province=args.province, seed=args.seed,
                                     count=args.subjects, shared_with=args.shared_with,
                                     shared=args.shared, invalid_every=args.invalid_every)
        faults = Faults.model_validate(_fault_values(args))
    except ValueError as error:
        print(f"simulate: {error}", file=sys.stderr)
        return 2
    configure_logging("text", args.log_level)
    platform = SimulatedPlatform(generator, platform_id=args.platform_id, batches=args.batches,
                                 initial_records=args.initial_records, faults=faults,
                                 jwks_source=_jwks_source(args))
    if args.jwks_file is not None:
        platform.set_jwks(args.jwks_file.read_text(encoding="utf-8"))
    api_key = args.api_key or secrets.token_urlsafe(24)
    server = SimulatorServer(platform, api_key, host=args.host, port=args.port,
                             record_rate=args.record_rate)

    def stop(signum: int, frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with server:
        print(server.url, flush=True)
        print(f"api_key={api_key}", flush=True)
        server.wait()
    return 0


def change_faults(args: argparse.Namespace) -> int:
    import httpx

    response = httpx.patch(f"{args.url.rstrip('/')}/admin/faults", json=_fault_values(args),
                           headers={"Authorization": f"Bearer {args.api_key}"}, timeout=10)
    print(response.text)
    return 0 if response.is_success else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "simulate":
        return simulate(args)
    if args.command == "openapi":
        from agritrace_bridge.openapi import document_text

        sys.stdout.write(document_text())
        return 0
    return change_faults(args)
