"""The registry end to end, in both run modes (see conftest.platform)."""

from __future__ import annotations

import random
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from agritrace.registry.v1 import registry_pb2 as pb
from agritrace_registry.domain import identifiers
from agritrace_registry.domain.divisions import DivisionCatalog
from agritrace_testing.grpc_errors import error_reason, violations
from agritrace_testing.polling import eventually

pytestmark = pytest.mark.integration

COUNTIES = sorted(d.code for d in DivisionCatalog.bundled() if d.level == "county")


def credit_code(rng: random.Random, county: str) -> str:
    body = "93" + county + "".join(
        rng.choice(identifiers.CREDIT_CODE_ALPHABET) for _ in range(9)
    )
    return body + identifiers.credit_code_check_char(body)


def resident_id(rng: random.Random, county: str) -> str:
    body = f"{county}{rng.randint(1950, 2000)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}" \
           f"{rng.randint(0, 999):03d}"
    return body + identifiers.resident_id_check_char(body)


def organisation(rng: random.Random, name: str, county: str | None = None
                 ) -> pb.SubjectRegistration:
    county = county or rng.choice(COUNTIES)
    return pb.SubjectRegistration(
        kind=pb.SUBJECT_KIND_COOPERATIVE, name=name, credit_code=credit_code(rng, county),
        division_code=county, contact_phone=f"139{rng.randint(0, 99999999):08d}",
    )


def farmer(rng: random.Random, name: str) -> pb.SubjectRegistration:
    county = rng.choice(COUNTIES)
    return pb.SubjectRegistration(
        kind=pb.SUBJECT_KIND_INDIVIDUAL_FARMER, name=name,
        resident_id=resident_id(rng, county), division_code=county,
    )


def count_subjects(stub, division_prefix: str = "") -> int:  # type: ignore[no-untyped-def]
    total, token = 0, ""
    while True:
        page = stub.ListSubjects(pb.ListSubjectsRequest(
            page_size=1000, page_token=token, division_prefix=division_prefix))
        total += len(page.subjects)
        token = page.next_page_token
        if not token:
            return total


def test_register_retry_duplicate_and_masking(platform) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(1)
    registration = farmer(rng, "李四")
    registration.contact_phone = "13912345678"
    first = platform.registry.RegisterSubject(
        pb.RegisterSubjectRequest(request_id="it-register-1", registration=registration))
    subject = first.subject
    assert subject.status == pb.SUBJECT_STATUS_PENDING_REVIEW
    assert subject.subject_id.startswith("S" + registration.division_code[:2])
    assert identifiers.parse_subject_id(subject.subject_id) == subject.subject_id
    assert registration.resident_id not in str(subject)
    assert subject.resident_id_masked == identifiers.mask_resident_id(registration.resident_id)
    assert subject.contact_phone_masked == "139****5678"

    retry = platform.registry.RegisterSubject(
        pb.RegisterSubjectRequest(request_id="it-register-1", registration=registration))
    assert retry.subject.subject_id == subject.subject_id

    with pytest.raises(grpc.RpcError) as duplicate:
        platform.registry.RegisterSubject(
            pb.RegisterSubjectRequest(request_id="it-register-2", registration=registration))
    assert duplicate.value.code() is grpc.StatusCode.ALREADY_EXISTS
    assert error_reason(duplicate.value) == "SUBJECT_ALREADY_REGISTERED"

    found = platform.registry.LookupSubject(
        pb.LookupSubjectRequest(resident_id=registration.resident_id.lower()))
    assert found.subject.subject_id == subject.subject_id


@pytest.mark.parametrize(
    ("field", "change", "expected_field"),
    [
        ("credit_code", "91350100M000100Y4", "registration.credit_code"),
        ("division_code", "110103", "registration.division_code"),  # retired in 2010
        ("division_code", "330100", "registration.division_code"),  # a city, not a county
        ("name", "", "registration.name"),
        ("contact_phone", "12345", "registration.contact_phone"),
    ],
)
def test_invalid_input_names_the_field_and_writes_nothing(  # type: ignore[no-untyped-def]
    platform, field: str, change: str, expected_field: str
) -> None:
    rng = random.Random(hash((field, change)) & 0xFFFF)
    registration = organisation(rng, "无效合作社")
    setattr(registration, field, change)
    before = count_subjects(platform.registry)
    with pytest.raises(grpc.RpcError) as error:
        platform.registry.RegisterSubject(pb.RegisterSubjectRequest(
            request_id=f"it-invalid-{field}-{change}", registration=registration))
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert expected_field in violations(error.value)
    assert count_subjects(platform.registry) == before
    if field != "credit_code":
        with pytest.raises(grpc.RpcError) as missing:
            platform.registry.LookupSubject(
                pb.LookupSubjectRequest(credit_code=registration.credit_code))
        assert missing.value.code() is grpc.StatusCode.NOT_FOUND


def test_review_state_machine_and_optimistic_update(platform) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(2)
    subject = platform.registry.RegisterSubject(pb.RegisterSubjectRequest(
        request_id="it-review-1", registration=organisation(rng, "审核合作社"))).subject
    approved = platform.registry.ReviewSubject(pb.ReviewSubjectRequest(
        subject_id=subject.subject_id, decision=pb.REVIEW_DECISION_APPROVE,
        version=subject.version)).subject
    assert approved.status == pb.SUBJECT_STATUS_APPROVED
    with pytest.raises(grpc.RpcError) as illegal:
        platform.registry.ReviewSubject(pb.ReviewSubjectRequest(
            subject_id=subject.subject_id, decision=pb.REVIEW_DECISION_REJECT, reason="x"))
    assert illegal.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(illegal.value) == "ILLEGAL_STATUS_TRANSITION"

    updated = platform.registry.UpdateSubject(pb.UpdateSubjectRequest(
        subject_id=subject.subject_id,
        registration=pb.SubjectRegistration(address="浙江省杭州市西湖区龙井路1号"),
        update_mask=FieldMask(paths=["address"]), version=approved.version)).subject
    assert updated.address == "浙江省杭州市西湖区龙井路1号"
    assert updated.version == approved.version + 1
    with pytest.raises(grpc.RpcError) as stale:
        platform.registry.UpdateSubject(pb.UpdateSubjectRequest(
            subject_id=subject.subject_id, registration=pb.SubjectRegistration(address="x"),
            update_mask=FieldMask(paths=["address"]), version=approved.version))
    assert stale.value.code() is grpc.StatusCode.ABORTED


def test_pagination_is_stable_and_complete(platform) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(3)
    county = "130102"
    created = {
        platform.registry.RegisterSubject(pb.RegisterSubjectRequest(
            request_id=f"it-page-{i}", registration=organisation(rng, f"分页合作社{i}", county))
        ).subject.subject_id
        for i in range(23)
    }
    seen: list[str] = []
    token = ""
    while True:
        page = platform.registry.ListSubjects(pb.ListSubjectsRequest(
            page_size=5, page_token=token, division_prefix=county))
        seen.extend(s.subject_id for s in page.subjects)
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(seen)
    assert set(seen) == created and len(seen) == len(created)
    with pytest.raises(grpc.RpcError) as wrong_filter:
        first = platform.registry.ListSubjects(
            pb.ListSubjectsRequest(page_size=5, division_prefix=county))
        platform.registry.ListSubjects(pb.ListSubjectsRequest(
            page_size=5, page_token=first.next_page_token, division_prefix="13"))
    assert wrong_filter.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in violations(wrong_filter.value)


def generated_import(seed: int, size: int) -> tuple[list[pb.ImportRecord], Counter[str]]:
    """`size` records: ~90% new, 5% exact duplicates, 2% conflicting duplicates, 3% invalid."""
    rng = random.Random(seed)
    records: list[pb.ImportRecord] = []
    expected: Counter[str] = Counter()
    originals: list[pb.SubjectRegistration] = []
    for index in range(size):
        roll = rng.random()
        record_id = f"hist-{seed}-{index}"
        if originals and roll < 0.05:
            registration = pb.SubjectRegistration()
            registration.CopyFrom(rng.choice(originals))
            expected["MERGED"] += 1
        elif originals and roll < 0.07:
            registration = pb.SubjectRegistration()
            registration.CopyFrom(rng.choice(originals))
            registration.name += "（另一名称）"
            expected["CONFLICT"] += 1
        elif roll < 0.10:
            registration = organisation(rng, f"坏记录{index}")
            registration.credit_code = registration.credit_code[:10]
            expected["REJECTED"] += 1
        else:
            make = farmer if rng.random() < 0.4 else organisation
            registration = make(rng, f"历史主体{seed}-{index}")
            originals.append(registration)
            expected["CREATED"] += 1
        records.append(pb.ImportRecord(source_record_id=record_id, registration=registration))
    return records, expected


def stream(import_id: str, province: str, records: list[pb.ImportRecord], batch: int = 1000
           ) -> Iterator[pb.ImportSubjectsRequest]:
    for start in range(0, len(records), batch):
        yield pb.ImportSubjectsRequest(
            import_id=import_id if start == 0 else "",
            source_province=province if start == 0 else "",
            records=records[start:start + batch],
        )


def run_import(platform, import_id: str, records: list[pb.ImportRecord]  # type: ignore[no-untyped-def]
               ) -> tuple[Counter[str], pb.ImportSummary, list[pb.ImportRecordResult]]:
    outcomes: Counter[str] = Counter()
    results: list[pb.ImportRecordResult] = []
    final = None
    for response in platform.registry.ImportSubjects(stream(import_id, "41", records)):
        results.extend(response.results)
        outcomes.update(pb.ImportOutcome.Name(r.outcome).removeprefix("IMPORT_OUTCOME_")
                        for r in response.results)
        if response.done:
            final = response.summary
    assert final is not None
    return outcomes, final, results


def test_import_10000_with_duplicates_conflicts_and_invalid_rows(  # type: ignore[no-untyped-def]
    platform,
) -> None:
    records, expected = generated_import(seed=7, size=10_000)
    before = count_subjects(platform.registry)
    outcomes, summary, results = run_import(platform, "it-import-henan-1", records)
    assert [r.source_record_id for r in results] == [r.source_record_id for r in records]
    assert outcomes == expected
    assert summary.received == 10_000
    assert (summary.created, summary.merged, summary.conflicts, summary.rejected) == (
        expected["CREATED"], expected["MERGED"], expected["CONFLICT"], expected["REJECTED"])
    assert count_subjects(platform.registry) == before + expected["CREATED"]
    rejected = next(r for r in results if r.outcome == pb.IMPORT_OUTCOME_REJECTED)
    assert rejected.field == "credit_code" and rejected.reason
    conflict = next(r for r in results if r.outcome == pb.IMPORT_OUTCOME_CONFLICT)
    flagged = platform.registry.GetSubject(pb.GetSubjectRequest(subject_id=conflict.subject_id))
    assert "IMPORT_CONFLICT" in flagged.subject.review_flags
    merged = next(r for r in results if r.outcome == pb.IMPORT_OUTCOME_MERGED)
    holder = platform.registry.GetSubject(pb.GetSubjectRequest(subject_id=merged.subject_id))
    assert merged.source_record_id in {p.source_record_id for p in holder.subject.provenance}

    # Re-running the same import changes nothing and reports the same outcomes.
    again, _, again_results = run_import(platform, "it-import-henan-1", records)
    assert again == expected
    assert [(r.outcome, r.subject_id) for r in again_results] == [
        (r.outcome, r.subject_id) for r in results]
    assert count_subjects(platform.registry) == before + expected["CREATED"]


def test_concurrent_stream_of_one_import_is_refused(platform) -> None:  # type: ignore[no-untyped-def]
    records, _ = generated_import(seed=11, size=200)

    def slow_stream() -> Iterator[pb.ImportSubjectsRequest]:
        yield from stream("it-import-concurrent", "41", records[:100])
        time.sleep(3)  # hold the import open while a second stream tries the same id
        yield from stream("", "", records[100:])

    first = platform.registry.ImportSubjects(slow_stream())
    next(first)  # the first batch is committed: the lease is held
    with pytest.raises(grpc.RpcError) as refused:
        list(platform.registry.ImportSubjects(stream("it-import-concurrent", "41", records)))
    assert refused.value.code() is grpc.StatusCode.ABORTED
    assert error_reason(refused.value) == "IMPORT_ALREADY_RUNNING"
    assert [r for r in first][-1].done


def test_event_reaches_its_consumer(platform) -> None:  # type: ignore[no-untyped-def]
    """subject_registered goes outbox -> relay -> bus (RabbitMQ or in-process) -> the
    duplicate-check consumer, which marks two keys of one apparent producer."""
    rng = random.Random(5)
    county = "410102"
    first = platform.registry.RegisterSubject(pb.RegisterSubjectRequest(
        request_id="it-event-1", registration=organisation(rng, "中原 果蔬 合作社", county))
    ).subject
    second = platform.registry.RegisterSubject(pb.RegisterSubjectRequest(
        request_id="it-event-2", registration=organisation(rng, "中原果蔬合作社", county))
    ).subject
    seen = eventually(lambda: (s := platform.registry.GetSubject(
        pb.GetSubjectRequest(subject_id=second.subject_id)).subject).suspected_duplicate_ids
        and s, timeout=30, what="the second subject flagged")
    assert list(seen.suspected_duplicate_ids) == [first.subject_id]
    other = platform.registry.GetSubject(pb.GetSubjectRequest(subject_id=first.subject_id))
    assert list(other.subject.suspected_duplicate_ids) == [second.subject_id]


def test_health_reflection_and_metrics(platform) -> None:  # type: ignore[no-untyped-def]
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    health = health_pb2_grpc.HealthStub(platform.channel)
    status = health.Check(health_pb2.HealthCheckRequest(
        service="agritrace.registry.v1.RegistryService"))
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    liveness = health.Check(health_pb2.HealthCheckRequest(service="liveness"))
    assert liveness.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(platform.channel)
    answer = next(reflection.ServerReflectionInfo(iter(
        [reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in answer.list_services_response.service}
    assert "agritrace.registry.v1.RegistryService" in names
    with pytest.raises(grpc.RpcError):
        platform.registry.GetSubject(pb.GetSubjectRequest(subject_id="not-an-id"))
    body = urllib.request.urlopen(
        f"http://127.0.0.1:{platform.metrics_port}/metrics", timeout=5).read().decode()
    assert ('grpc_server_handled_total{grpc_code="INVALID_ARGUMENT",grpc_method="GetSubject",'
            'grpc_service="agritrace.registry.v1.RegistryService",grpc_type="unary"}') in body
    assert "grpc_server_handling_seconds_bucket" in body


def test_operator_cli_imports_a_file_and_reads_back(  # type: ignore[no-untyped-def]
    platform, tmp_path
) -> None:
    """`agritrace subjects import/list/get` against the running platform."""
    import csv
    import os
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "subjects-33.csv"
    with example.open(encoding="utf-8") as handle:
        personal = {value for row in csv.DictReader(handle)
                    for value in (row["resident_id"], row["contact_phone"]) if value}
    env = {**os.environ, "AGRITRACE_ADDRESS": platform.address,
           "AGRITRACE_SSO_ADDRESS": platform.sso_address or platform.address,
           "AGRITRACE_CONFIG_DIR": str(tmp_path / "config"),
           "AGRITRACE_PASSWORD": platform.admin_password}
    env.pop("AGRITRACE_TOKEN", None)
    report = tmp_path / "report.csv"

    def agritrace(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agritrace_cli", *args], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)

    anonymous = agritrace("subjects", "list")
    assert anonymous.returncode == 1 and "UNAUTHENTICATED" in anonymous.stdout + anonymous.stderr
    signed_in = agritrace("login", "--username", "admin")
    assert signed_in.returncode == 0, signed_in.stdout + signed_in.stderr
    assert platform.admin_password not in signed_in.stdout + signed_in.stderr

    done = agritrace("subjects", "import", str(example), "--province", "33",
                     "--report", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    with report.open(encoding="utf-8-sig") as handle:
        outcomes = Counter(row["outcome"] for row in csv.DictReader(handle))
    assert outcomes == {"CREATED": 48, "MERGED": 1, "CONFLICT": 1, "REJECTED": 2}
    printed = done.stdout + done.stderr + report.read_text(encoding="utf-8-sig")
    assert not [value for value in personal if value in printed]

    listed = agritrace("subjects", "list", "--division", "33", "--all")
    assert listed.returncode == 0, listed.stderr
    with report.open(encoding="utf-8-sig") as handle:
        created = next(r for r in csv.DictReader(handle) if r["outcome"] == "CREATED")
    shown = agritrace("subjects", "get", created["subject_id"], "--json")
    assert shown.returncode == 0, shown.stderr
    assert created["subject_id"] in shown.stdout
    assert not [value for value in personal if value in listed.stdout + shown.stdout]

    missing = agritrace("subjects", "get", "S338KA27N9HFS0SA")
    assert missing.returncode == 1
    assert "NOT_FOUND" in missing.stdout + missing.stderr
