"""A RabbitMQ virtual host of one's own, for a test platform or a benchmark run.

Nameko workers share one durable queue per (event, worker service) on a vhost, so a worker
on the shared "/" would take other runs' events and they its (and events published while no
worker ran stay queued for the next run). `rabbitmqctl add_vhost` gives each run a clean one;
without rabbitmqctl the run falls back to "/" and says so."""

from __future__ import annotations

import atexit
import os
import subprocess
import uuid
from collections.abc import Callable


class RabbitVhost:
    def __init__(self, base_uri: str, prefix: str = "agritrace",
                 warn: Callable[[str], None] = print) -> None:
        self.name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.base_uri = base_uri.rstrip("/") + "/"
        self.uri = self.base_uri
        self._warn = warn
        self._created = False

    def _ctl(self, *args: str) -> bool:
        try:
            result = subprocess.run(["rabbitmqctl", *args], capture_output=True, timeout=60,
                                    check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            self._warn(f"warning: rabbitmqctl {args[0]}: {error}")
            return False
        if result.returncode != 0:
            self._warn(f"warning: rabbitmqctl {args[0]}: "
                       f"{result.stderr.decode(errors='replace')[-300:]}")
        return result.returncode == 0

    def create(self) -> str:
        """The AMQP URI to use: the new vhost's, or the base URI's if it cannot be made."""
        atexit.register(self.drop)
        if self._ctl("add_vhost", self.name) and self._ctl(
                "set_permissions", "-p", self.name, "guest", ".*", ".*", ".*"):
            self._created = True
            self.uri = self.base_uri + self.name
        else:
            self._warn("warning: no vhost of its own; workers share \"/\" with any other run "
                       "on this broker")
        return self.uri

    def drop(self) -> None:
        if self._created:
            self._created = False
            self._ctl("delete_vhost", self.name)
