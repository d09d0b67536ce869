"""The OpenAPI document of the contract: the checked-in copy is the one the models make, every
reference resolves, and what the simulator answers validates against it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from agritrace_bridge.openapi import document, document_text
from agritrace_bridge.simulator import SimulatorServer

CHECKED_IN = Path(__file__).resolve().parents[2] / "docs" / "provincial-contract.openapi.json"
Admin = Callable[..., httpx.Response]


def test_the_checked_in_document_is_the_generated_one() -> None:
    assert CHECKED_IN.read_text(encoding="utf-8") == document_text(), (
        "the contract models changed: run `python -m agritrace_bridge openapi > "
        "services/province-bridge/docs/provincial-contract.openapi.json`")


def test_every_reference_resolves() -> None:
    spec = document()
    text = json.dumps(spec)
    schemas = spec["components"]["schemas"]
    refs = {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}
    assert refs and refs <= set(schemas)
    for path, operations in spec["paths"].items():
        assert path.startswith("/v1/")
        for method, operation in operations.items():
            if method != "parameters":
                assert operation["operationId"] and operation["responses"]


def validator(name: str) -> Draft202012Validator:
    spec = document()
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}",
                                 "components": spec["components"]})


def test_the_simulators_answers_validate_against_the_document(
        simulator: SimulatorServer, http: httpx.Client, admin: Admin,
        national_keys: Any) -> None:
    admin(simulator, "POST", "trace-records", {"count": 10})
    admin(simulator, "PUT", "jwks", national_keys.jwks)
    record = {"record_id": "evt-1", "type": "SUBJECT_REGISTERED",
              "occur_time": "2024-05-01T08:00:00Z", "payload": {}}
    answers = {
        "Health": http.get("/v1/health"),
        "SubjectPage": http.get("/v1/subjects", params={"page_size": 20}),
        "TraceRecordPage": http.get("/v1/trace-records"),
        "PushResult": http.put("/v1/national-records/evt-1", json=record),
        "NationalRecord": http.get("/v1/national-records/evt-1"),
        "TokenVerification": http.post("/v1/sso/verify",
                                       json={"token": national_keys.token()}),
        "Problem": http.get("/v1/subjects", params={"page_size": -1}),
    }
    for name, response in answers.items():
        errors = list(validator(name).iter_errors(response.json()))
        assert not errors, (name, [e.message for e in errors[:3]])
    assert validator("NationalRecord").is_valid(record)
    served = httpx.get(f"{simulator.url}/v1/openapi.json").json()
    assert served == document()


@pytest.mark.parametrize("bad", [
    {"record_id": "evt/1", "type": "X", "occur_time": "2024-05-01T08:00:00Z"},
    {"record_id": "evt-1", "type": "lower", "occur_time": "2024-05-01T08:00:00Z"},
    {"record_id": "evt-1", "type": "X"},
])
def test_the_document_refuses_what_the_models_refuse(bad: dict[str, Any]) -> None:
    assert not validator("NationalRecord").is_valid(bad)
