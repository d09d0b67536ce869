"""Fixtures of the sso unit tests: the use cases wired to the in-memory fakes of fakes.py.
Tests run with --import-mode=importlib, so this directory is not on sys.path: fakes.py is
loaded here by its path, once, under a name of its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agritrace_sso.adapters.crypto import JoseTokenCodec
from agritrace_sso.adapters.throttle import MemoryLoginThrottle
from agritrace_sso.service_layer.services import SsoService
from agritrace_testing.fakes import load_beside, unit_test_fixtures

_FAKES_MODULE = "agritrace_sso_unit_fakes"


fakes = load_beside(__file__, "fakes.py", _FAKES_MODULE)
globals().update(unit_test_fixtures(fakes))  # fake, clock, database, uow_factory


def pytest_configure(config: pytest.Config) -> None:
    # The contract's alg is "EdDSA", which RFC 9864 deprecates in name only; pytest resets the
    # filter the codec module installs, so it is repeated here.
    config.addinivalue_line("filterwarnings", "ignore:EdDSA is deprecated")


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
