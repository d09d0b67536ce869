"""Where an import batch spends its time, step by step, without gRPC in the way:

    python -m benchmarks.profile_import [--subjects N] [--batch-size B]

Builds the registry in-process (bootstrap) on a throwaway database, converts the generated
messages as the servicer does, and calls SubjectImporter.import_batch batch by batch. The
importer's collaborators are wrapped (in this process only; no file is changed) with timers
that record wall time and this thread's CPU time, so each step splits into Python work (CPU)
and waiting for PostgreSQL (wall - CPU). What it measures is the registry code as it is in the
work tree when it runs."""

from __future__ import annotations

import argparse
import base64
import functools
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from agritrace.registry.v1 import registry_pb2 as pb
from agritrace_kernel.config import load_settings
from agritrace_registry import bootstrap as registry_bootstrap
from agritrace_registry.adapters import repository as repo_module
from agritrace_registry.domain import model
from agritrace_registry.entrypoints import grpc_servicer
from agritrace_registry.service_layer import importer as importer_module
from benchmarks import data
from benchmarks.infra import ThrowawayDatabase, log

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Step:
    wall: float = 0.0
    cpu: float = 0.0
    calls: int = 0


STEPS: dict[str, Step] = {}


def timed(name: str, function: F) -> F:
    step = STEPS.setdefault(name, Step())

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            step.wall += time.perf_counter() - wall
            step.cpu += time.thread_time() - cpu
            step.calls += 1

    return wrapper  # type: ignore[return-value]


def _patch(owner: Any, attribute: str, name: str) -> None:
    setattr(owner, attribute, timed(name, getattr(owner, attribute)))


def instrument() -> None:
    repo = repo_module.SqlAlchemySubjectRepository
    _patch(importer_module, "validate_registration", "validate_registration")
    _patch(model.ValidRegistration, "identity_key", "identity_key (HMAC digest)")
    _patch(repo, "find_by_keys", "find_by_keys (SELECT)")
    _patch(repo, "recorded_outcomes", "recorded_outcomes (2 SELECTs)")
    _patch(importer_module.SubjectImporter, "_classify", "_classify")
    _patch(model.Subject, "register", "  Subject.register (seal, mask, digest)")
    for name in ("  new_subject_id (secrets + GF(32) check)",
                 "  protector.seal (AES-GCM, all callers)",
                 "  protector.digest (HMAC, all callers)"):
        STEPS.setdefault(name, Step())  # wrapped per app in run(); listed here for the order
    _patch(importer_module, "contradictions", "  contradictions")
    _patch(repo, "add_many", "add_many (subjects COPY)")
    _patch(repo_module, "_subject_row", "  _subject_row")
    _patch(repo, "add_provenance", "add_provenance (COPY)")
    _patch(repo, "add_conflicts", "add_conflicts (COPY)")
    if hasattr(repo, "save_many"):
        _patch(repo, "save_many", "save_many (UPDATE flagged subjects)")
    else:
        _patch(repo, "save", "save (UPDATE per flagged subject)")
    _patch(repo_module.RegistryUnitOfWork, "commit", "commit")
    _patch(repo_module.RegistryUnitOfWork, "__enter__", "session open")
    _patch(repo_module.RegistryUnitOfWork, "__exit__", "session close/rollback")


def run(dataset: data.Dataset, database_url: str, label: str) -> float:
    os.environ.update({
        "AGRITRACE_DATABASE_URL": database_url,
        "AGRITRACE_PII_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "AGRITRACE_EVENT_BUS": "inprocess",
    })
    settings = load_settings()
    registry_bootstrap.migrate(settings)
    app = registry_bootstrap.bootstrap(settings)
    importer = app.importer
    service = app.service
    service.new_subject_id = timed("  new_subject_id (secrets + GF(32) check)",
                                   service.new_subject_id)
    protector: Any = service.protector
    protector.seal = timed("  protector.seal (AES-GCM, all callers)", protector.seal)
    protector.digest = timed("  protector.digest (HMAC, all callers)", protector.digest)
    for step in STEPS.values():
        step.wall = step.cpu = 0.0
        step.calls = 0
    convert = STEPS.setdefault("proto -> domain (servicer)", Step())
    answer = STEPS.setdefault("results -> proto (servicer)", Step())
    batch_step = STEPS.setdefault("import_batch, total", Step())
    started = time.perf_counter()
    try:
        for province in dataset.imports:
            run_ = importer.begin(province.import_id, province.province)
            summary = importer_module.ImportSummary()
            for message_bytes in province.messages:
                message = pb.ImportSubjectsRequest.FromString(message_bytes)
                wall, cpu = time.perf_counter(), time.thread_time()
                records = [
                    importer_module.ImportRecordInput(
                        r.source_record_id, grpc_servicer.registration_from_proto(r.registration))
                    for r in message.records
                ]
                convert.wall += time.perf_counter() - wall
                convert.cpu += time.thread_time() - cpu
                wall, cpu = time.perf_counter(), time.thread_time()
                results = importer.import_batch(run_, records, summary)
                batch_step.wall += time.perf_counter() - wall
                batch_step.cpu += time.thread_time() - cpu
                batch_step.calls += 1
                wall, cpu = time.perf_counter(), time.thread_time()
                pb.ImportSubjectsResponse(
                    import_id=run_.import_id,
                    results=[grpc_servicer._result_to_proto(r) for r in results],
                    summary=grpc_servicer._summary_to_proto(summary),
                ).SerializeToString()
                answer.wall += time.perf_counter() - wall
                answer.cpu += time.thread_time() - cpu
            importer.finish(run_, summary)
    finally:
        app.close()
    seconds = time.perf_counter() - started
    report(label, dataset.total, seconds)
    return seconds


def report(label: str, records: int, seconds: float) -> None:
    print(f"\n{label}: {records:,} records in {seconds:.1f} s = {records / seconds:,.0f} "
          f"records/s (in-process, no gRPC)")
    print(f"{'step':<44} {'wall s':>8} {'CPU s':>8} {'wait s':>8} {'µs/rec':>8} {'share':>6}")
    for name, step in STEPS.items():
        if not step.calls and not step.wall:
            continue
        print(f"{name:<44} {step.wall:8.2f} {step.cpu:8.2f} {step.wall - step.cpu:8.2f} "
              f"{step.wall / records * 1e6:8.1f} {step.wall / seconds:6.1%}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20261129)
    args = parser.parse_args(argv)
    log(f"[profile] generating {args.subjects:,} subjects")
    dataset = data.generate(args.subjects, args.seed, f"prof{os.getpid()}")
    dataset.build_messages(args.batch_size)
    instrument()
    database = ThrowawayDatabase(suffix="_profile")
    try:
        database.create()
        run(dataset, database.sqlalchemy_url, "import_batch step by step")
    finally:
        database.drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
