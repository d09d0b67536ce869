"""`python -m agritrace_query serve|worker|migrate|rebuild [--source S] [--restart]`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from agritrace_kernel.process import service_main

COMMANDS = {
    "serve": "agritrace_query.entrypoints.grpc_server:main",
    # The read model's event handlers (nameko, RabbitMQ).
    "worker": "agritrace_query.entrypoints.worker:main",
    "migrate": "agritrace_query.bootstrap:migrate",
}


def rebuild(argv: Sequence[str]) -> int:
    """Clears the read model and replays the source services' event logs into it. The one
    command with options, so it is not among service_main's COMMANDS."""
    from agritrace_kernel.config import ConfigError, load_settings
    from agritrace_kernel.logs import configure_logging
    from agritrace_query.entrypoints import rebuild as command

    try:
        settings = load_settings()
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    configure_logging(settings.effective_log_format, settings.log_level)
    return command.main(settings, argv)


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["rebuild"]:
        return rebuild(argv[1:])
    return service_main("query", argv, COMMANDS)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
