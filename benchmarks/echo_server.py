"""An echo gRPC server for measuring per-call overhead, run as its own process:

    python -m benchmarks.echo_server MODE

MODE is one of
  bare         grpcio server, a generic handler echoing bytes, no interceptors;
  no-tracing   the kernel's chain without TracingInterceptor (metrics, logging, errors);
  noop-tracing create_server's full chain, tracing NOT configured (no-op tracer provider);
  tracing      create_server's full chain after configure_tracing() with no exporter.
  auth         as tracing, plus the kernel's AuthInterceptor (EdDSA JWT verified against a
               cached key set, revocation check, policy table); it prints "TOKEN <jwt>", a
               token it accepts, after the port.

It prints "PORT <n>" on stdout when serving, and stops when stdin closes or on SIGTERM. The
thread pool, options and logging set-up are those of the registry server."""

from __future__ import annotations

import contextlib
import os
import sys
from concurrent import futures
from typing import Any

import grpc

SERVICE = "agritrace.bench.v1.Echo"
METHOD = f"/{SERVICE}/Echo"
MODES = ("bare", "no-tracing", "noop-tracing", "tracing", "auth")
MAX_WORKERS = 16


def _echo(request: bytes, _context: grpc.ServicerContext) -> bytes:
    return request


def _handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )


def _plain_server(interceptors: list[Any]) -> tuple[grpc.Server, int]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="grpc"),
        interceptors=interceptors,
        options=[("grpc.so_reuseport", 0)],
        maximum_concurrent_rpcs=MAX_WORKERS * 8,
    )
    server.add_generic_rpc_handlers((_handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def start(mode: str) -> tuple[Any, int]:
    """Starts the server for `mode`; returns (an object with .stop(grace), port)."""
    from agritrace_kernel.logs import configure_logging

    configure_logging("text", "INFO")  # as the registry server: successful calls not logged
    if mode == "bare":
        return _plain_server([])
    if mode == "no-tracing":
        from agritrace_kernel.grpc_kit.interceptors import (
            ErrorInterceptor,
            LoggingInterceptor,
            MetricsInterceptor,
        )

        return _plain_server([MetricsInterceptor(), LoggingInterceptor(), ErrorInterceptor()])
    if mode in ("noop-tracing", "tracing", "auth"):
        from agritrace_kernel.grpc_kit.server import ServiceRegistration, create_server

        if mode in ("tracing", "auth"):
            from agritrace_kernel.telemetry import configure_tracing

            os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
            configure_tracing("bench-echo")
        registration = ServiceRegistration(
            name=SERVICE,
            add_to_server=lambda server: server.add_generic_rpc_handlers((_handler(),)),
        )
        extra = [_authentication()] if mode == "auth" else []
        grpc_server = create_server("127.0.0.1:0", [registration], max_workers=MAX_WORKERS,
                                    extra_interceptors=extra)
        grpc_server.start()
        return grpc_server, grpc_server.port
    raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")


_ISSUED: list[str] = []


class _KeySet:
    def __init__(self, jwks: str) -> None:
        self.jwks = jwks

    def fetch_jwks(self) -> str:
        return self.jwks


class _NoRevocations:
    def revocations_since(self, cursor: str) -> tuple[list[Any], str]:
        return [], cursor


def _authentication() -> Any:
    """The AuthInterceptor as every service builds it, over a key set made here, and one
    token signed with it (what sso would issue: same algorithm, same claims)."""
    import json
    import time
    import uuid

    from joserfc import jwt
    from joserfc.jwk import KeySet, OKPKey

    from agritrace_kernel.auth.interceptor import AuthInterceptor
    from agritrace_kernel.auth.policy import PolicyTable, authenticated
    from agritrace_kernel.auth.tokens import KeySetCache, RevocationCache, TokenVerifier

    key = OKPKey.generate_key("Ed25519", parameters={"kid": "bench-1"})
    jwks = json.dumps(KeySet([key]).as_dict(private=False))
    now = int(time.time())
    claims = {"iss": "agritrace-sso", "sub": "acct-bench", "aud": "agritrace", "iat": now,
              "exp": now + 3600, "jti": uuid.uuid4().hex, "sid": "session-bench",
              "kind": "SERVICE", "username": "bench", "subject_id": "", "jurisdiction": "",
              "roles": []}
    _ISSUED.append(jwt.encode({"alg": "EdDSA", "kid": "bench-1"}, claims, key,
                              algorithms=["EdDSA"]))
    policies = PolicyTable.for_service(SERVICE, {"Echo": authenticated()})
    return AuthInterceptor(TokenVerifier(KeySetCache(_KeySet(jwks))),
                           RevocationCache(_NoRevocations()), policies)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in MODES:
        print(f"usage: python -m benchmarks.echo_server {{{'|'.join(MODES)}}}", file=sys.stderr)
        return 2
    server, port = start(argv[0])
    print(f"PORT {port}", flush=True)
    if _ISSUED:
        print(f"TOKEN {_ISSUED[0]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sys.stdin.read()  # until the parent closes our stdin (or goes away)
    server.stop(0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
