"""`python -m agritrace_bridge simulate|faults ...` (see entrypoints/cli.py)."""

import sys

from agritrace_bridge.entrypoints.cli import main

if __name__ == "__main__":
    sys.exit(main())
