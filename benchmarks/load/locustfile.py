"""Locust users of the stress test, over gRPC. Run by `python -m benchmarks.load` (make load)
in the load virtualenv, with AGRITRACE_LOAD_SEED naming the seed file (seed.py), and the
generated messages (libs/generated) and the repository on PYTHONPATH. Nothing of the services
is imported here.

Who asks, in the proportions of a day on the platform:
  * consumers scanning labels (GetOriginInfo): codes of the seeded goods, and now and then a
    code that does not exist;
  * phones and scanners checking a code (VerifyCode);
  * a retailer looking one step up and one down (TraceCode);
  * a regulator tracing a recall forward from a producer's batch (TraceForward, depth 10).
Every answer is checked, not only its status: a wrong answer counts as a failure. The retailer
and the regulator sign in (Login) and renew their tokens (Refresh) as they near expiry, so a
run may last as long as the test needs; those calls are reported too."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from typing import Any

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()  # before any channel: grpc then yields to gevent while it waits

import grpc  # noqa: E402
from locust import User, between, events, task  # noqa: E402

from agritrace.coding.v1 import coding_pb2, coding_pb2_grpc  # noqa: E402
from agritrace.query.v1 import query_pb2, query_pb2_grpc  # noqa: E402
from agritrace.sso.v1 import sso_pb2_grpc  # noqa: E402
from benchmarks.load.signin import SessionError, SignedInSession  # noqa: E402

with open(os.environ["AGRITRACE_LOAD_SEED"], encoding="utf-8") as seed_file:
    SEED: dict[str, Any] = json.load(seed_file)
# Time each user waits between its calls (a person, not a loop), from the runner.
THINK = float(os.environ.get("AGRITRACE_LOAD_THINK_SECONDS", "0.05"))
# Retailers and regulators are few beside consumers, yet every run has each (a weight could
# leave them out of a small run): this many of each, from the runner; consumers and code
# checks share the other users 4:1 (16:4 below).
OPERATORS = int(os.environ.get("AGRITRACE_LOAD_OPERATORS", "1"))
# Seconds before an access token expires that its user renews it, from the runner.
REFRESH_MARGIN = float(os.environ.get("AGRITRACE_LOAD_REFRESH_MARGIN", "60"))
UNKNOWN_SHARE = 0.05  # of consumer scans: labels whose codes the platform never issued
TIMEOUT = 10.0


class WrongAnswer(Exception):
    """The call succeeded but its answer is not what the seeded goods imply."""


def _timed(name: str, call: Callable[[], Any], check: Callable[[Any], str]) -> None:
    """One call reported to locust under `name`: failed if it raises or `check` objects."""
    started = time.perf_counter()
    error: BaseException | None = None
    answer: Any = None
    try:
        answer = call()
        problem = check(answer)
        if problem:
            error = WrongAnswer(problem)
    except (grpc.RpcError, SessionError) as failure:
        error = failure
    events.request.fire(request_type="grpc", name=name,
                        response_time=(time.perf_counter() - started) * 1000,
                        response_length=answer.ByteSize() if answer is not None else 0,
                        exception=error, context={})


class QueryAsker(User):
    """A user of the query service: its channel, opened when it starts, closed when it stops."""

    abstract = True
    wait_time = between(0, 2 * THINK)

    def on_start(self) -> None:
        self.channel = grpc.insecure_channel(SEED["query_address"])
        self.query = query_pb2_grpc.QueryServiceStub(self.channel)  # type: ignore[no-untyped-call]

    def on_stop(self) -> None:
        self.channel.close()


class Consumer(QueryAsker):
    """Scans a label with a phone: anonymous."""

    weight = 16

    @task
    def scan(self) -> None:
        unknown = random.random() < UNKNOWN_SHARE
        code = (f"37{random.getrandbits(56):014X}" if unknown
                else random.choice(SEED["scannable_codes"]))

        def check(answer: query_pb2.GetOriginInfoResponse) -> str:
            genuine = answer.status == query_pb2.ORIGIN_STATUS_GENUINE_ACTIVE
            if unknown:
                return "an unknown code answered as genuine" if genuine else ""
            if not genuine or not answer.origin.product_name:
                return f"{code}: {query_pb2.OriginStatus.Name(answer.status)}, no origin"
            return ""

        _timed("GetOriginInfo", lambda: self.query.GetOriginInfo(
            query_pb2.GetOriginInfoRequest(code=code), timeout=TIMEOUT), check)


class CodeChecker(User):
    """Checks a code before printing or selling it: anonymous."""

    weight = 4
    wait_time = between(0, 2 * THINK)

    def on_start(self) -> None:
        self.channel = grpc.insecure_channel(SEED["coding_address"])
        self.coding = coding_pb2_grpc.CodingServiceStub(self.channel)  # type: ignore[no-untyped-call]

    def on_stop(self) -> None:
        self.channel.close()

    @task
    def verify(self) -> None:
        code = random.choice(SEED["scannable_codes"])

        def check(answer: coding_pb2.VerifyCodeResponse) -> str:
            return "" if answer.exists and answer.well_formed else f"{code} not found"

        _timed("VerifyCode", lambda: self.coding.VerifyCode(
            coding_pb2.VerifyCodeRequest(code=code), timeout=TIMEOUT), check)


def _kept(_tokens: Any) -> str:
    """The session checks the tokens it keeps itself (SessionError)."""
    return ""


class SignedInAsker(QueryAsker):
    """A signed-in user of the query service: the account SEED[username_key], a session of
    its own with the sso service, kept alive for the whole run."""

    abstract = True
    username_key = ""
    fixed_count = OPERATORS

    def on_start(self) -> None:
        super().on_start()
        self.sso_channel = grpc.insecure_channel(SEED["sso_address"])
        self.session = SignedInSession(
            sso_pb2_grpc.SsoServiceStub(self.sso_channel),  # type: ignore[no-untyped-call]
            SEED[self.username_key], SEED["password"], refresh_margin=REFRESH_MARGIN,
            timeout=TIMEOUT)
        _timed("Login", self.session.sign_in, _kept)

    def on_stop(self) -> None:
        self.sso_channel.close()
        super().on_stop()

    def credentials(self) -> tuple[tuple[str, str], ...]:
        """The session's token, renewed first when it nears expiry; none (the call then
        fails, as it should) while signing in fails."""
        if not self.session.signed_in:
            _timed("Login", self.session.sign_in, _kept)
        elif self.session.due():
            _timed("Refresh", self.session.refresh, _kept)
        return self.session.credentials() if self.session.signed_in else ()

    def trace(self, name: str, ask: Callable[[tuple[tuple[str, str], ...]], Any],
              subject: str, least_nodes: int) -> None:
        """One trace call as this user (`ask` given the metadata), failed when its graph has
        fewer than `least_nodes` nodes."""
        credentials = self.credentials()  # a renewal is timed apart, not as this call

        def check(answer: Any) -> str:
            found = len(answer.graph.nodes)
            return "" if found >= least_nodes else f"{subject}: {found} nodes"

        _timed(name, lambda: ask(credentials), check)


class Retailer(SignedInAsker):
    """A retailer looking at where its goods came from and went."""

    username_key = "retailer_username"

    @task
    def trace_code(self) -> None:
        code = random.choice(SEED["retailer_codes"])
        # Its own node and the market it bought from, at least.
        self.trace("TraceCode", lambda metadata: self.query.TraceCode(
            query_pb2.TraceCodeRequest(code=code), metadata=metadata, timeout=TIMEOUT),
            code, least_nodes=2)


class Regulator(SignedInAsker):
    """The origin province's regulator tracing recalls."""

    username_key = "regulator_username"

    @task
    def recall(self) -> None:
        batch_id = random.choice(SEED["recall_batches"])
        # The cooperative, the market, both retailers, the repacked boxes.
        self.trace("TraceForward", lambda metadata: self.query.TraceForward(
            query_pb2.TraceForwardRequest(batch_id=batch_id, depth=10), metadata=metadata,
            timeout=TIMEOUT), batch_id, least_nodes=5)
