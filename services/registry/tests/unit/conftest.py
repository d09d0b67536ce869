"""Fixtures of the registry's unit tests: the use cases wired to the in-memory fakes of
fakes.py. Tests run with --import-mode=importlib, so this directory is not on sys.path:
fakes.py is loaded here by its path, once, under a name of its own."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from agritrace_registry.domain.divisions import DivisionCatalog
from agritrace_registry.service_layer.importer import SubjectImporter
from agritrace_registry.service_layer.services import RegistryService

_FAKES_MODULE = "agritrace_registry_unit_fakes"


def _load_fakes() -> ModuleType:
    if _FAKES_MODULE in sys.modules:
        return sys.modules[_FAKES_MODULE]
    path = Path(__file__).with_name("fakes.py")
    spec = importlib.util.spec_from_file_location(_FAKES_MODULE, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_FAKES_MODULE] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


fakes = _load_fakes()


@pytest.fixture
def fake() -> ModuleType:
    """The fakes module itself, for tests that build extra fakes."""
    return fakes


@pytest.fixture(scope="session")
def catalog() -> DivisionCatalog:
    return DivisionCatalog.bundled()


@pytest.fixture
def protector() -> Any:
    return fakes.FakeProtector()


@pytest.fixture
def clock() -> Any:
    return fakes.FixedClock()


@pytest.fixture
def subject_ids() -> Any:
    return fakes.SeededSubjectIds()


@pytest.fixture
def database() -> Any:
    return fakes.FakeDatabase()


@pytest.fixture
def uow_factory(database: Any) -> Callable[[], Any]:
    return lambda: fakes.FakeUnitOfWork(database)


@pytest.fixture
def service(
    uow_factory: Callable[[], Any],
    catalog: DivisionCatalog,
    protector: Any,
    clock: Any,
    subject_ids: Any,
) -> RegistryService:
    return RegistryService(
        uow_factory, catalog, protector, clock=clock, new_subject_id=subject_ids
    )


@pytest.fixture
def leases() -> Any:
    return fakes.FakeLeases()


@pytest.fixture
def importer(service: RegistryService, leases: Any) -> SubjectImporter:
    return SubjectImporter(service, leases)
