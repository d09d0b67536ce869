"""Fixtures of the flow service's unit tests: the use cases wired to the in-memory fakes of
fakes.py. Tests run with --import-mode=importlib, so this directory is not on sys.path:
fakes.py is loaded here by its path, once, under a name of its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agritrace_flow.adapters.epcis import EpcisCodecAdapter
from agritrace_flow.domain.products import ProductCatalog
from agritrace_flow.service_layer.interchange import Interchange
from agritrace_flow.service_layer.services import FlowService
from agritrace_kernel.auth.principal import Principal
from agritrace_testing.fakes import load_beside, unit_test_fixtures

_FAKES_MODULE = "agritrace_flow_unit_fakes"

RESOLVER_BASE_URL = "https://trace.agri.example.cn/national"

fakes = load_beside(__file__, "fakes.py", _FAKES_MODULE)
globals().update(unit_test_fixtures(fakes))  # fake, clock, database, uow_factory


@pytest.fixture
def reader_factory(database: Any) -> Callable[[], Any]:
    return lambda: fakes.FakeUnitOfWork(database, read_only=True)


@pytest.fixture
def subjects() -> Any:
    return fakes.FakeSubjectDirectory(fakes.standard_subjects())


@pytest.fixture
def coding(subjects: Any) -> Any:
    return fakes.FakeCodeService(subjects)


@pytest.fixture
def ids() -> Any:
    return fakes.SequentialIds()


@pytest.fixture
def products() -> ProductCatalog:
    return ProductCatalog.bundled()


@pytest.fixture
def service(
    uow_factory: Callable[[], Any],
    reader_factory: Callable[[], Any],
    subjects: Any,
    coding: Any,
    products: ProductCatalog,
    clock: Any,
    ids: Any,
) -> FlowService:
    return FlowService(uow_factory, subjects, coding, products, clock=clock, ids=ids,
                       reader_factory=reader_factory)


@pytest.fixture
def codec() -> EpcisCodecAdapter:
    return EpcisCodecAdapter(RESOLVER_BASE_URL)


@pytest.fixture
def interchange(service: FlowService, codec: EpcisCodecAdapter) -> Interchange:
    return Interchange(service, codec)


@pytest.fixture
def principals() -> dict[str, Principal | None]:
    """Callers by name (fakes.OPERATOR_COOP, ...); fakes.PROCESS is None, the process itself."""
    return dict(fakes.PRINCIPALS)
