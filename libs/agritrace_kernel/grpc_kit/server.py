"""Server construction (`create_server`) separate from running it (`serve`), as in grpc's own
examples: tests build servers on port 0 and stop them; processes serve until SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from agritrace_kernel.grpc_kit.interceptors import (
    ChainedServer,
    ScopedInterceptor,
    default_interceptors,
)
from agritrace_kernel.process import settle_heap

log = logging.getLogger(__name__)

HealthCheck = Callable[[], bool]


@dataclass(frozen=True)
class ServiceRegistration:
    """One gRPC service to host: its full name, how to add its servicer, and the checks that
    must pass for it to report SERVING (e.g. its database is reachable)."""

    name: str
    add_to_server: Callable[[grpc.Server], None]
    readiness: Sequence[HealthCheck] = field(default_factory=tuple)


LIVENESS = "liveness"


class HealthMonitor:
    """Keeps the standard health service truthful: every service starts NOT_SERVING and turns
    SERVING only while its readiness checks pass; the overall status ("") is SERVING only when
    every service is. The name "liveness" reflects only the process (SERVING from start until
    shutdown), so a liveness probe does not restart pods during a database outage."""

    def __init__(self, registrations: Sequence[ServiceRegistration], interval: float = 2.0):
        self.servicer = health.HealthServicer(experimental_non_blocking=True)
        self._registrations = registrations
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for registration in registrations:
            self._set(registration.name, False)
        self._set("", False)
        self._set(LIVENESS, False)

    def _set(self, name: str, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        self.servicer.set(name, status)

    def check_now(self) -> bool:
        all_serving = True
        for registration in self._registrations:
            serving = True
            for check in registration.readiness:
                try:
                    serving = serving and check()
                except Exception:
                    log.exception("readiness check failed", extra={"service": registration.name})
                    serving = False
            self._set(registration.name, serving)
            all_serving = all_serving and serving
        self._set("", all_serving)
        return all_serving

    def start(self) -> None:
        self._set(LIVENESS, True)
        self.check_now()

        def loop() -> None:
            while not self._stop.wait(self._interval):
                self.check_now()

        self._thread = threading.Thread(target=loop, name="health-monitor", daemon=True)
        self._thread.start()

    def shutting_down(self) -> None:
        """Tells load balancers to go elsewhere before connections close."""
        self._stop.set()
        self.servicer.enter_graceful_shutdown()


@dataclass
class GrpcServer:
    server: grpc.Server
    port: int
    health: HealthMonitor
    on_stop: list[Callable[[], None]] = field(default_factory=list)

    def start(self) -> None:
        self.server.start()
        self.health.start()

    def stop(self, grace: float) -> None:
        self.health.shutting_down()
        self.server.stop(grace).wait(grace + 1)
        for callback in self.on_stop:
            callback()


MIN_QUEUED_CALLS = 128


def create_server(
    address: str,
    registrations: Sequence[ServiceRegistration],
    *,
    max_workers: int = 16,
    extra_interceptors: list[ScopedInterceptor] | None = None,
    max_message_bytes: int = 16 * 1024 * 1024,
) -> GrpcServer:
    """Builds (does not start) a server with the interceptor chain, the health service and
    reflection for every registered service. Port 0 picks a free port (see `.port`)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
        # Calls beyond the threads wait in grpc's queue; beyond this many they are refused
        # (RESOURCE_EXHAUSTED) rather than piling up. Not fewer than 128, so a server with
        # few threads (the query server) still queues a burst of scans.
        maximum_concurrent_rpcs=max(MIN_QUEUED_CALLS, max_workers * 8),
    )
    chained = ChainedServer(server, default_interceptors(extra_interceptors))
    for registration in registrations:
        registration.add_to_server(chained)
    monitor = HealthMonitor(registrations)
    health_pb2_grpc.add_HealthServicer_to_server(monitor.servicer, chained)
    reflection.enable_server_reflection(
        [r.name for r in registrations]
        + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        chained,
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return GrpcServer(server=server, port=port, health=monitor)


def serve(grpc_server: GrpcServer, *, grace_seconds: float = 10.0,
          on_ready: Callable[[], None] | None = None) -> None:
    """Starts the server and blocks until SIGTERM or SIGINT, then stops gracefully: health
    turns NOT_SERVING, new calls are refused, in-flight calls get `grace_seconds` to finish."""
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("stopping on signal %s", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    settle_heap()
    grpc_server.start()
    if on_ready is not None:
        on_ready()
    stop_requested.wait()
    grpc_server.stop(grace_seconds)
    log.info("stopped")
