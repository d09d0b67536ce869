"""An echo gRPC server for measuring per-call overhead, run as its own process:

    python -m benchmarks.echo_server MODE

MODE is one of
  bare         grpcio server, a generic handler echoing bytes, no interceptors;
  no-tracing   the kernel's chain without TracingInterceptor (metrics, logging, errors);
  noop-tracing create_server's full chain, tracing NOT configured (no-op tracer provider);
  tracing      create_server's full chain after configure_tracing() with no exporter.

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
MODES = ("bare", "no-tracing", "noop-tracing", "tracing")
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
    if mode in ("noop-tracing", "tracing"):
        from agritrace_kernel.grpc_kit.server import ServiceRegistration, create_server

        if mode == "tracing":
            from agritrace_kernel.telemetry import configure_tracing

            os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
            configure_tracing("bench-echo")
        registration = ServiceRegistration(
            name=SERVICE,
            add_to_server=lambda server: server.add_generic_rpc_handlers((_handler(),)),
        )
        grpc_server = create_server("127.0.0.1:0", [registration], max_workers=MAX_WORKERS)
        grpc_server.start()
        return grpc_server, grpc_server.port
    raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in MODES:
        print(f"usage: python -m benchmarks.echo_server {{{'|'.join(MODES)}}}", file=sys.stderr)
        return 2
    server, port = start(argv[0])
    print(f"PORT {port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sys.stdin.read()  # until the parent closes our stdin (or goes away)
    server.stop(0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
