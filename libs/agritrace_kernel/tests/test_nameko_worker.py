"""The microservices-mode worker against the RabbitMQ at 127.0.0.1:5672, on a vhost of the
test's own, as a process of its own (eventlet must not meet grpcio in the test's process): an
event whose handler fails is delivered again until the handler succeeds - never dropped."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from agritrace_kernel.events.bus import NamekoPublisher
from agritrace_kernel.events.model import Event
from agritrace_testing.polling import eventually

# A worker whose handler fails on its first two deliveries; each attempt is a line in a file.
WORKER = textwrap.dedent("""
    import logging, os, sys
    os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")
    import eventlet
    eventlet.monkey_patch()
    from agritrace_kernel.events import nameko_worker
    from agritrace_kernel.events.bus import Subscription

    logging.basicConfig(level=logging.INFO)
    nameko_worker.REDELIVERY_DELAY_SECONDS = 0.2
    attempts = sys.argv[2]

    def handle(event):
        with open(attempts, "a") as out:
            out.write(event.event_id + "\\n")
        with open(attempts) as seen:
            if len(seen.read().split()) < 3:
                raise RuntimeError("the database is restarting")

    service = nameko_worker.build_worker_service(
        "probe", [Subscription("probe-consumer", "probe", "probe_happened", handle)])
    nameko_worker.run_worker(service, sys.argv[1])
""")


def test_an_event_whose_handler_fails_comes_back_until_it_is_handled(
        vhost_uri: str, tmp_path: Path) -> None:
    script, attempts, log = tmp_path / "worker.py", tmp_path / "attempts", tmp_path / "log"
    script.write_text(WORKER)
    worker = subprocess.Popen([sys.executable, str(script), vhost_uri, str(attempts)],
                              stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    try:
        eventually(lambda: "worker started" in log.read_text(errors="replace"), timeout=30,
                   what="the worker started")
        event = Event("probe", "probe_happened", {"n": 1})
        NamekoPublisher(vhost_uri).publish(event)

        eventually(lambda: attempts.exists() and len(attempts.read_text().split()) >= 3,
                   timeout=30, what="the third delivery")
        assert attempts.read_text().split() == [event.event_id] * 3
        assert "event handler failed; the event goes back to its queue" in log.read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
