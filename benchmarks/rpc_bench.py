"""Per-call cost of the kernel's gRPC server chain: N sequential unary echo calls (bytes,
no protobuf) against each server mode of benchmarks.echo_server, each in its own process."""

from __future__ import annotations

import atexit
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import grpc

from benchmarks.echo_server import METHOD
from benchmarks.import_bench import LatencyResult, summarise

LABELS = {
    "bare": "bare grpcio echo (no interceptors)",
    "no-tracing": "kernel chain without tracing (metrics+logging+errors)",
    "noop-tracing": "create_server chain, tracing not configured (no-op)",
    "tracing": "create_server chain, tracing configured (no exporter)",
    "auth": "create_server chain with tracing and authentication (EdDSA JWT)",
}
# The modes measured one call at a time (authentication is measured at concurrency 16).
SEQUENTIAL_MODES = tuple(mode for mode in LABELS if mode != "auth")


@dataclass(frozen=True)
class EchoResult:
    mode: str
    latency: LatencyResult
    round_p50_us: list[float]  # the median of each round, for paired differences


def paired_cost_us(slower: EchoResult, faster: EchoResult) -> tuple[float, float, float]:
    """Per-call cost of `slower` over `faster`: the median over rounds of the difference of
    their round medians (rounds ran back to back, so both saw the same machine), with the
    interquartile range of those differences as a measure of the noise."""
    differences = sorted(a - b for a, b in zip(slower.round_p50_us, faster.round_p50_us,
                                                strict=True))
    quartile = len(differences) // 4
    return (statistics.median(differences), differences[quartile],
            differences[-1 - quartile])


class EchoServerProcess:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.echo_server", mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        atexit.register(self.stop)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode().strip()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"echo server ({mode}) did not start: {line!r}")
        self.port = int(line.split()[1])
        self.metadata: tuple[tuple[str, str], ...] = ()
        if mode == "auth":
            token_line = self.process.stdout.readline().decode().strip()
            self.metadata = (("authorization", f"Bearer {token_line.split()[1]}"),)

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def run_echo_modes(calls: int, modes: tuple[str, ...] = SEQUENTIAL_MODES, *,
                   payload_bytes: int = 64, warmup: int = 500, rounds: int = 20
                   ) -> dict[str, EchoResult]:
    """`calls` sequential calls per mode. All servers run at once and the modes take turns in
    `rounds` slices, so drift of the machine (other processes, CPU frequency) spreads evenly
    over the modes instead of favouring whichever ran first."""
    payload = (bytes(range(256)) * (payload_bytes // 256 + 1))[:payload_bytes]
    servers = {mode: EchoServerProcess(mode) for mode in modes}
    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    round_p50s: dict[str, list[float]] = {mode: [] for mode in modes}
    channels = {mode: grpc.insecure_channel(f"127.0.0.1:{servers[mode].port}") for mode in modes}
    try:
        stubs: dict[str, grpc.UnaryUnaryMultiCallable[bytes, bytes]] = {
            mode: channels[mode].unary_unary(METHOD) for mode in modes  # bytes in, bytes out
        }
        for mode in modes:
            for _ in range(warmup):
                stubs[mode](payload, timeout=10)
        per_round = [calls // rounds + (1 if r < calls % rounds else 0) for r in range(rounds)]
        for number, round_calls in enumerate(per_round):
            # Each round starts with another mode, so no mode always follows the same one.
            for mode in modes[number % len(modes):] + modes[:number % len(modes)]:
                echo, bucket = stubs[mode], []
                for _ in range(round_calls):
                    started = time.perf_counter()
                    reply = echo(payload, timeout=10)
                    bucket.append(time.perf_counter() - started)
                    if reply != payload:
                        raise RuntimeError(f"echo ({mode}) returned something else")
                samples[mode].extend(bucket)
                round_p50s[mode].append(statistics.median(bucket) * 1e6)
    finally:
        for channel in channels.values():
            channel.close()
        for server in servers.values():
            server.stop()
    return {mode: EchoResult(mode, summarise(LABELS[mode], samples[mode]), round_p50s[mode])
            for mode in modes}


@dataclass(frozen=True)
class ConcurrentResult:
    mode: str
    calls: int
    seconds: float
    latency: LatencyResult

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds


def run_concurrent(calls: int, modes: tuple[str, ...] = ("tracing", "auth"), *,
                   concurrency: int = 16, payload_bytes: int = 64, rounds: int = 10
                   ) -> dict[str, ConcurrentResult]:
    """`calls` unary calls per mode from `concurrency` client threads at once; the same
    token is sent to every mode (a server without authentication ignores it), so only the
    interceptor differs. Modes alternate in rounds, as in run_echo_modes."""
    from concurrent.futures import ThreadPoolExecutor

    payload = (bytes(range(256)) * (payload_bytes // 256 + 1))[:payload_bytes]
    servers = {mode: EchoServerProcess(mode) for mode in modes}
    metadata = next((s.metadata for s in servers.values() if s.metadata), ())
    channels = {mode: grpc.insecure_channel(f"127.0.0.1:{servers[mode].port}") for mode in modes}
    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    seconds = dict.fromkeys(modes, 0.0)
    try:
        stubs: dict[str, grpc.UnaryUnaryMultiCallable[bytes, bytes]] = {
            mode: channels[mode].unary_unary(METHOD) for mode in modes}

        def one(mode: str) -> float:
            started = time.perf_counter()
            if stubs[mode](payload, timeout=10, metadata=metadata) != payload:
                raise RuntimeError(f"echo ({mode}) returned something else")
            return time.perf_counter() - started

        with ThreadPoolExecutor(concurrency) as pool:
            for mode in modes:  # warm-up
                list(pool.map(one, [mode] * 500))
            for number in range(rounds):
                for mode in modes[number % len(modes):] + modes[:number % len(modes)]:
                    started = time.perf_counter()
                    samples[mode].extend(pool.map(one, [mode] * (calls // rounds)))
                    seconds[mode] += time.perf_counter() - started
    finally:
        for channel in channels.values():
            channel.close()
        for server in servers.values():
            server.stop()
    return {mode: ConcurrentResult(mode, len(samples[mode]), seconds[mode],
                                   summarise(LABELS[mode], samples[mode])) for mode in modes}
