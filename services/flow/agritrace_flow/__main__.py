"""`python -m agritrace_flow serve|migrate`."""

import sys

from agritrace_kernel.process import service_main

COMMANDS = {
    "serve": "agritrace_flow.entrypoints.grpc_server:main",
    "migrate": "agritrace_flow.bootstrap:migrate",
}

if __name__ == "__main__":
    sys.exit(service_main("flow", sys.argv[1:], COMMANDS))
