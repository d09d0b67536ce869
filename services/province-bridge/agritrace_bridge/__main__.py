"""`python -m agritrace_bridge serve|worker|migrate` (the bridge, like every service's process)
and `python -m agritrace_bridge simulate|faults|openapi ...` (see entrypoints/cli.py)."""

import sys

from agritrace_kernel.process import service_main

SERVICE_COMMANDS = {
    "serve": "agritrace_bridge.entrypoints.grpc_server:main",
    "migrate": "agritrace_bridge.bootstrap:migrate_command",
    "worker": "agritrace_bridge.entrypoints.worker:main",
}

if __name__ == "__main__":
    if sys.argv[1:2] and sys.argv[1] in SERVICE_COMMANDS:
        # Nothing else imported first: a worker's eventlet must patch a fresh process.
        sys.exit(service_main("province-bridge", sys.argv[1:], SERVICE_COMMANDS))
    from agritrace_bridge.entrypoints.cli import main

    sys.exit(main())
