"""The serve process's background loops (the import, the pushers, the gauges): each a thread
that calls one step again and again until the server stops."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from agritrace_bridge.domain.retry import Backoff

log = logging.getLogger(__name__)
_AFTER_FAILURE = Backoff(base_seconds=1.0, cap_seconds=30.0)


class Loop:
    """Runs `step(stop)` until stopped; a step answers how long to wait before the next
    (woken early by `wake`). A step that raises (the bridge's database gone, a defect) is
    logged and tried again after a backoff, so a loop never dies while the server serves."""

    def __init__(self, name: str, step: Callable[[threading.Event], float], *,
                 wake: threading.Event | None = None,
                 backoff: Backoff = _AFTER_FAILURE) -> None:
        self.name = name
        self._step = step
        self._wake = wake or threading.Event()
        self._backoff = backoff
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                wait = self._step(self._stop)
                failures = 0
            except Exception:
                failures += 1
                wait = self._backoff.delay(failures)
                log.exception("%s failed (attempt %d); trying again in %.1fs", self.name,
                              failures, wait)
            if wait > 0 and not self._stop.is_set():
                self._wake.wait(wait)
                self._wake.clear()
