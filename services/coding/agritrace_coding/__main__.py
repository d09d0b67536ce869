"""`python -m agritrace_coding serve|migrate`."""

import sys

from agritrace_kernel.process import service_main

COMMANDS = {
    "serve": "agritrace_coding.entrypoints.grpc_server:main",
    "migrate": "agritrace_coding.bootstrap:migrate",
}

if __name__ == "__main__":
    sys.exit(service_main("coding", sys.argv[1:], COMMANDS))
