"""The contract as an OpenAPI 3.1 document, built from the contract's models, for provinces
that implement it in their own stack (`python -m agritrace_bridge openapi`; the simulator
serves it at /v1/openapi.json). docs/provincial-contract.openapi.json is this document,
checked in; a test keeps the two equal."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from agritrace_bridge.contract import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_RECORD_LIMIT,
    MAX_PAGE_SIZE,
    MAX_RECORD_LIMIT,
    PROBLEM_CONTENT_TYPE,
    Health,
    NationalRecord,
    Problem,
    PushResult,
    SubjectPage,
    TokenVerification,
    TokenVerifyRequest,
    TraceRecordPage,
)

_MODELS: tuple[type[BaseModel], ...] = (Health, SubjectPage, TraceRecordPage, NationalRecord,
                                         PushResult, TokenVerifyRequest, TokenVerification,
                                         Problem)
_REF = "#/components/schemas/{model}"


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": _REF.format(
                model=model.__name__)}}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": _REF.format(
                model="Problem")}}}}


def _size(name: str, default: int, maximum: int) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False,
            "description": f"0 or absent: {default}; above {maximum}: {maximum}",
            "schema": {"type": "integer", "minimum": 0}}


def _position(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string"}}


_ERRORS = {"400": _problem("A bad parameter or body (invalid_params names each)"),
           "401": _problem("No or a wrong bridge key"),
           "default": _problem("Any other failure; 408, 425, 429 and 5xx are retried")}
_RECORD_ID = {"name": "record_id", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"}}


def document() -> dict[str, Any]:
    _, definitions = models_json_schema([(model, "validation") for model in _MODELS],
                                        ref_template=_REF)
    paths: dict[str, Any] = {
        "/v1/health": {"get": {
            "operationId": "health", "summary": "Whether the platform is up (no key needed)",
            "security": [],
            "responses": {"200": _json(Health, "Up"), "default": _ERRORS["default"]}}},
        "/v1/subjects": {"get": {
            "operationId": "listSubjects",
            "summary": "The province's subjects, page by page, by source_record_id",
            "parameters": [_size("page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
                           _position("page_token", "next_page_token of the previous page")],
            "responses": {"200": _json(SubjectPage, "A page"), **_ERRORS}}},
        "/v1/trace-records": {"get": {
            "operationId": "listTraceRecords",
            "summary": "Production records changed after a cursor, oldest change first",
            "parameters": [_position("cursor", "next_cursor of the previous answer"),
                           _size("limit", DEFAULT_RECORD_LIMIT, MAX_RECORD_LIMIT)],
            "responses": {"200": _json(TraceRecordPage, "Changes"), **_ERRORS}}},
        "/v1/national-records/{record_id}": {
            "parameters": [_RECORD_ID],
            "put": {
                "operationId": "pushNationalRecord",
                "summary": "Stores a national record; the same record again changes nothing",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": _REF.format(model="NationalRecord")}}}},
                "responses": {"201": _json(PushResult, "Stored"),
                              "200": _json(PushResult, "Already held (replayed)"),
                              "409": _problem("Held with other content (RECORD_CONFLICT)"),
                              **_ERRORS}},
            "get": {
                "operationId": "getNationalRecord", "summary": "A pushed record",
                "responses": {"200": _json(NationalRecord, "The record"),
                              "404": _problem("Never pushed"), **_ERRORS}}},
        "/v1/sso/verify": {"post": {
            "operationId": "verifyToken",
            "summary": "Whether the platform accepts a token sso exchanged for it",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": _REF.format(model="TokenVerifyRequest")}}}},
            "responses": {"200": _json(TokenVerification, "The verdict"),
                          "503": _problem("No national keys yet (KEYS_UNAVAILABLE)"),
                          **_ERRORS}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "AgriTrace provincial platform contract", "version": "1.0.0",
                 "description": "What a provincial platform offers its province's bridge; "
                                "see services/province-bridge/docs/provincial-contract.md."},
        "paths": paths,
        "components": {"schemas": definitions["$defs"],
                       "securitySchemes": {"bridgeKey": {
                           "type": "http", "scheme": "bearer",
                           "description": "The bridge key the province issued"}}},
        "security": [{"bridgeKey": []}],
    }


def document_text() -> str:
    return json.dumps(document(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"
