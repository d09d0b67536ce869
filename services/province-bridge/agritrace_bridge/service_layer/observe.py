"""What the sync engines tell the operators: records moved, retries, dead letters, last
success and lag, per direction. The serve process reports them as Prometheus metrics with
the province label; tests record them."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol


class Direction(StrEnum):
    # The one-time import of the province's subjects into the registry.
    IMPORT = "import"
    # Internal-trace records from the province to flow.
    INBOUND = "inbound"
    # National records pushed to the province.
    OUTBOUND = "outbound"


class SyncObserver(Protocol):
    def moved(self, direction: Direction, count: int) -> None:
        """`count` records were delivered."""
        ...

    def retried(self, direction: Direction, reason: str) -> None:
        """An attempt failed in a way a retry may fix; it will be retried."""
        ...

    def failed(self, direction: Direction, reason: str) -> None:
        """An attempt failed for good (a run stopped, a record was dead-lettered)."""
        ...

    def succeeded(self, direction: Direction) -> None:
        """A delivery in this direction just succeeded (its time is the last success)."""
        ...


class NoObserver:
    def moved(self, direction: Direction, count: int) -> None:
        pass

    def retried(self, direction: Direction, reason: str) -> None:
        pass

    def failed(self, direction: Direction, reason: str) -> None:
        pass

    def succeeded(self, direction: Direction) -> None:
        pass


NO_OBSERVER = NoObserver()
