"""The origin-view cache and the per-place counter of scans of unknown codes: in Redis across
replicas (microservices mode), in a bounded in-process LRU in the all-in-one mode.

A cache is an optimisation: on a Redis failure reads miss, writes and invalidations are
skipped (logged; cached views expire by their TTL) and the scan counter answers 0, so a scan
is answered from the read model rather than failing."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from agritrace_query.service_layer.projection_ports import OriginCache, batch_key, code_key

__all__ = ["KEY_PREFIX", "InMemoryOriginCache", "OriginCache", "RedisOriginCache",
           "origin_cache"]

log = logging.getLogger(__name__)

KEY_PREFIX = "agritrace:query:"
ORIGIN_PATTERN = "origin:*"
DELETE_CHUNK = 1000


# A scan's look-up in one round trip: the code's view, then the view of the batch it names.
# KEYS[1]: the code's key; ARGV[1]: the batch keys' prefix. (It reads a key it was not
# given: fine on one Redis, not on a Redis Cluster.)
ORIGIN_SCRIPT = """
local code = redis.call('GET', KEYS[1])
if not code then return {false, false} end
local ok, view = pcall(cjson.decode, code)
if ok and type(view) == 'table' and type(view['batch_id']) == 'string'
    and view['batch_id'] ~= '' then
  return {code, redis.call('GET', ARGV[1] .. view['batch_id'])}
end
return {code, false}
"""


def _scan_key(place: str) -> str:
    return f"unknown-scans:{place}"


def _view(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    value = json.loads(raw)
    return value if isinstance(value, dict) else None


def _named_batch(view: dict[str, Any] | None) -> str:
    batch_id = view.get("batch_id") if view is not None else None
    return batch_id if isinstance(batch_id, str) else ""


class RedisOriginCache:
    def __init__(self, url: str, prefix: str = KEY_PREFIX, *, socket_timeout: float = 0.5
                 ) -> None:
        import redis
        from redis.maint_notifications import MaintNotificationsConfig

        # A short timeout: a cache that stalls would stall every scan waiting on it. RESP2
        # without maintenance notifications: the plain protocol costs the scan path less CPU
        # per command in redis-py (measured), and a single Redis sends no such notifications.
        self._client = redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
            protocol=2, maint_notifications_config=MaintNotificationsConfig(enabled=False))
        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self._prefix = prefix
        self._origin = self._client.register_script(ORIGIN_SCRIPT)

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            raw = self._client.get(self._prefix + key)
        except self._errors as error:
            log.warning("origin cache read failed", extra={"error": str(error)})
            return None
        return _view(raw)

    def get_origin(self, code: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        try:
            raw_code, raw_batch = self._origin(keys=[self._prefix + code_key(code)],
                                               args=[self._prefix + batch_key("")])
        except self._errors as error:
            log.warning("origin cache read failed", extra={"error": str(error)})
            return None, None
        return _view(raw_code), _view(raw_batch)

    def set(self, key: str, value: dict[str, Any], ttl_seconds: float) -> None:
        data = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        try:
            self._client.set(self._prefix + key, data, px=max(1, int(ttl_seconds * 1000)))
        except self._errors as error:
            log.warning("origin cache write failed", extra={"error": str(error)})

    def invalidate(self, codes: Iterable[str], batch_ids: Iterable[str]) -> None:
        keys = [self._prefix + code_key(code) for code in codes]
        keys += [self._prefix + batch_key(batch_id) for batch_id in batch_ids]
        try:
            for start in range(0, len(keys), DELETE_CHUNK):
                self._client.unlink(*keys[start:start + DELETE_CHUNK])
        except self._errors as error:
            log.warning("origin cache invalidation failed; views expire by their TTL",
                        extra={"error": str(error), "keys": len(keys)})

    def clear(self) -> None:
        try:
            batch: list[Any] = []
            for key in self._client.scan_iter(match=self._prefix + ORIGIN_PATTERN,
                                              count=DELETE_CHUNK):
                batch.append(key)
                if len(batch) == DELETE_CHUNK:
                    self._client.unlink(*batch)
                    batch = []
            if batch:
                self._client.unlink(*batch)
        except self._errors as error:
            log.warning("origin cache clear failed; views expire by their TTL",
                        extra={"error": str(error)})

    def count_unknown_scan(self, place: str, window_seconds: int) -> int:
        key = self._prefix + _scan_key(place)
        try:
            pipeline = self._client.pipeline(transaction=True)
            pipeline.incr(key)
            pipeline.expire(key, window_seconds, nx=True)  # the window starts with the first
            count, _ = pipeline.execute()
        except self._errors as error:
            log.warning("unknown-scan counter failed", extra={"error": str(error)})
            return 0
        return int(count)

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except self._errors:
            return False

    def close(self) -> None:
        self._client.close()


class InMemoryOriginCache:
    """A bounded LRU with per-entry expiry, and the scan counters (bounded too), shared by the
    threads of one process."""

    def __init__(self, max_entries: int = 100_000, max_places: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._views: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._scans: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._max_entries = max_entries
        self._max_places = max_places
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._views.get(key)
            if found is None:
                return None
            if found[0] <= self._clock():
                del self._views[key]
                return None
            self._views.move_to_end(key)
        # Stored as JSON text: a caller changing the dict it got cannot change the cache.
        return _view(found[1])

    def get_origin(self, code: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        view = self.get(code_key(code))
        batch_id = _named_batch(view)
        return view, self.get(batch_key(batch_id)) if batch_id else None

    def set(self, key: str, value: dict[str, Any], ttl_seconds: float) -> None:
        data = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            self._views[key] = (self._clock() + ttl_seconds, data)
            self._views.move_to_end(key)
            while len(self._views) > self._max_entries:
                self._views.popitem(last=False)

    def invalidate(self, codes: Iterable[str], batch_ids: Iterable[str]) -> None:
        keys = [code_key(code) for code in codes] + [batch_key(b) for b in batch_ids]
        with self._lock:
            for key in keys:
                self._views.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._views.clear()

    def count_unknown_scan(self, place: str, window_seconds: int) -> int:
        now = self._clock()
        with self._lock:
            expires, count = self._scans.get(place, (0.0, 0))
            if expires <= now:
                expires, count = now + window_seconds, 0
            self._scans[place] = (expires, count + 1)
            self._scans.move_to_end(place)
            while len(self._scans) > self._max_places:
                self._scans.popitem(last=False)
            return count + 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._views)


def origin_cache(redis_url: str | None) -> OriginCache:
    """Redis when the deployment has one (shared by replicas), else in-process."""
    return RedisOriginCache(redis_url) if redis_url else InMemoryOriginCache()
