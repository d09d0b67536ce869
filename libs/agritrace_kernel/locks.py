"""Named leases that keep one long operation (e.g. one import run) from running twice at
once: in Redis across replicas (microservices mode), in memory in the embedded mode.

A lease expires by itself (`ttl_seconds`), so a crashed holder never blocks forever; the holder
renews it while it works."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from typing import Protocol


class Lease(Protocol):
    def renew(self) -> bool: ...
    def release(self) -> None: ...


class LeaseManager(Protocol):
    def try_acquire(self, name: str, ttl_seconds: float) -> Lease | None: ...


class _LocalLease:
    def __init__(self, manager: LocalLeases, name: str, token: str, ttl: float) -> None:
        self._manager, self._name, self._token, self._ttl = manager, name, token, ttl

    def renew(self) -> bool:
        return self._manager._renew(self._name, self._token, self._ttl)

    def release(self) -> None:
        self._manager._release(self._name, self._token)


class LocalLeases:
    """In-process leases (all-in-one mode: one process holds every lease)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[str, float]] = {}

    def try_acquire(self, name: str, ttl_seconds: float) -> Lease | None:
        with self._lock:
            holder = self._held.get(name)
            if holder is not None and holder[1] > time.monotonic():
                return None
            token = uuid.uuid4().hex
            self._held[name] = (token, time.monotonic() + ttl_seconds)
            return _LocalLease(self, name, token, ttl_seconds)

    def _renew(self, name: str, token: str, ttl: float) -> bool:
        with self._lock:
            holder = self._held.get(name)
            if holder is None or holder[0] != token:
                return False
            self._held[name] = (token, time.monotonic() + ttl)
            return True

    def _release(self, name: str, token: str) -> None:
        with self._lock:
            holder = self._held.get(name)
            if holder is not None and holder[0] == token:
                del self._held[name]


class _RedisLease:
    def __init__(self, lock: object) -> None:
        self._lock = lock

    def renew(self) -> bool:
        from redis.exceptions import LockError

        try:
            self._lock.reacquire()  # type: ignore[attr-defined]
            return True
        except LockError:
            return False

    def release(self) -> None:
        from redis.exceptions import LockError

        with contextlib.suppress(LockError):  # already expired: nothing to give back
            self._lock.release()  # type: ignore[attr-defined]


class RedisLeases:
    """Leases in Redis (SET NX PX with a token; release and renewal check the token)."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=5)
        self._prefix = prefix

    def try_acquire(self, name: str, ttl_seconds: float) -> Lease | None:
        lock = self._client.lock(f"{self._prefix}:{name}", timeout=ttl_seconds,
                                 blocking=False, thread_local=False)
        return _RedisLease(lock) if lock.acquire() else None

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except Exception:
            return False


def lease_manager(redis_url: str | None, prefix: str) -> LeaseManager:
    return RedisLeases(redis_url, prefix) if redis_url else LocalLeases()
