"""Login throttles: failed sign-ins per username counted in Redis (INCR with EXPIRE, shared
by every replica) or in memory (embedded mode, one process)."""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import datetime, timedelta

MAX_FAILURES = 5
WINDOW = timedelta(minutes=15)
LOCK_TIME = timedelta(minutes=15)


class MemoryLoginThrottle:
    """Failures within a sliding window; the clock is the caller's (tests move it)."""

    def __init__(self, max_failures: int = MAX_FAILURES, window: timedelta = WINDOW,
                 lock_time: timedelta = LOCK_TIME) -> None:
        self._max, self._window, self._lock_time = max_failures, window, lock_time
        self._failures: defaultdict[str, list[datetime]] = defaultdict(list)
        self._locked_until: dict[str, datetime] = {}
        self._mutex = threading.Lock()

    def is_locked(self, username: str, now: datetime) -> bool:
        with self._mutex:
            until = self._locked_until.get(username)
            if until is not None and now >= until:
                del self._locked_until[username]
                until = None
            return until is not None

    def record_failure(self, username: str, now: datetime) -> bool:
        with self._mutex:
            recent = [t for t in self._failures[username] if now - t < self._window]
            recent.append(now)
            if len(recent) >= self._max:
                self._failures.pop(username, None)
                self._locked_until[username] = now + self._lock_time
                return True
            self._failures[username] = recent
            return False

    def reset(self, username: str) -> None:
        with self._mutex:
            self._failures.pop(username, None)


class RedisLoginThrottle:
    """A fixed window per username: INCR a counter that EXPIREs after the window; the
    failure that reaches the limit sets a lock key that EXPIREs after the lock time."""

    def __init__(self, url: str, prefix: str = "agritrace:sso:login",
                 max_failures: int = MAX_FAILURES, window: timedelta = WINDOW,
                 lock_time: timedelta = LOCK_TIME) -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=5)
        self._prefix = prefix
        self._max = max_failures
        self._window = int(window.total_seconds())
        self._lock_time = int(lock_time.total_seconds())

    def _keys(self, username: str) -> tuple[str, str]:
        return f"{self._prefix}:fail:{username}", f"{self._prefix}:lock:{username}"

    def is_locked(self, username: str, now: datetime) -> bool:
        return bool(self._client.exists(self._keys(username)[1]))

    def record_failure(self, username: str, now: datetime) -> bool:
        fail_key, lock_key = self._keys(username)
        pipe = self._client.pipeline()
        pipe.incr(fail_key)
        pipe.expire(fail_key, self._window, nx=True)
        count = int(pipe.execute()[0])
        if count >= self._max:
            pipe = self._client.pipeline()
            pipe.set(lock_key, "1", ex=self._lock_time)
            pipe.delete(fail_key)
            pipe.execute()
            return True
        return False

    def reset(self, username: str) -> None:
        self._client.delete(self._keys(username)[0])

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except Exception:
            return False
