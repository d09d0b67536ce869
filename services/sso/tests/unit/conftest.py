"""Fixtures of the sso unit tests: the use cases wired to the in-memory fakes of fakes.py.
Tests run with --import-mode=importlib, so this directory is not on sys.path: fakes.py is
loaded here by its path, once, under a name of its own."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from agritrace_sso.adapters.crypto import JoseTokenCodec
from agritrace_sso.adapters.throttle import MemoryLoginThrottle
from agritrace_sso.service_layer.services import SsoService

_FAKES_MODULE = "agritrace_sso_unit_fakes"


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



def pytest_configure(config: pytest.Config) -> None:
    # The contract's alg is "EdDSA", which RFC 9864 deprecates in name only; pytest resets the
    # filter the codec module installs, so it is repeated here.
    config.addinivalue_line("filterwarnings", "ignore:EdDSA is deprecated")


@pytest.fixture
def fake() -> ModuleType:
    return fakes


@pytest.fixture
def clock() -> Any:
    return fakes.FixedClock()


@pytest.fixture
def database() -> Any:
    return fakes.FakeDatabase()


@pytest.fixture
def uow_factory(database: Any) -> Callable[[], Any]:
    return lambda: fakes.FakeUnitOfWork(database)


@pytest.fixture
def hasher() -> Any:
    return fakes.CountingHasher()


@pytest.fixture
def sealer() -> Any:
    return fakes.FakeSealer()


@pytest.fixture
def codec(sealer: Any) -> JoseTokenCodec:
    return JoseTokenCodec(sealer)


@pytest.fixture
def throttle() -> MemoryLoginThrottle:
    return MemoryLoginThrottle()


@pytest.fixture
def service(
    uow_factory: Callable[[], Any], hasher: Any, codec: JoseTokenCodec,
    throttle: MemoryLoginThrottle, clock: Any,
) -> SsoService:
    return SsoService(uow_factory, hasher, codec, throttle, clock=clock,
                      new_id=fakes.SequentialIds())
