"""Streams the generated imports to a running registry over ImportSubjects, one bidirectional
call per province, and checks what came back against what the data says should happen.

The request messages are serialized before timing and sent as bytes; during the timed part
the client only keeps the answers (and prints progress), it analyses them afterwards, so the
client's own work takes as little as possible of the machine the server shares with it."""

from __future__ import annotations

import random
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import psycopg

from agritrace.registry.v1 import registry_pb2 as pb
from agritrace.registry.v1 import registry_pb2_grpc
from benchmarks.data import CREATED, OUTCOMES, Dataset

IMPORT_METHOD = "/agritrace.registry.v1.RegistryService/ImportSubjects"
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


def outcome_name(value: int) -> str:
    return pb.ImportOutcome.Name(value).removeprefix("IMPORT_OUTCOME_")


@dataclass
class ImportRunResult:
    label: str
    seconds: float
    records: int
    batches: int
    counts: dict[str, int]  # from the per-record results
    summary_counts: dict[str, int]  # from the final summary of every call
    unexpected: Counter[tuple[str, str]] = field(default_factory=Counter)  # (expected, got)
    examples: list[str] = field(default_factory=list)
    created_ids: list[str] = field(default_factory=list)
    # (province, answer number within its call, seconds since the previous answer)
    batch_seconds: list[tuple[str, int, float]] = field(default_factory=list)

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


class _Progress:
    """A line on stderr each time another `every` records are answered, and at the end."""

    def __init__(self, label: str, total: int, every: int) -> None:
        self.label, self.total, self.every = label, total, every
        self.started = time.perf_counter()
        self.next_mark = every
        self.finished = False

    def update(self, done: int, province: str) -> None:
        final = done >= self.total and not self.finished
        if done < self.next_mark and not final:
            return
        self.finished = self.finished or final
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed else 0.0
        print(f"  [{self.label}] {done:>9,}/{self.total:,} records  {elapsed:6.1f} s  "
              f"{rate:8,.0f} rec/s  (province {province})", file=sys.stderr, flush=True)
        while self.next_mark <= done:
            self.next_mark += self.every


Metadata = tuple[tuple[str, str], ...]


def stream_import(addresses: Sequence[str], dataset: Dataset, label: str, *, streams: int = 1,
                  progress_every: int = 50_000, timeout: float = 1800.0,
                  metadata: Metadata = ()) -> ImportRunResult:
    """Imports every province, `streams` provinces at a time (each its own ImportSubjects
    call), spreading provinces over the registry replicas at `addresses` round-robin; times
    the whole thing, then checks the answers."""
    answers: list[list[pb.ImportSubjectsResponse]] = [[] for _ in dataset.imports]
    batch_times: list[tuple[str, int, float]] = []
    progress = _Progress(label, dataset.total, progress_every)
    lock = threading.Lock()
    done = [0]
    channels = [grpc.insecure_channel(a, options=CHANNEL_OPTIONS) for a in addresses]
    calls: list[grpc.StreamStreamMultiCallable[bytes, pb.ImportSubjectsResponse]] = [
        channel.stream_stream(
            IMPORT_METHOD,
            request_serializer=None,  # the messages are bytes already
            response_deserializer=pb.ImportSubjectsResponse.FromString,
        )
        for channel in channels
    ]
    try:

        def one_province(index: int) -> None:
            province = dataset.imports[index]
            responses = answers[index]
            last, received = time.perf_counter(), 0
            call = calls[index % len(calls)]
            stream: Iterator[pb.ImportSubjectsResponse] = call(
                iter(province.messages), timeout=timeout, wait_for_ready=True,
                metadata=metadata,
            )
            for response in stream:
                responses.append(response)
                now = time.perf_counter()
                with lock:
                    batch_times.append((province.province, len(responses), now - last))
                    done[0] += response.summary.received - received
                    progress.update(done[0], province.province)
                last, received = now, response.summary.received

        started = time.perf_counter()
        if streams == 1:
            for index in range(len(dataset.imports)):
                one_province(index)
        else:
            with ThreadPoolExecutor(streams, thread_name_prefix="import") as pool:
                for future in [pool.submit(one_province, i) for i in range(len(dataset.imports))]:
                    future.result()
        seconds = time.perf_counter() - started
    finally:
        for channel in channels:
            channel.close()
    return _analyse(label, dataset, answers, seconds, batch_times)


def _analyse(label: str, dataset: Dataset, answers: list[list[pb.ImportSubjectsResponse]],
             seconds: float, batch_times: list[tuple[str, int, float]]
             ) -> ImportRunResult:
    counts = dict.fromkeys(OUTCOMES, 0)
    summary_counts = dict.fromkeys(OUTCOMES, 0)
    unexpected: Counter[tuple[str, str]] = Counter()
    examples: list[str] = []
    created_ids: list[str] = []
    batches = 0
    for province, responses in zip(dataset.imports, answers, strict=True):
        results = [r for response in responses if not response.done for r in response.results]
        batches += sum(1 for response in responses if not response.done)
        final = responses[-1] if responses and responses[-1].done else None
        if final is None:
            examples.append(f"province {province.province}: the stream ended without done=true")
        else:
            s = final.summary
            for name, value in zip(OUTCOMES, (s.created, s.merged, s.conflicts, s.rejected),
                                   strict=True):
                summary_counts[name] += value
        if len(results) != len(province.records):
            examples.append(f"province {province.province}: {len(results)} results for "
                            f"{len(province.records)} records")
        for record, result in zip(province.records, results, strict=False):
            got = outcome_name(result.outcome)
            counts[got] += 1
            if got == CREATED:
                created_ids.append(result.subject_id)
            if result.source_record_id != record.source_record_id:
                unexpected[(record.expected, "out of order")] += 1
            elif got != record.expected:
                unexpected[(record.expected, got)] += 1
                if len(examples) < 5:
                    examples.append(f"{record.source_record_id}: expected {record.expected}, "
                                    f"got {got} {result.field} {result.reason}".strip())
    return ImportRunResult(
        label=label, seconds=seconds, records=dataset.total, batches=batches, counts=counts,
        summary_counts=summary_counts, unexpected=unexpected, examples=examples,
        created_ids=created_ids, batch_seconds=batch_times,
    )


@dataclass(frozen=True)
class LatencyResult:
    label: str
    calls: int
    p50_us: float
    p99_us: float
    mean_us: float


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summarise(label: str, samples_s: list[float]) -> LatencyResult:
    micro = [s * 1e6 for s in samples_s]
    return LatencyResult(label, len(micro), percentile(micro, 50), percentile(micro, 99),
                         statistics.fmean(micro))


def get_subject_latency(address: str, subject_ids: list[str], calls: int,
                        seed: int = 7, warmup: int = 100, metadata: Metadata = ()
                        ) -> LatencyResult:
    """`calls` sequential GetSubject calls for random subjects the import created."""
    rng = random.Random(seed)
    chosen = [rng.choice(subject_ids) for _ in range(calls + warmup)]
    samples: list[float] = []
    with grpc.insecure_channel(address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)  # type: ignore[no-untyped-call]
        for index, subject_id in enumerate(chosen):
            request = pb.GetSubjectRequest(subject_id=subject_id)
            started = time.perf_counter()
            reply = stub.GetSubject(request, timeout=10, metadata=metadata)
            elapsed = time.perf_counter() - started
            if reply.subject.subject_id != subject_id:
                raise RuntimeError(f"GetSubject({subject_id}) returned {reply.subject.subject_id}")
            if index >= warmup:
                samples.append(elapsed)
    return summarise("GetSubject (registry, PostgreSQL)", samples)


def raw_select_latency(conninfo: str, subject_ids: list[str], calls: int,
                       seed: int = 7, warmup: int = 100) -> LatencyResult:
    """Baseline for GetSubject: the same subjects read by primary key with plain psycopg on
    one open connection (one round trip per call, no pool, no ORM, no gRPC)."""
    rng = random.Random(seed)
    chosen = [rng.choice(subject_ids) for _ in range(calls + warmup)]
    samples: list[float] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for index, subject_id in enumerate(chosen):
            started = time.perf_counter()
            row = conn.execute("SELECT * FROM registry.subjects WHERE subject_id = %s",
                               (subject_id,)).fetchone()
            elapsed = time.perf_counter() - started
            if row is None:
                raise RuntimeError(f"subject {subject_id} not found")
            if index >= warmup:
                samples.append(elapsed)
    return summarise("psycopg SELECT by primary key", samples)
