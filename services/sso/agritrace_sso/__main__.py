"""`python -m agritrace_sso serve|worker|migrate|bootstrap-admin`."""

import sys

from agritrace_kernel.process import service_main

COMMANDS = {
    "serve": "agritrace_sso.entrypoints.grpc_server:main",
    "worker": "agritrace_sso.entrypoints.worker:main",
    "migrate": "agritrace_sso.bootstrap:migrate",
    # Creates the first administrator `admin` from AGRITRACE_ADMIN_PASSWORD if missing.
    "bootstrap-admin": "agritrace_sso.bootstrap:bootstrap_admin",
}

if __name__ == "__main__":
    sys.exit(service_main("sso", sys.argv[1:], COMMANDS))
