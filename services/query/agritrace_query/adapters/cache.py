"""The origin-view cache and the per-place counter of scans of unknown codes: in Redis across
replicas (microservices mode), in a bounded in-process LRU in the all-in-one mode. A query
server replica keeps the views it served lately in its own memory too (NearOriginCache), in
front of Redis, dropped when Redis announces an invalidation: a hot code's scan then needs no
round trip at all.

A cache is an optimisation: on a Redis failure reads miss, writes and invalidations are
skipped (logged; cached views expire by their TTL) and the scan counter answers 0, so a scan
is answered from the read model rather than failing."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from agritrace_query.service_layer.projection_ports import OriginCache, batch_key, code_key

__all__ = ["KEY_PREFIX", "InMemoryOriginCache", "InvalidationListener", "NearOriginCache",
           "OriginCache", "RedisOriginCache", "origin_cache"]

log = logging.getLogger(__name__)

KEY_PREFIX = "agritrace:query:"
ORIGIN_PATTERN = "origin:*"
DELETE_CHUNK = 1000
# The pub/sub channel (after the key prefix) on which every invalidation is announced:
# {"by": the announcing cache's id, "keys": the keys dropped, or "*" when every view was}.
INVALIDATIONS = "invalidations"
EVERYTHING = "*"
_CODE_KEYS = code_key("")


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


def _milliseconds(ttl_seconds: float) -> int:
    return max(1, int(ttl_seconds * 1000))


def _scan_key(place: str) -> str:
    return f"unknown-scans:{place}"


def _view(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    value = json.loads(raw)
    return value if isinstance(value, dict) else None


def _text(raw: Any) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


# One encoder for every view stored: json.dumps with options builds a new one per call.
_as_text = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _origin_texts(get_text: Callable[[str], str | None], code: str
                  ) -> tuple[str | None, str | None]:
    """A scan's two views read key by key: the code's, then the batch's it names."""
    text = get_text(code_key(code))
    batch_id = _named_batch(_view(text))
    return text, get_text(batch_key(batch_id)) if batch_id else None


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
        self._url = url
        self._prefix = prefix
        # Names this cache's announcements: a near cache in front of it applies its own
        # invalidations at once and skips their echo.
        self.announcer = uuid.uuid4().hex
        self._origin = self._client.register_script(ORIGIN_SCRIPT)

    def get(self, key: str) -> dict[str, Any] | None:
        return _view(self.get_text(key))

    def get_text(self, key: str) -> str | None:
        try:
            raw = self._client.get(self._prefix + key)
        except self._errors as error:
            log.warning("origin cache read failed", extra={"error": str(error)})
            return None
        return _text(raw)

    holds_views_locally = False  # everything here is a round trip away

    def get_local_text(self, key: str) -> str | None:
        return None

    def get_origin(self, code: str) -> tuple[str | None, str | None]:
        try:
            raw_code, raw_batch = self._origin(keys=[self._prefix + code_key(code)],
                                               args=[self._prefix + batch_key("")])
        except self._errors as error:
            log.warning("origin cache read failed", extra={"error": str(error)})
            return None, None
        return _text(raw_code), _text(raw_batch)

    def set(self, key: str, value: dict[str, Any], ttl_seconds: float) -> None:
        self.set_text(key, _as_text(value), ttl_seconds)

    def set_text(self, key: str, text: str, ttl_seconds: float) -> None:
        try:
            self._client.set(self._prefix + key, text, px=_milliseconds(ttl_seconds))
        except self._errors as error:
            log.warning("origin cache write failed", extra={"error": str(error)})

    def set_texts(self, views: Iterable[tuple[str, str, float]]) -> None:
        """Stores (key, text, ttl) views in one round trip."""
        pipeline = self._client.pipeline(transaction=False)
        for key, text, ttl_seconds in views:
            pipeline.set(self._prefix + key, text, px=_milliseconds(ttl_seconds))
        try:
            pipeline.execute()
        except self._errors as error:
            log.warning("origin cache write failed", extra={"error": str(error)})

    def invalidate(self, codes: Iterable[str], batch_ids: Iterable[str]) -> None:
        keys = [code_key(code) for code in codes] + [batch_key(b) for b in batch_ids]
        if not keys:
            return
        try:
            for start in range(0, len(keys), DELETE_CHUNK):
                chunk = keys[start:start + DELETE_CHUNK]
                # Deleted, then announced to the replicas' near caches, in one round trip.
                pipeline = self._client.pipeline(transaction=False)
                pipeline.unlink(*(self._prefix + key for key in chunk))
                pipeline.publish(self.channel, self._announcement(chunk))
                pipeline.execute()
        except self._errors as error:
            log.warning("origin cache invalidation failed; views expire by their TTL",
                        extra={"error": str(error), "keys": len(keys)})

    def _announcement(self, keys: list[str] | str) -> str:
        return json.dumps({"by": self.announcer, "keys": keys})

    @property
    def channel(self) -> str:
        return self._prefix + INVALIDATIONS

    def listener(self, near: NearOriginCache) -> InvalidationListener:
        """A listener that keeps `near` right by this Redis's announcements, on a connection
        of its own that pings now and then (a connection that died silently is noticed)."""
        import redis

        client = redis.Redis.from_url(self._url, socket_timeout=5, socket_connect_timeout=2,
                                      health_check_interval=10)
        return InvalidationListener(client, self.channel, near, skip_announcer=self.announcer)

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
            self._client.publish(self.channel, self._announcement(EVERYTHING))
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
        # Stored as JSON text: a caller changing the dict it got cannot change the cache.
        return _view(self.get_text(key))

    def get_text(self, key: str) -> str | None:
        with self._lock:
            found = self._views.get(key)
            if found is None:
                return None
            if found[0] <= self._clock():
                del self._views[key]
                return None
            self._views.move_to_end(key)
        return found[1]

    holds_views_locally = True
    get_local_text = get_text

    def get_origin(self, code: str) -> tuple[str | None, str | None]:
        return _origin_texts(self.get_text, code)

    def set(self, key: str, value: dict[str, Any], ttl_seconds: float) -> None:
        self.set_text(key, _as_text(value), ttl_seconds)

    def set_text(self, key: str, text: str, ttl_seconds: float) -> None:
        with self._lock:
            self._views[key] = (self._clock() + ttl_seconds, text)
            self._views.move_to_end(key)
            while len(self._views) > self._max_entries:
                self._views.popitem(last=False)

    def invalidate(self, codes: Iterable[str], batch_ids: Iterable[str]) -> None:
        self.drop([code_key(code) for code in codes] + [batch_key(b) for b in batch_ids])

    def drop(self, keys: Iterable[str]) -> None:
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


class NearOriginCache:
    """A replica's own copy of the views it served lately, in front of the shared Redis
    cache. An InvalidationListener drops what Redis announces as invalidated (the worker
    announces every invalidation it makes); while the listener is not subscribed - starting,
    or after losing its connection - the near copy is bypassed and emptied, so it never serves
    a view whose invalidation it could have missed.

    A fill races an invalidation: a view read from Redis or the read model before a change
    and stored after the change's announcement would stay. So every announcement moves a
    generation on, a read notes the generation it started in (per thread: a scan's cache miss,
    its read-model query and its fill run on one thread), and a fill made in another
    generation is skipped - locally and in Redis, which shares the race.

    While subscribed, a code's own view (a small row: state and batch) is kept here only, not
    in Redis: most codes are scanned once or twice, so a shared copy seldom saves the
    read-model query it costs a round trip to look for (and another to store); the batch views,
    which thousands of codes share, are kept in both. Their copies for Redis wait as pending
    fills, which the listener's thread writes every few milliseconds in one round trip (a
    scan does not wait for Redis); an announcement drops a pending fill of its keys as it
    drops the near copy."""

    def __init__(self, remote: RedisOriginCache, local: InMemoryOriginCache,
                 ttl_seconds: float = 60.0) -> None:
        self._remote = remote
        self._local = local
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._generation = 0
        self._subscribed = False
        self._reads = threading.local()
        # Views for Redis not written yet: key -> (text, ttl).
        self._pending: dict[str, tuple[str, float]] = {}
        self._writing = threading.Lock()  # pending fills on their way, or an invalidation

    # -- kept by the listener ----------------------------------------------------------------

    def subscribed(self, subscribed: bool) -> None:
        with self._lock:
            self._subscribed = subscribed
            self._generation += 1
            self._local.clear()
            self._pending.clear()

    def drop(self, keys: Iterable[str] | None) -> None:
        """Drops `keys`, or every view when None."""
        with self._lock:
            self._generation += 1
            if keys is None:
                self._local.clear()
                self._pending.clear()
            else:
                keys = list(keys)
                self._local.drop(keys)
                for key in keys:
                    self._pending.pop(key, None)

    def write_pending(self) -> int:
        """Writes the pending fills to Redis in one round trip; how many. (A change another
        process announces while they are on their way may be overwritten: the same window a
        fill written at once has between its check and its write; the view then expires by
        its TTL.)"""
        with self._writing:
            with self._lock:
                pending, self._pending = self._pending, {}
            if pending:
                self._remote.set_texts((key, text, ttl) for key, (text, ttl) in pending.items())
            return len(pending)

    @property
    def is_subscribed(self) -> bool:
        return self._subscribed

    # -- OriginCache ---------------------------------------------------------------------------

    def _started_read(self) -> int:
        generation = self._generation
        self._reads.generation = generation
        return generation

    def _fill(self, generation: int, key: str, text: str | None,
              shared_ttl: float | None = None) -> None:
        """Keeps `text` here (and, with `shared_ttl`, pending for Redis) unless a change was
        announced since the read it came from."""
        if text is None:
            return
        with self._lock:
            if self._subscribed and generation == self._generation:
                self._local.set_text(key, text, self._ttl)
                if shared_ttl is not None:
                    self._pending[key] = (text, shared_ttl)

    @staticmethod
    def _shared(key: str) -> bool:
        return not key.startswith(_CODE_KEYS)

    def get(self, key: str) -> dict[str, Any] | None:
        return _view(self.get_text(key))

    def get_text(self, key: str) -> str | None:
        subscribed = self._subscribed
        if subscribed and (text := self._local.get_text(key)) is not None:
            return text
        generation = self._started_read()
        if subscribed and not self._shared(key):
            return None
        text = self._remote.get_text(key)
        self._fill(generation, key, text)
        return text

    @property
    def holds_views_locally(self) -> bool:
        return self._subscribed

    def get_local_text(self, key: str) -> str | None:
        return self._local.get_text(key) if self._subscribed else None

    def get_origin(self, code: str) -> tuple[str | None, str | None]:
        if not self._subscribed:
            self._started_read()
            return self._remote.get_origin(code)
        return _origin_texts(self.get_text, code)

    def set(self, key: str, value: dict[str, Any], ttl_seconds: float) -> None:
        generation = getattr(self._reads, "generation", None)
        if generation is not None and generation != self._generation:
            return  # announced changed since this thread's read: the value may be stale
        text = _as_text(value)
        if not self._subscribed:
            self._remote.set_text(key, text, ttl_seconds)
            return
        self._fill(self._generation if generation is None else generation, key, text,
                   ttl_seconds if self._shared(key) else None)

    # An invalidation made here and the listener's writing of pending fills exclude each
    # other: a fill on its way to Redis while Redis deletes its key would outlive the change.
    def invalidate(self, codes: Iterable[str], batch_ids: Iterable[str]) -> None:
        codes, batch_ids = list(codes), list(batch_ids)
        with self._writing:
            self._remote.invalidate(codes, batch_ids)
            self.drop([code_key(code) for code in codes] + [batch_key(b) for b in batch_ids])

    def clear(self) -> None:
        with self._writing:
            self._remote.clear()
            self.drop(None)

    def count_unknown_scan(self, place: str, window_seconds: int) -> int:
        return self._remote.count_unknown_scan(place, window_seconds)


class InvalidationListener:
    """Subscribes to a Redis's invalidation announcements and applies them to a near cache
    (a server's background thread), and writes the near cache's pending fills to Redis. On a
    lost connection the near cache is bypassed until the listener has subscribed again
    (retried every few seconds)."""

    RETRY_SECONDS = 2.0
    # How often pending fills go to Redis (and so how long the listener waits for a message;
    # an announcement is applied as soon as it arrives). As the query log writer's tick.
    POLL_SECONDS = 0.05

    def __init__(self, client: Any, channel: str, near: NearOriginCache,
                 skip_announcer: str = "") -> None:
        self._client = client
        self._skip = skip_announcer
        self._channel = channel
        self._near = near
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="origin-cache-invalidations",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._near.subscribed(False)
        self._client.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._listen()
            except Exception as error:  # any failure: bypass, then retry
                log.warning("origin cache invalidations lost; near cache bypassed",
                            extra={"error": str(error)})
            self._near.subscribed(False)
            self._stopping.wait(self.RETRY_SECONDS)

    def _listen(self) -> None:
        pubsub = self._client.pubsub()
        try:
            pubsub.subscribe(self._channel)
            while not self._stopping.is_set():
                message = pubsub.get_message(timeout=self.POLL_SECONDS)
                if message is None:
                    pass
                elif message["type"] == "subscribe":
                    self._near.subscribed(True)
                elif message["type"] == "message":
                    announcement = json.loads(message["data"])
                    if announcement["by"] != self._skip:
                        keys = announcement["keys"]
                        self._near.drop(None if keys == EVERYTHING else keys)
                # After the announcement read: it drops the pending fills it makes stale.
                self._near.write_pending()
        finally:
            pubsub.close()


def origin_cache(redis_url: str | None) -> OriginCache:
    """Redis when the deployment has one (shared by replicas), else in-process."""
    return RedisOriginCache(redis_url) if redis_url else InMemoryOriginCache()
