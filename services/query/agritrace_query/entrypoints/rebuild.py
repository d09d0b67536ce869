"""`python -m agritrace_query rebuild [--source registry|coding|flow] [--restart]`: rebuilds
the read model from the source services' event logs, printing progress.

Microservices mode reads each source's EventLogService (AGRITRACE_REGISTRY_ADDRESS,
AGRITRACE_CODING_ADDRESS, AGRITRACE_FLOW_ADDRESS; all default to AGRITRACE_GRPC_ADDRESS, the
all-in-one server) as this process's service account. The embedded mode (SQLite) reads the
logs from the sources' own files under the data directory."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

import grpc
from sqlalchemy.engine import Engine

from agritrace_kernel import db
from agritrace_kernel.auth.wiring import service_channel
from agritrace_kernel.config import Settings
from agritrace_kernel.events import log_service
from agritrace_query.adapters.cache import origin_cache
from agritrace_query.adapters.event_log_client import GrpcEventLog, LocalEventLog, RoutedEventLog
from agritrace_query.adapters.unit_of_work import ProjectionUnitOfWork
from agritrace_query.service_layer.projection_ports import EventLog
from agritrace_query.service_layer.projections import SOURCES
from agritrace_query.service_layer.rebuild import Progress, Rebuild

SERVICE = "query"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m agritrace_query rebuild",
        description="Rebuild the query service's read model from the source services' event "
                    "logs (an interrupted rebuild resumes; the query log is kept).")
    parser.add_argument("--source", choices=SOURCES, action="append",
                        help="replay only this source's log (repeatable; default: all)")
    parser.add_argument("--restart", action="store_true",
                        help="start over even if a rebuild is under way")
    return parser.parse_args(list(argv))


def main(settings: Settings, argv: Sequence[str] = ()) -> int:
    """The `rebuild` command: argv are the arguments after `rebuild`."""
    args = parse_args(argv)
    return rebuild(settings, args.source or SOURCES, restart=args.restart)


def event_logs(settings: Settings) -> tuple[EventLog, list[grpc.Channel], list[Engine]]:
    """Where each source's log is read, the channels to close and the engines to dispose."""
    if settings.database_url is None or settings.database_url.startswith("sqlite"):
        engines = {source: db.create_engine(settings.database_for(source), pool_size=1)
                   for source in SOURCES}
        local = log_service.EventLog({source: db.reader_session_factory(engine)
                                      for source, engine in engines.items()})
        return LocalEventLog(local), [], list(engines.values())
    addresses = {
        "registry": (settings.registry_address, "AGRITRACE_REGISTRY_ADDRESS"),
        "coding": (settings.coding_address, "AGRITRACE_CODING_ADDRESS"),
        "flow": (settings.flow_address, "AGRITRACE_FLOW_ADDRESS"),
    }
    channels: list[grpc.Channel] = []
    by_address: dict[str, GrpcEventLog] = {}
    logs: dict[str, EventLog] = {}
    for source, (address, variable) in addresses.items():
        address = address or settings.grpc_address
        if address not in by_address:
            channel, opened = service_channel(settings, address, variable)
            channels.extend(opened)
            by_address[address] = GrpcEventLog(channel)
        logs[source] = by_address[address]
    return RoutedEventLog(logs), channels, []


def progress_printer(out: TextIO) -> Callable[[Progress], None]:
    def show(progress: Progress) -> None:
        state = "done" if progress.done else "replaying"
        print(f"{progress.source}: {state}, event {progress.position:,} of "
              f"{progress.newest_position:,} ({progress.applied:,} applied, "
              f"{progress.skipped:,} already handled or not needed)", file=out, flush=True)
    return show


def rebuild(settings: Settings, sources: Sequence[str] = SOURCES, *, restart: bool = False,
            out: TextIO = sys.stdout) -> int:
    engine = db.create_engine(settings.database_for(SERVICE), pool_size=2)
    sessions = db.session_factory(engine)
    cache = origin_cache(settings.redis_url)
    try:
        log, channels, engines = event_logs(settings)
    except ValueError as error:  # a setting missing for the microservices mode
        print(error, file=sys.stderr)
        engine.dispose()
        return 2
    try:
        result = Rebuild(lambda: ProjectionUnitOfWork(sessions), log, cache).run(
            sources, restart=restart, progress=progress_printer(out))
    except grpc.RpcError as error:
        print(f"reading an event log failed ({error.code().name}): {error.details()}; "
              "run the rebuild again to resume", file=sys.stderr)
        return 1
    finally:
        for channel in channels:
            channel.close()
        for other in engines:
            other.dispose()
        engine.dispose()
    how = "started afresh" if result.restarted else "resumed"
    applied = sum(progress.applied for progress in result.progress.values())
    print(f"rebuild {how}: {applied:,} events applied from {', '.join(result.progress)}",
          file=out)
    return 0
