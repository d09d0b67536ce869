"""The in-memory unit of work every service's fakes build on.

A fake database holds committed tables (`committed`), the events published on commit
(`published`) and a commit counter. A unit of work works on a deep copy of the committed
tables: `commit` makes the copy the committed state and publishes the events queued since
the last commit; leaving without commit discards it - so a test can prove a failing use case
left nothing half-written."""

from __future__ import annotations

import copy
import importlib.util
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, Protocol, Self, TypeVar

import pytest

from agritrace_kernel.events.model import Event

TablesT = TypeVar("TablesT")


class FakeDatabaseLike(Protocol[TablesT]):
    committed: TablesT
    published: list[Event]
    commits: int


class FakeUnitOfWorkBase(Generic[TablesT]):
    def __init__(self, database: Any) -> None:
        self.database: FakeDatabaseLike[TablesT] = database
        self._pending: list[Event] = []

    def _open(self, working: TablesT) -> None:
        """Hook: build the repositories on the working copy."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._begin()
        return self

    def __exit__(self, *exc: object) -> None:
        self.rollback()

    def publish(self, event: Event) -> None:
        self._pending.append(event)

    def commit(self) -> None:
        self.database.committed = copy.deepcopy(self._working)
        self.database.published.extend(self._pending)
        self.database.commits += 1
        self._begin()

    def rollback(self) -> None:
        self._begin()

    def _begin(self) -> None:
        self._pending = []
        self._working: TablesT = copy.deepcopy(self.database.committed)
        self._open(self._working)


class FixedClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, now: datetime = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def load_beside(anchor: str, filename: str, module_name: str) -> ModuleType:
    """Imports `filename` next to `anchor` (a conftest's __file__) under a unique name: tests
    run with --import-mode=importlib, so test folders are not packages on sys.path."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, Path(anchor).with_name(filename))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def unit_test_fixtures(fakes: ModuleType) -> dict[str, Any]:
    """The fixtures every service's unit tests share, over its fakes module (which defines
    FakeDatabase and FakeUnitOfWork): `fake` (the module), `clock`, `database`, `uow_factory`.
    A conftest adds them with `globals().update(unit_test_fixtures(fakes))`."""

    @pytest.fixture
    def fake() -> ModuleType:
        """The fakes module itself, for tests that build extra fakes or name subjects."""
        return fakes

    @pytest.fixture
    def clock() -> FixedClock:
        return FixedClock()

    @pytest.fixture
    def database() -> Any:
        return fakes.FakeDatabase()

    @pytest.fixture
    def uow_factory(database: Any) -> Callable[[], Any]:
        return lambda: fakes.FakeUnitOfWork(database)

    return {"fake": fake, "clock": clock, "database": database, "uow_factory": uow_factory}
