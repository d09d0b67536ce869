"""Fixtures of the coding service's unit tests: the use cases wired to the in-memory fakes of
fakes.py. Tests run with --import-mode=importlib, so this directory is not on sys.path:
fakes.py is loaded here by its path, once, under a name of its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agritrace_coding.service_layer.services import CodingService
from agritrace_kernel.auth.principal import Principal
from agritrace_testing.fakes import load_beside, unit_test_fixtures

_FAKES_MODULE = "agritrace_coding_unit_fakes"

RESOLVER_BASE_URL = "https://trace.agri.example.cn/national/"

fakes = load_beside(__file__, "fakes.py", _FAKES_MODULE)
globals().update(unit_test_fixtures(fakes))  # fake, clock, database, uow_factory


@pytest.fixture
def reader_factory(database: Any) -> Callable[[], Any]:
    return lambda: fakes.FakeUnitOfWork(database, read_only=True)


@pytest.fixture
def subjects() -> Any:
    return fakes.FakeSubjectDirectory(fakes.standard_subjects())


@pytest.fixture
def code_reader(database: Any) -> Any:
    return fakes.FakeCodeReader(database)


@pytest.fixture
def labels() -> Any:
    return fakes.FakeLabels()


@pytest.fixture
def issuance_ids() -> Any:
    return fakes.SequentialIds()


@pytest.fixture
def generator() -> Any:
    return fakes.CodeGenerator()


@pytest.fixture
def service(
    uow_factory: Callable[[], Any],
    reader_factory: Callable[[], Any],
    subjects: Any,
    code_reader: Any,
    labels: Any,
    clock: Any,
    generator: Any,
    issuance_ids: Any,
) -> CodingService:
    return CodingService(
        uow_factory, subjects, code_reader, labels,
        resolver_base_url=RESOLVER_BASE_URL, clock=clock, generate=generator,
        issuance_ids=issuance_ids, reader_factory=reader_factory,
    )


@pytest.fixture
def principals() -> dict[str, Principal | None]:
    """Callers by name (fakes.OPERATOR_A, ...); fakes.PROCESS is None, the process itself."""
    return dict(fakes.PRINCIPALS)
