"""The simulated platform on HTTP (stdlib ThreadingHTTPServer): the contract's /v1 API with the
faults in force, and /admin to change faults and data while it runs. Both need the bridge
key as a bearer token, except /v1/health and the contract itself (/v1/openapi.json).

Logs name the method, path and status only: bodies hold personal data."""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import BaseModel, TypeAdapter, ValidationError

from agritrace_bridge import openapi
from agritrace_bridge.contract import PROBLEM_CONTENT_TYPE, Problem
from agritrace_bridge.simulator.platform import (
    Answer,
    FaultsPatch,
    SimulatedPlatform,
    problem,
)

log = logging.getLogger(__name__)

_MAX_BODY = 1 << 20
_RECORDS = "/v1/national-records/"
_COUNT = TypeAdapter(dict[str, int])
_BATCHES = TypeAdapter(dict[str, list[str]])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A hanging handler (timeout fault) must not hold up shutdown.
    block_on_close = False

    def __init__(self, address: tuple[str, int], platform: SimulatedPlatform, api_key: str,
                 stopping: threading.Event) -> None:
        super().__init__(address, _Handler)
        self.platform = platform
        self.api_key = api_key
        self.stopping = stopping


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the bridge's client pools connections
    # Headers and body go out in two writes; with Nagle's algorithm the second waits for the
    # client's delayed ACK (40 ms) on every answer of a kept-alive connection.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def log_message(self, format: str, *args: Any) -> None:
        # Only the request line's method and path, never query strings or bodies.
        log.debug("%s %s -> %s", self.command, urlsplit(self.path).path,
                  args[1] if len(args) > 1 else "")

    # -- dispatch ---------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        body = self._body()
        if body is None:
            return
        if url.path.startswith("/admin/"):
            answer = self._authorized() or self._admin(method, url.path, body)
        elif url.path.startswith("/v1/"):
            answer = self._api(method, url.path, parse_qs(url.query), body)
        else:
            answer = problem(404, "NOT_FOUND", "Not found", "no such endpoint")
        if answer.dropped:
            self.close_connection = True  # the client sees the connection close, unanswered
            return
        self._send(answer)

    def _api(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Answer:
        platform = self.server.platform
        number, faults = platform.next_request()
        if faults.down:
            return Answer(0, None)
        if faults.latency_ms and self.server.stopping.wait(faults.latency_ms / 1000):
            return Answer(0, None)
        if faults.timeout_every and number % faults.timeout_every == 0:
            platform.count_injected()
            self.server.stopping.wait(faults.hang_seconds)
            return Answer(0, None)
        if path == "/v1/health" and method == "GET":
            return platform.injected_failure(number, faults) or platform.health()
        if path == "/v1/openapi.json" and method == "GET":
            return Answer(200, openapi.document())
        denied = self._authorized()
        if denied is not None:
            return denied
        failure = platform.injected_failure(number, faults)
        if failure is not None:
            return failure

        def first(name: str) -> str:
            return query.get(name, [""])[0]

        if path == "/v1/subjects" and method == "GET":
            return platform.list_subjects(first("page_size"), first("page_token"))
        if path == "/v1/trace-records" and method == "GET":
            return platform.list_trace_records(first("limit"), first("cursor"))
        if path == "/v1/sso/verify" and method == "POST":
            return platform.verify(body)
        if path.startswith(_RECORDS) and len(path) > len(_RECORDS):
            record_id = unquote(path[len(_RECORDS):])
            if method == "PUT":
                return platform.push(record_id, body)
            if method == "GET":
                return platform.pushed_record(record_id)
        return _no_route(method)

    def _admin(self, method: str, path: str, body: bytes) -> Answer:
        platform = self.server.platform
        try:
            if path == "/admin/faults" and method == "GET":
                return Answer(200, platform.faults)
            if path == "/admin/faults" and method == "PATCH":
                return Answer(200, platform.patch_faults(FaultsPatch.model_validate_json(body)))
            if path == "/admin/stats" and method == "GET":
                return Answer(200, platform.stats())
            if path == "/admin/subjects" and method == "POST":
                count = _COUNT.validate_json(body).get("count", 0)
                return Answer(200, {"subjects": platform.add_subjects(max(count, 0))})
            if path == "/admin/trace-records" and method == "POST":
                count = _COUNT.validate_json(body).get("count", 0)
                return Answer(200, {"trace_records": platform.add_trace_records(max(count, 0))})
            if path == "/admin/batches" and method == "PUT":
                batch_ids = _BATCHES.validate_json(body).get("batch_ids", [])
                if not batch_ids:
                    return problem(400, "INVALID_ARGUMENT", "Invalid argument",
                                   "batch_ids must name at least one batch")
                platform.set_batches(batch_ids)
                return Answer(200, {"batches": len(batch_ids)})
            if path == "/admin/jwks" and method == "PUT":
                platform.set_jwks(body.decode())
                return Answer(200, {"keys": len(json.loads(body).get("keys", []))})
        except (ValidationError, ValueError, AttributeError) as error:
            return problem(400, "INVALID_ARGUMENT", "Invalid argument", str(error)[:500])
        return _no_route(method)

    # -- plumbing ---------------------------------------------------------------------------

    def _authorized(self) -> Answer | None:
        header = self.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(key.strip().encode(),
                                                              self.server.api_key.encode()):
            return None
        return problem(401, "UNAUTHENTICATED", "Unauthenticated",
                       "send the bridge key as Authorization: Bearer <key>",
                       headers={"WWW-Authenticate": 'Bearer realm="provincial-platform"'})

    def _body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self._send(problem(413, "BODY_TOO_LARGE", "Body too large",
                               f"at most {_MAX_BODY} bytes"))
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, answer: Answer) -> None:
        document = answer.document
        if isinstance(document, BaseModel):
            payload = document.model_dump_json(exclude_none=True).encode()
        else:
            payload = json.dumps(document, ensure_ascii=False).encode()
        content_type = PROBLEM_CONTENT_TYPE if isinstance(document, Problem) \
            else "application/json"
        self.send_response(answer.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        request_id = self.headers.get("X-Request-Id")
        if request_id:
            self.send_header("X-Request-Id", request_id[:128])
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def _no_route(method: str) -> Answer:
    return problem(404, "NOT_FOUND", "Not found",
                   f"no {method} endpoint at this path")


class SimulatorServer:
    """Serves a simulated platform on a background thread: `with SimulatorServer(...) as
    server: server.url ...`; port 0 picks a free port. Leaving the block stops it, waking any
    request the timeout fault keeps hanging."""

    def __init__(self, platform: SimulatedPlatform, api_key: str, *, host: str = "127.0.0.1",
                 port: int = 0, record_rate: int = 0) -> None:
        self.platform = platform
        # New production records per second while serving (0: only on demand, via /admin).
        self.record_rate = record_rate
        self._stopping = threading.Event()
        self._server = _Server((host, port), platform, api_key, self._stopping)
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        name = f"simulator-{self.platform.province}"
        # Polls for shutdown every 50 ms, so stopping (every test does) is quick.
        self._threads = [threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                          name=name, daemon=True)]
        if self.record_rate:
            self._threads.append(threading.Thread(target=self._grow, name=f"{name}-records",
                                                  daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._threads:
            self._server.shutdown()
            for thread in self._threads:
                thread.join(timeout=5)
            self._threads = []
        self._server.server_close()

    def _grow(self) -> None:
        """`record_rate` records a second, added every tenth of a second (a steady stream, not
        a burst a second)."""
        started = time.monotonic()
        added = 0
        while not self._stopping.wait(0.1):
            due = int((time.monotonic() - started) * self.record_rate)
            self.platform.add_trace_records(due - added)
            added = due

    def wait(self) -> None:
        """Blocks until `stop` is called (from a signal handler, say)."""
        self._stopping.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
