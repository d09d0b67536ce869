"""`python -m agritrace_registry serve|worker|migrate` - one command per process kind.

The worker imports eventlet and must not import grpcio, so each command imports only its own
entry point, after eventlet's monkey-patching where that applies."""

from __future__ import annotations

import sys

USAGE = "usage: python -m agritrace_registry {serve|worker|migrate}"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in {"serve", "worker", "migrate"}:
        print(USAGE, file=sys.stderr)
        return 2
    command = argv[0]
    if command == "worker":
        import eventlet

        eventlet.monkey_patch()
    from agritrace_kernel.config import ConfigError, load_settings
    from agritrace_kernel.logs import configure_logging
    from agritrace_kernel.telemetry import configure_tracing

    try:
        settings = load_settings()
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    configure_logging(settings.effective_log_format, settings.log_level)
    configure_tracing("registry", grpc_free=command == "worker")
    if command == "serve":
        from agritrace_registry.entrypoints import grpc_server

        grpc_server.main(settings)
    elif command == "worker":
        from agritrace_registry.entrypoints import worker

        worker.main(settings)
    else:
        from agritrace_registry.bootstrap import migrate

        migrate(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
