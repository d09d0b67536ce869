"""Coding server process (microservices mode): callers are authenticated against the sso
service's keys and revocations; subjects are looked up in the registry."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from agritrace.coding.v1 import coding_pb2_grpc
from agritrace_coding.bootstrap import CodingApp, bootstrap, migrate
from agritrace_coding.entrypoints.grpc_servicer import SERVICE_NAME, CodingServicer
from agritrace_coding.entrypoints.policy import POLICIES
from agritrace_kernel.config import Settings
from agritrace_kernel.grpc_kit.server import ServiceRegistration
from agritrace_kernel.hosting import serve_service

log = logging.getLogger(__name__)
SWEEP_SECONDS = 60.0


def registration(
    app: CodingApp, extra_readiness: tuple[Callable[[], bool], ...] = ()
) -> ServiceRegistration:
    servicer = CodingServicer(app.service)
    return ServiceRegistration(
        name=SERVICE_NAME,
        add_to_server=lambda server: coding_pb2_grpc.add_CodingServiceServicer_to_server(  # type: ignore[no-untyped-call]
            servicer, server
        ),
        readiness=app.readiness_checks() + extra_readiness,
    )


class LineSweeper:
    """Closes production-line sessions abandoned by a server that died mid-stream (their
    unacknowledged codes are voided), once a minute."""

    def __init__(self, app: CodingApp, interval: float = SWEEP_SECONDS) -> None:
        self.app = app
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="line-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                voided = self.app.service.sweep_abandoned_lines()
                if voided:
                    log.info("voided %d codes of abandoned production-line sessions", voided)
            except Exception:
                log.exception("sweeping abandoned production-line sessions failed")


def main(settings: Settings) -> None:
    serve_service(settings, "coding", migrate=migrate, bootstrap=bootstrap,
                  registration=registration, policies=POLICIES,
                  background=lambda app: [LineSweeper(app)])
