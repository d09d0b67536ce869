"""The simulator over real HTTP: the contract's answers, pagination that is complete and
stable, idempotent pushes, token verification, and each fault switched on at run time."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from agritrace_bridge.contract import (
    MAX_PAGE_SIZE,
    PROBLEM_CONTENT_TYPE,
    Problem,
    SubjectPage,
    TokenVerification,
    TraceRecordPage,
)
from agritrace_bridge.simulator import SimulatorServer

Admin = Callable[..., httpx.Response]
SetFaults = Callable[..., None]


def walk_subjects(http: httpx.Client, page_size: int) -> tuple[list[str], list[str]]:
    """Every source_record_id of a full listing, and the page tokens it used."""
    ids: list[str] = []
    tokens: list[str] = []
    token = ""
    while True:
        params = {"page_size": page_size} | ({"page_token": token} if token else {})
        page = SubjectPage.model_validate_json(http.get("/v1/subjects", params=params).content)
        ids.extend(s.source_record_id for s in page.subjects)
        token = page.next_page_token
        if not token:
            return ids, tokens
        tokens.append(token)
        assert len(tokens) < 1000, "the listing does not end"


def problem_of(response: httpx.Response) -> Problem:
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    return Problem.model_validate_json(response.content)


def keyed_client(server: SimulatorServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, verify=False,
                        headers={"Authorization": "Bearer test-bridge-key-37"})


def test_health_needs_no_key_and_names_the_province(simulator: SimulatorServer,
                                                    client: httpx.Client) -> None:
    response = client.get(f"{simulator.url}/v1/health")
    assert response.status_code == 200
    assert response.json()["province"] == "37" and response.json()["contract_version"] == "v1"


def test_the_api_needs_the_bridge_key(simulator: SimulatorServer, client: httpx.Client
                                     ) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        response = client.get(f"{simulator.url}/v1/subjects", headers=headers)
        assert response.status_code == 401
        assert problem_of(response).reason == "UNAUTHENTICATED"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get(f"{simulator.url}/admin/stats").status_code == 401


def test_pagination_is_complete_in_order_and_stable(
        start_simulator: Callable[..., SimulatorServer]) -> None:
    server = start_simulator(subjects=1234)
    with keyed_client(server) as http:
        ids, tokens = walk_subjects(http, 100)
        assert len(ids) == 1234 and len(set(ids)) == 1234 and ids == sorted(ids)
        assert len(tokens) == 12
        again, _ = walk_subjects(http, 100)
        assert again == ids
        # A token can be replayed: a resumed listing continues exactly where it stood.
        resumed = SubjectPage.model_validate_json(
            http.get("/v1/subjects", params={"page_size": 100, "page_token": tokens[4]}).content)
        assert [s.source_record_id for s in resumed.subjects] == ids[500:600]
        first = SubjectPage.model_validate_json(http.get("/v1/subjects").content)
        assert first.total_size == 1234 and len(first.subjects) == 500  # the default


def test_subjects_added_while_paging_appear_at_the_end(
        simulator: SimulatorServer, http: httpx.Client, admin: Admin) -> None:
    first = SubjectPage.model_validate_json(
        http.get("/v1/subjects", params={"page_size": 30}).content)
    admin(simulator, "POST", "subjects", {"count": 5})
    rest = SubjectPage.model_validate_json(http.get(
        "/v1/subjects", params={"page_size": 100, "page_token": first.next_page_token}).content)
    ids = [s.source_record_id for s in first.subjects + rest.subjects]
    assert len(ids) == 55 == len(set(ids)) and ids == sorted(ids)
    assert rest.total_size == 55 and rest.next_page_token == ""


def test_page_size_is_capped_and_bad_parameters_are_problems(
        start_simulator: Callable[..., SimulatorServer]) -> None:
    server = start_simulator(subjects=MAX_PAGE_SIZE + 10)
    with keyed_client(server) as http:
        capped = SubjectPage.model_validate_json(
            http.get("/v1/subjects", params={"page_size": 5000}).content)
        assert len(capped.subjects) == MAX_PAGE_SIZE and capped.next_page_token
        for params, name in (({"page_size": -1}, "page_size"), ({"page_size": "ten"},
                             "page_size"), ({"page_token": "not-a-token"}, "page_token"),
                             ({"cursor": "@@"}, "cursor")):
            path = "/v1/trace-records" if "cursor" in params else "/v1/subjects"
            response = http.get(path, params=params)
            assert response.status_code == 400
            problem = problem_of(response)
            assert problem.reason == "INVALID_ARGUMENT"
            assert [p.name for p in problem.invalid_params] == [name]
        assert problem_of(http.get("/v1/nothing-here")).status == 404


def test_subjects_keep_personal_data_out_of_their_repr(http: httpx.Client) -> None:
    page = SubjectPage.model_validate_json(http.get("/v1/subjects").content)
    person = next(s for s in page.subjects if s.resident_id)
    assert person.resident_id not in repr(person)
    assert person.contact_phone not in repr(person)


def test_trace_records_follow_a_cursor_and_grow_on_demand(
        simulator: SimulatorServer, http: httpx.Client, admin: Admin) -> None:
    empty = TraceRecordPage.model_validate_json(http.get("/v1/trace-records").content)
    assert empty.records == [] and not empty.has_more
    admin(simulator, "POST", "trace-records", {"count": 25})
    first = TraceRecordPage.model_validate_json(
        http.get("/v1/trace-records", params={"limit": 10, "cursor": empty.next_cursor}).content)
    assert len(first.records) == 10 and first.has_more
    rest = TraceRecordPage.model_validate_json(
        http.get("/v1/trace-records", params={"cursor": first.next_cursor}).content)
    assert len(rest.records) == 15 and not rest.has_more
    ids = [r.record_id for r in first.records + rest.records]
    assert len(set(ids)) == 25
    quiet = TraceRecordPage.model_validate_json(
        http.get("/v1/trace-records", params={"cursor": rest.next_cursor}).content)
    assert quiet.records == [] and quiet.next_cursor == rest.next_cursor
    admin(simulator, "PUT", "batches", {"batch_ids": ["B37REALBATCH00001"]})
    admin(simulator, "POST", "trace-records", {"count": 2})
    new = TraceRecordPage.model_validate_json(
        http.get("/v1/trace-records", params={"cursor": rest.next_cursor}).content)
    assert [r.batch_id for r in new.records] == ["B37REALBATCH00001"] * 2


def test_trace_records_grow_over_time(start_simulator: Callable[..., SimulatorServer]
                                      ) -> None:
    started = time.monotonic()
    server = start_simulator(record_rate=100)
    while server.platform.stats()["trace_records"] == 0:
        assert time.monotonic() - started < 5, "no record appeared"
        time.sleep(0.05)
    time.sleep(0.2)
    grown = int(str(server.platform.stats()["trace_records"]))
    assert 0 < grown <= 100 * (time.monotonic() - started) + 1


def test_a_pushed_record_is_stored_once(http: httpx.Client) -> None:
    record = {"record_id": "evt-1", "type": "SUBJECT_REGISTERED",
              "occur_time": "2024-05-01T08:00:00Z", "subject_id": "S37XXXX",
              "payload": {"status": "PENDING_REVIEW"}}
    created = http.put("/v1/national-records/evt-1", json=record)
    assert created.status_code == 201 and created.json()["replayed"] is False
    again = http.put("/v1/national-records/evt-1", json=record)
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert again.json()["accepted_time"] == created.json()["accepted_time"]
    assert http.get("/v1/national-records/evt-1").json()["payload"] == record["payload"]
    changed = http.put("/v1/national-records/evt-1", json=record | {"type": "CODES_ISSUED"})
    assert changed.status_code == 409 and problem_of(changed).reason == "RECORD_CONFLICT"
    other_id = http.put("/v1/national-records/evt-2", json=record)
    assert other_id.status_code == 400
    invalid = http.put("/v1/national-records/evt-3", json={"record_id": "evt-3"})
    assert invalid.status_code == 400
    assert {p.name for p in problem_of(invalid).invalid_params} == {"type", "occur_time"}
    assert problem_of(http.get("/v1/national-records/evt-9")).status == 404


# -- exchanged SSO tokens -----------------------------------------------------------------


def verify(http: httpx.Client, token: str) -> httpx.Response:
    return http.post("/v1/sso/verify", json={"token": token})


def test_an_exchanged_token_verifies_against_the_national_keys(
        simulator: SimulatorServer, http: httpx.Client, admin: Admin,
        national_keys: Any) -> None:
    token = national_keys.token()
    unavailable = verify(http, token)
    assert unavailable.status_code == 503
    assert problem_of(unavailable).reason == "KEYS_UNAVAILABLE"
    admin(simulator, "PUT", "jwks", national_keys.jwks)
    answer = TokenVerification.model_validate_json(verify(http, token).content)
    assert answer.active and answer.username == "reviewer37" and answer.jurisdiction == "37"
    assert answer.audience == "platform:province-37"
    other_key = type(national_keys)()
    cases: dict[str, str] = {
        "TOKEN_WRONG_AUDIENCE": national_keys.token("agritrace"),
        "TOKEN_EXPIRED": national_keys.token(lifetime=-3600),
        "TOKEN_INVALID": other_key.token(),
    }
    for reason, bad in cases.items():
        refused = TokenVerification.model_validate_json(verify(http, bad).content)
        assert not refused.active and refused.reason == reason
    assert verify(http, "").status_code == 400


# -- faults -------------------------------------------------------------------------------


def test_failing_one_request_in_three(simulator: SimulatorServer, http: httpx.Client,
                                      set_faults: SetFaults) -> None:
    set_faults(simulator, fail_every=3)
    statuses = [http.get("/v1/subjects", params={"page_size": 1}).status_code
                for _ in range(9)]
    assert statuses == [200, 200, 503] * 3
    assert [http.get("/v1/health").status_code for _ in range(2)] == [200, 200]
    failed = http.get("/v1/health")  # the 12th request: health is counted like the rest
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "1"
    assert problem_of(failed).reason == "UNAVAILABLE"
    set_faults(simulator, fail_status=500)
    assert [http.get("/v1/health").status_code for _ in range(3)] == [200, 200, 500]
    set_faults(simulator, fail_every=0)
    assert {http.get("/v1/health").status_code for _ in range(4)} == {200}


def test_slow_answers(simulator: SimulatorServer, http: httpx.Client,
                      set_faults: SetFaults) -> None:
    set_faults(simulator, latency_ms=300)
    started = time.monotonic()
    assert http.get("/v1/health").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_timing_out_every_nth_request(simulator: SimulatorServer, set_faults: SetFaults,
                                      client: httpx.Client) -> None:
    set_faults(simulator, timeout_every=2, hang_seconds=5)
    health = f"{simulator.url}/v1/health"
    assert client.get(health).status_code == 200
    with pytest.raises(httpx.ReadTimeout):
        client.get(health, timeout=0.3)
    assert client.get(health).status_code == 200


def test_a_platform_that_is_down_drops_every_request_but_admin_still_answers(
        simulator: SimulatorServer, http: httpx.Client, set_faults: SetFaults,
        admin: Admin) -> None:
    set_faults(simulator, down=True)
    for _ in range(2):
        with pytest.raises(httpx.RemoteProtocolError):
            http.get("/v1/health")
    assert admin(simulator, "GET", "faults").json()["down"] is True
    set_faults(simulator, down=False)
    assert http.get("/v1/health").status_code == 200


def test_broken_pagination_loses_or_repeats(
        start_simulator: Callable[..., SimulatorServer], set_faults: SetFaults) -> None:
    server = start_simulator(subjects=100)
    with keyed_client(server) as http:
        set_faults(server, broken_pagination="skip")
        ids, _ = walk_subjects(http, 10)
        assert len(ids) < 100 and len(set(ids)) == len(ids)
        set_faults(server, broken_pagination="repeat")
        first = http.get("/v1/subjects", params={"page_size": 10}).json()
        second = http.get("/v1/subjects", params={"page_size": 10,
                                                  "page_token": first["next_page_token"]})
        assert second.json()["next_page_token"] == first["next_page_token"]


def test_faults_are_validated_and_reported(simulator: SimulatorServer, admin: Admin,
                                           client: httpx.Client) -> None:
    key = {"Authorization": "Bearer test-bridge-key-37"}
    bad = client.patch(f"{simulator.url}/admin/faults", json={"fail_every": -1}, headers=key)
    assert bad.status_code == 400
    unknown = client.patch(f"{simulator.url}/admin/faults", content=json.dumps({"slow": 1}),
                           headers=key)
    assert unknown.status_code == 400
    stats = admin(simulator, "GET", "stats").json()
    assert stats["faults"]["fail_every"] == 0 and stats["province"] == "37"
