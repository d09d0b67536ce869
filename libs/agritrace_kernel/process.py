"""`python -m agritrace_<service> COMMAND`: one command per process kind (serve, worker,
migrate, ...). Each command names the function that runs it as "module:function"; only that
module is imported, and a worker's after eventlet has patched the process - eventlet and
grpcio must never share a process."""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Mapping, Sequence

# Middle-generation collections before a full one may start (CPython's default: 10). A full
# collection walks every long-lived object not frozen - a query server's caches, ~30 ms -
# and CPython skips one only while fewer objects were promoted since the last than a quarter
# of those it kept: with the start-up heap frozen that quarter is small, and the objects a
# large answer holds while it is built (a 690-node trace) pass it, so every ~15th trace
# carried a full collection. Measured in the query benchmark's server: 13 full collections
# of 21-38 ms during its ~250 traces (their p99 ~100 ms, p50 ~50 ms); at 100, one.
FULL_COLLECTION_AFTER = 100


def settle_heap() -> None:
    """Called once start-up is done, before serving. What start-up built (modules, ORM
    metadata, protobuf descriptors, the division catalogue) lives as long as the process: it
    is collected once and then frozen out of the collector's view, so a full collection -
    which a large answer's garbage sets off now and then - no longer walks it. Measured: a
    full collection of a query server's start-up heap ~50 ms, after freezing ~3 ms; without
    it the unlucky call carries those 50 ms. Full collections are then made rarer (see
    FULL_COLLECTION_AFTER)."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_AFTER)


def service_main(service: str, argv: Sequence[str], commands: Mapping[str, str]) -> int:
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: python -m agritrace_{service.replace('-', '_')} "
              f"{{{'|'.join(commands)}}}", file=sys.stderr)
        return 2
    command = argv[0]
    worker = command == "worker"
    if worker:
        import os

        import eventlet

        # psycopg 3 picks its C wait function unless a gevent patch is detected, and that
        # blocks eventlet's hub on every query; wait_select calls select.select, which the
        # patch makes green. Read when psycopg is first imported, so set before any import.
        os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")
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
    configure_tracing(service, grpc_free=worker)
    module_name, _, function_name = commands[command].partition(":")
    run = getattr(importlib.import_module(module_name), function_name)
    result = run(settings)
    return int(result) if isinstance(result, int) else 0
