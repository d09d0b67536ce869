"""How `make load` judges a run from locust's figures (benchmarks/load/__main__.py), and the
seed it hands the locust process. The whole run is CI's `make load` step (.ci/run)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from agritrace.query.v1 import query_pb2 as qpb
from benchmarks.load import __main__ as runner
from benchmarks.load.__main__ import (
    CALLS,
    CallFigures,
    failure_lines,
    log_problems,
    main,
    operators,
    problems,
    read_stats,
    summary_lines,
)
from benchmarks.load.seed import Seed

# Locust's <prefix>_stats.csv, as 2.47 writes it (two calls and the Aggregated row).
STATS = """\
Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,\
Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,\
80%,90%,95%,98%,99%,99.9%,99.99%,100%
grpc,GetOriginInfo,1384,0,2,2.1,0.5,22,180,98.8,0.0,2,3,3,4,5,6,7,8,12,22,22
grpc,TraceForward,244,3,6,6.5,3,30,900,17.4,0.2,6,7,8,9,11,13,15,17,30,30,30
,Aggregated,1628,3,2,2.8,0.5,30,290,116.2,0.2,2,3,4,5,7,8,10,12,17,22,30
"""


def write_stats(tmp_path: Path, text: str = STATS) -> Path:
    path = tmp_path / "load_stats.csv"
    path.write_text(text)
    return path


def test_the_figures_are_read_per_call_without_the_aggregate(tmp_path: Path) -> None:
    figures = read_stats(write_stats(tmp_path))
    assert figures == {
        "GetOriginInfo": CallFigures("GetOriginInfo", 1384, 0, 98.8, 2.0, 8.0),
        "TraceForward": CallFigures("TraceForward", 244, 3, 17.4, 6.0, 17.0),
    }


def test_failed_calls_and_calls_never_made_fail_the_run(tmp_path: Path) -> None:
    found = problems(read_stats(write_stats(tmp_path)))
    assert "TraceForward: 3 of 244 failed" in found
    assert {"VerifyCode: never called", "TraceCode: never called"} <= set(found)
    assert not any(problem.startswith("GetOriginInfo") for problem in found)


def test_a_run_where_every_call_was_made_and_none_failed_passes() -> None:
    figures = {name: CallFigures(name, 10, 0, 1.0, 1.0, 2.0) for name in CALLS}
    assert problems(figures) == []
    figures["VerifyCode"] = CallFigures("VerifyCode", 0, 0, 0.0, 0.0, 0.0)
    assert problems(figures) == ["VerifyCode: never called"]


def test_a_call_without_percentiles_reads_as_zero(tmp_path: Path) -> None:
    text = STATS.replace("grpc,TraceForward,244,3,6,6.5,3,30,900,17.4,0.2,6,7,8,9,11,13,15,17,"
                         "30,30,30", "grpc,TraceForward,0,0,0,0,0,0,0,0.0,0.0,N/A,N/A,N/A,N/A,"
                         "N/A,N/A,N/A,N/A,N/A,N/A,N/A")
    assert read_stats(write_stats(tmp_path, text))["TraceForward"].p99_ms == 0.0


def test_the_summary_lists_the_busiest_call_first(tmp_path: Path) -> None:
    lines = summary_lines(read_stats(write_stats(tmp_path)))
    assert lines[1].startswith("GetOriginInfo") and "1,384" in lines[1]
    assert lines[2].startswith("TraceForward")


def test_retailers_and_regulators_grow_with_the_users() -> None:
    assert [operators(users) for users in (8, 24, 25, 50, 200)] == [1, 1, 1, 2, 8]


@pytest.mark.parametrize("arguments", [
    ["--duration", "0"], ["--users", "7"], ["--chains", "0"], ["--refresh-margin", "-1"],
    ["--address", "127.0.0.1:1"],  # without an administrator's password
])
def test_bad_arguments_are_refused_before_anything_starts(
        arguments: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGRITRACE_ADMIN_PASSWORD", raising=False)
    with pytest.raises(SystemExit) as refused:
        main(arguments)
    assert refused.value.code == 2


def test_the_seed_round_trips_through_its_file(tmp_path: Path) -> None:
    seed = Seed(query_address="q:1", coding_address="c:2", sso_address="s:3", password="pw",
                scannable_codes=["37A", "37B"], retailer_username="op-1",
                retailer_codes=["37A"], regulator_username="reg-37", recall_batches=["B1"])
    seed.write(tmp_path / "seed.json")
    assert Seed.read(tmp_path / "seed.json") == seed


def test_the_commonest_failures_are_shown_first(tmp_path: Path) -> None:
    (tmp_path / "load_failures.csv").write_text(
        "Method,Name,Error,Occurrences,First Seen,Last Seen\n"
        "grpc,TraceCode,WrongAnswer('37A: 1 nodes'),2,1.0,2.0\n"
        "grpc,GetOriginInfo,<_InactiveRpcError UNAVAILABLE>,40,1.0,2.0\n")
    lines = failure_lines(tmp_path / "load_failures.csv")
    assert lines[0].startswith("  GetOriginInfo x40: <_InactiveRpcError UNAVAILABLE>")
    assert lines[1] == "  TraceCode x2: WrongAnswer('37A: 1 nodes')"
    assert failure_lines(tmp_path / "absent.csv") == []


class FakeQueryLog:
    """The log's answers to VerifyQueryLog, one per call (the last repeats)."""

    def __init__(self, *answers: qpb.VerifyQueryLogResponse) -> None:
        self.answers = list(answers)
        self.asked: list[int] = []

    def newest_seq(self) -> int:
        return 0

    def verify_from(self, first_seq: int) -> qpb.VerifyQueryLogResponse:
        self.asked.append(first_seq)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_the_log_is_waited_for_until_it_holds_every_query(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(runner.time, "sleep", lambda _seconds: None)
    log = FakeQueryLog(qpb.VerifyQueryLogResponse(ok=True, entries_checked=90),
                       qpb.VerifyQueryLogResponse(ok=True, entries_checked=120))
    found, line = log_problems(log, 7, made=100)  # type: ignore[arg-type]
    assert found == [] and log.asked == [7, 7]
    assert line == ("query log from entry 7: 120 entries chained intact, 100 queries made "
                    "under load")


def test_a_log_short_of_queries_or_broken_fails_the_run(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setattr(runner, "LOG_SETTLE_SECONDS", 0.0)
    short = FakeQueryLog(qpb.VerifyQueryLogResponse(ok=True, entries_checked=90))
    assert log_problems(short, 1, made=100)[0] == [  # type: ignore[arg-type]
        "query log: 90 entries for 100 queries"]
    broken = FakeQueryLog(qpb.VerifyQueryLogResponse(
        ok=False, first_broken_seq=42, entries_checked=42, problem="hash does not match"))
    found, line = log_problems(broken, 1, made=100)  # type: ignore[arg-type]
    assert found == ["query log broken at entry 42: hash does not match"]
    assert "BROKEN" in line


class SigningInClient:
    """What QueryLog needs of a PlatformClient: each sign-in gives a new token."""

    admin_password = "admin's"
    query_address = "127.0.0.1:9"

    def __init__(self) -> None:
        self.tokens_used: list[str] = []

    def login(self, username: str, password: str) -> str:
        assert (username, password) == ("admin", self.admin_password)
        return f"token-{len(self.tokens_used) + 1}"

    def channel_as(self, token: str, address: str) -> grpc.Channel:
        self.tokens_used.append(token)
        return grpc.insecure_channel(address)


def test_the_log_is_read_with_a_token_of_the_moment_not_the_run_s_first() -> None:
    """A run may outlive the administrator's 15-minute token: the log is checked after it."""
    client = SigningInClient()
    runner.QueryLog(client)  # type: ignore[arg-type]
    runner.QueryLog(client)  # type: ignore[arg-type]
    assert client.tokens_used == ["token-1", "token-2"]
