"""The single-call `agritrace subjects` commands against the in-process fake registry."""

from __future__ import annotations

import json
import re
import socket
from typing import TYPE_CHECKING

from typer.testing import CliRunner

from agritrace.registry.v1 import registry_pb2
from agritrace_cli.main import app

if TYPE_CHECKING:
    from agritrace_cli.tests.conftest import CliInvoker, RunningRegistry

RESIDENT_ID = "330102199001011234"


def test_get_shows_the_subject_as_the_server_masks_it(
    registry: RunningRegistry, run_cli: CliInvoker
) -> None:
    subject = registry.fake.add_subject(
        "张三", kind=registry_pb2.SUBJECT_KIND_INDIVIDUAL_FARMER, resident_id=RESIDENT_ID
    )

    result = run_cli("subjects", "get", subject.subject_id)

    assert result.exit_code == 0, result.output
    assert subject.subject_id in result.output
    assert "INDIVIDUAL_FARMER" in result.output
    assert "PENDING_REVIEW" in result.output
    assert "330102********1234" in result.output
    assert RESIDENT_ID not in result.output


def test_get_json(registry: RunningRegistry, run_cli: CliInvoker) -> None:
    subject = registry.fake.add_subject("杭州甲公司", credit_code="91330100MA27XXXX1A")

    result = run_cli("subjects", "get", subject.subject_id, "--json")

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["subject_id"] == subject.subject_id
    assert shown["name"] == "杭州甲公司"
    assert shown["kind"] == "SUBJECT_KIND_ENTERPRISE"
    assert shown["resident_id_masked"] == ""


def test_get_unknown_subject_fails_with_the_status(run_cli: CliInvoker) -> None:
    result = run_cli("subjects", "get", "S33NOSUCHSUBJECT")

    assert result.exit_code == 1
    assert "NOT_FOUND" in result.output
    assert "no subject S33NOSUCHSUBJECT" in result.output


def test_lookup_by_credit_code_and_by_prompted_resident_id(
    registry: RunningRegistry, run_cli: CliInvoker
) -> None:
    company = registry.fake.add_subject("杭州甲公司", credit_code="91330100MA27XXXX1A")
    farmer = registry.fake.add_subject(
        "张三", kind=registry_pb2.SUBJECT_KIND_INDIVIDUAL_FARMER, resident_id=RESIDENT_ID
    )

    by_credit_code = run_cli("subjects", "lookup", "--credit-code", "91330100MA27XXXX1A")
    by_resident_id = run_cli("subjects", "lookup", "--resident-id", "-", input=RESIDENT_ID + "\n")

    assert by_credit_code.exit_code == 0, by_credit_code.output
    assert company.subject_id in by_credit_code.output
    assert by_resident_id.exit_code == 0, by_resident_id.output
    assert farmer.subject_id in by_resident_id.output
    assert RESIDENT_ID not in by_resident_id.output


def test_lookup_needs_exactly_one_key(run_cli: CliInvoker) -> None:
    result = run_cli("subjects", "lookup")
    assert result.exit_code == 2
    assert "exactly one of --credit-code and --resident-id" in result.output


def test_list_all_follows_page_tokens(registry: RunningRegistry, run_cli: CliInvoker) -> None:
    created = [registry.fake.add_subject(f"公司{number}") for number in range(7)]
    registry.fake.add_subject("北京的公司", division_code="110101")

    result = run_cli("subjects", "list", "--division", "33", "--page-size", "3", "--all")

    assert result.exit_code == 0, result.output
    for subject in created:
        assert subject.subject_id in result.output
    assert "北京的公司" not in result.output
    assert "7 subjects" in result.output
    assert "next page token" not in result.output
    assert registry.fake.list_page_tokens == [
        "",
        f"after:{created[2].subject_id}",
        f"after:{created[5].subject_id}",
    ]


def test_list_one_page_prints_the_next_token(
    registry: RunningRegistry, run_cli: CliInvoker
) -> None:
    created = [registry.fake.add_subject(f"公司{number}") for number in range(5)]

    first_page = run_cli("subjects", "list", "--page-size", "2")

    assert first_page.exit_code == 0, first_page.output
    token_line = re.search(r"next page token: (\S+)", first_page.output)
    assert token_line is not None
    assert token_line.group(1) == f"after:{created[1].subject_id}"
    assert created[2].subject_id not in first_page.output

    second_page = run_cli("subjects", "list", "--page-size", "2", "--page-token", token_line[1])

    assert second_page.exit_code == 0, second_page.output
    assert created[2].subject_id in second_page.output
    assert created[0].subject_id not in second_page.output


def test_list_filters_by_kind_and_status(registry: RunningRegistry, run_cli: CliInvoker) -> None:
    registry.fake.add_subject("公司")
    farm = registry.fake.add_subject("农场", kind=registry_pb2.SUBJECT_KIND_FAMILY_FARM)

    result = run_cli(
        "subjects", "list", "--kind", "家庭农场", "--status", "pending_review", "--json"
    )

    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert json.loads(line)["subject_id"] == farm.subject_id


def test_list_refuses_an_unknown_kind(run_cli: CliInvoker) -> None:
    result = run_cli("subjects", "list", "--kind", "spaceship")
    assert result.exit_code == 2
    assert "unknown kind" in result.output


def test_register_shows_the_new_subject(registry: RunningRegistry, run_cli: CliInvoker) -> None:
    result = run_cli(
        "subjects",
        "register",
        "--kind",
        "enterprise",
        "--name",
        "杭州甲公司",
        "--division",
        "330102",
        "--credit-code",
        "91330100MA27XXXX1A",
        "--phone",
        "-",
        "--request-id",
        "req-1",
        input="13800001111\n",
    )

    assert result.exit_code == 0, result.output
    (subject,) = registry.fake.subjects.values()
    assert subject.subject_id in result.output
    assert subject.contact_phone_masked == "138****1111"
    assert "13800001111" not in result.output


def test_register_error_shows_field_violations_and_reason(
    registry: RunningRegistry, run_cli: CliInvoker
) -> None:
    result = run_cli(
        "subjects",
        "register",
        "--kind",
        "企业",
        "--name",
        "",
        "--division",
        "000000",
        "--credit-code",
        "91330100MA27XXXX1A",
        "--request-id",
        "req-bad",
    )

    assert result.exit_code == 1
    output = result.output
    assert "INVALID_ARGUMENT: the registration is invalid" in output
    assert "registration.name: a name is required" in output
    assert "registration.division_code: not a county-level division code in GB/T 2260" in output
    assert "reason: INVALID_REGISTRATION" in output
    assert "--request-id req-bad" in output
    assert registry.fake.subjects == {}


def test_review_approves_and_needs_a_reason_to_reject(
    registry: RunningRegistry, run_cli: CliInvoker
) -> None:
    subject = registry.fake.add_subject("杭州甲公司", credit_code="91330100MA27XXXX1A")

    without_reason = run_cli("subjects", "review", subject.subject_id, "--decision", "reject")
    approved = run_cli("subjects", "review", subject.subject_id, "--decision", "APPROVE")
    illegal = run_cli("subjects", "review", subject.subject_id, "--decision", "reinstate")

    assert without_reason.exit_code == 2
    assert "--reason is required to reject" in without_reason.output
    assert approved.exit_code == 0, approved.output
    assert "APPROVED" in approved.output
    assert registry.fake.subjects[subject.subject_id].status == registry_pb2.SUBJECT_STATUS_APPROVED
    assert illegal.exit_code == 1
    assert "FAILED_PRECONDITION" in illegal.output


def test_bearer_token_from_the_environment_goes_with_each_call(
    registry: RunningRegistry, run_cli: CliInvoker
) -> None:
    subject = registry.fake.add_subject("杭州甲公司")

    run_cli("subjects", "get", subject.subject_id, env={"AGRITRACE_TOKEN": "secret-token"})
    run_cli("subjects", "get", subject.subject_id)

    with_token, without_token = registry.fake.received_metadata
    assert with_token["authorization"] == "Bearer secret-token"
    assert "authorization" not in without_token


def test_unreachable_registry_from_the_environment_exits_1_naming_the_address() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_address = f"127.0.0.1:{probe.getsockname()[1]}"
    runner = CliRunner(env={"COLUMNS": "200", "AGRITRACE_ADDRESS": closed_address})

    result = runner.invoke(app, ["--timeout", "5", "subjects", "get", "S1"])

    assert result.exit_code == 1
    assert "UNAVAILABLE" in result.output
    assert f"(registry address: {closed_address})" in result.output
