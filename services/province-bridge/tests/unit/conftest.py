"""Fixtures of the bridge's unit tests: simulated provinces served on 127.0.0.1 (port 0) for
the length of one test, and the REST adapter pointed at them. Every server started here is
stopped when its test ends, hanging requests included."""

from __future__ import annotations

import ssl
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OKPKey

from agritrace_bridge.adapters.rest import RestProvincialPlatform
from agritrace_bridge.simulator import (
    Faults,
    SimulatedPlatform,
    SimulatorServer,
    SubjectGenerator,
)
from agritrace_testing.fakes import load_beside, unit_test_fixtures

# The in-memory fakes of the bridge's ports (fakes.py; this folder is no package).
fakes = load_beside(__file__, "fakes.py", "agritrace_bridge_unit_fakes")
globals().update(unit_test_fixtures(fakes))  # fake, clock, database, uow_factory

API_KEY = "test-bridge-key-37"
# httpx builds a TLS context for every client, even one that only speaks plain HTTP; loading
# the CA bundle each time costs a tenth of a second, so the tests' clients share one.
TLS = ssl.create_default_context()


@pytest.fixture
def start_simulator() -> Iterator[Callable[..., SimulatorServer]]:
    """Starts a simulated province: start_simulator(province="37", subjects=50, ...)."""
    servers: list[SimulatorServer] = []

    def start(province: str = "37", subjects: int = 50, *, seed: int = 1,
              shared_with: str = "", shared: int = 0, faults: Faults | None = None,
              record_rate: int = 0, **platform: Any) -> SimulatorServer:
        generator = SubjectGenerator(province=province, seed=seed, count=subjects,
                                     shared_with=shared_with, shared=shared)
        server = SimulatorServer(SimulatedPlatform(generator, faults=faults, **platform),
                                 API_KEY, record_rate=record_rate)
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def simulator(start_simulator: Callable[..., SimulatorServer]) -> SimulatorServer:
    return start_simulator()


@pytest.fixture
def http(simulator: SimulatorServer) -> Iterator[httpx.Client]:
    """A plain HTTP client of the simulator, with the bridge key."""
    with httpx.Client(base_url=simulator.url, timeout=5, verify=TLS,
                      headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        yield client


@pytest.fixture
def rest_adapter() -> Iterator[Callable[..., RestProvincialPlatform]]:
    """rest_adapter(url, api_key=API_KEY, province="37", **options): REST adapters closed
    when the test ends."""
    adapters: list[RestProvincialPlatform] = []

    def make(url: str, api_key: str = API_KEY, province: str = "37", **options: Any
             ) -> RestProvincialPlatform:
        options.setdefault("timeout", httpx.Timeout(5.0, connect=2.0))
        adapters.append(RestProvincialPlatform(url, api_key, province, verify=TLS, **options))
        return adapters[-1]

    yield make
    for adapter in adapters:
        adapter.close()


@pytest.fixture
def platform(simulator: SimulatorServer,
             rest_adapter: Callable[..., RestProvincialPlatform]) -> RestProvincialPlatform:
    """The REST adapter of the simulator."""
    return rest_adapter(simulator.url)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    """An HTTP client without a base URL or key, for calls the other fixtures do not make."""
    with httpx.Client(timeout=5, verify=TLS) as plain:
        yield plain


@pytest.fixture
def admin(client: httpx.Client) -> Callable[..., httpx.Response]:
    """admin(server, method, path, json): a call to the simulator's admin endpoint, the way
    an operator changes faults and data while it runs."""

    def call(server: SimulatorServer, method: str, path: str, body: Any = None
             ) -> httpx.Response:
        response = client.request(method, f"{server.url}/admin/{path}", json=body,
                                  headers={"Authorization": f"Bearer {API_KEY}"})
        response.raise_for_status()
        return response

    return call


@pytest.fixture
def set_faults(admin: Callable[..., httpx.Response]) -> Callable[..., None]:
    """set_faults(server, fail_every=3, ...) through the admin endpoint."""

    def change(server: SimulatorServer, **faults: Any) -> None:
        admin(server, "PATCH", "faults", faults)

    return change


class NationalKeys:
    """An Ed25519 key standing in for sso's signing key, and tokens shaped like the ones
    ExchangeToken signs with it."""

    def __init__(self) -> None:
        self.key = OKPKey.generate_key("Ed25519", parameters={"kid": "k1", "use": "sig",
                                                              "alg": "EdDSA"})

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.as_dict(private=False)]}

    def token(self, audience: str = "platform:province-37", *, lifetime: int = 900) -> str:
        now = int(time.time())
        claims = {"iss": "agritrace-sso", "sub": "acct_1", "aud": audience, "iat": now,
                  "exp": now + lifetime, "jti": "j1", "sid": "sess_1", "kind": "REGULATOR",
                  "username": "reviewer37", "subject_id": "", "jurisdiction": "37",
                  "roles": ["REVIEWER"]}
        with warnings.catch_warnings():  # joserfc warns that RFC 9864 renames "EdDSA"
            warnings.simplefilter("ignore")
            return jwt.encode({"alg": "EdDSA", "kid": "k1"}, claims, self.key,
                              algorithms=["EdDSA"])

    def exchanged_token(self) -> str:
        """The conformance suite's TokenSource."""
        return self.token()


@pytest.fixture
def national_keys() -> NationalKeys:
    return NationalKeys()
