"""`python -m agritrace_registry serve|worker|migrate`."""

import sys

from agritrace_kernel.process import service_main

COMMANDS = {
    "serve": "agritrace_registry.entrypoints.grpc_server:main",
    "worker": "agritrace_registry.entrypoints.worker:main",
    "migrate": "agritrace_registry.bootstrap:migrate",
}

if __name__ == "__main__":
    sys.exit(service_main("registry", sys.argv[1:], COMMANDS))
