"""Fixtures of the registry's unit tests: the use cases wired to the in-memory fakes of
fakes.py. Tests run with --import-mode=importlib, so this directory is not on sys.path:
fakes.py is loaded here by its path, once, under a name of its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agritrace_registry.domain.divisions import DivisionCatalog
from agritrace_registry.service_layer.importer import SubjectImporter
from agritrace_registry.service_layer.services import RegistryService
from agritrace_testing.fakes import load_beside, unit_test_fixtures

_FAKES_MODULE = "agritrace_registry_unit_fakes"


fakes = load_beside(__file__, "fakes.py", _FAKES_MODULE)
globals().update(unit_test_fixtures(fakes))  # fake, clock, database, uow_factory


@pytest.fixture(scope="session")
def catalog() -> DivisionCatalog:
    return DivisionCatalog.bundled()


@pytest.fixture
def protector() -> Any:
    return fakes.FakeProtector()


@pytest.fixture
def subject_ids() -> Any:
    return fakes.SeededSubjectIds()


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
