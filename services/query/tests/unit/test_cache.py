"""The origin-view cache and unknown-scan counter: one contract, kept by the Redis adapter
(against the Redis at 127.0.0.1:6379, under a key prefix of its own per test), by the
in-process LRU and by a server's near cache in front of Redis; then what the near cache adds:
views served from memory, dropped when Redis announces their invalidation, bypassed while it
cannot hear the announcements."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from agritrace_query.adapters.cache import (
    KEY_PREFIX,
    InMemoryOriginCache,
    InvalidationListener,
    NearOriginCache,
    OriginCache,
    RedisOriginCache,
    origin_cache,
)
from agritrace_query.service_layer.projection_ports import batch_key, code_key
from agritrace_testing.polling import eventually

REDIS_URL = "redis://127.0.0.1:6379/0"
VIEW = {"status": "GENUINE_ACTIVE", "product": "龙井茶", "flags": ["A", "B"], "n": 3}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    prefix = f"{KEY_PREFIX}test-{uuid.uuid4().hex}:"
    yield prefix
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def near(redis_prefix: str) -> Iterator[tuple[NearOriginCache, InvalidationListener]]:
    """A near cache in front of Redis, its listener subscribed."""
    remote = RedisOriginCache(REDIS_URL, redis_prefix)
    near = NearOriginCache(remote, InMemoryOriginCache())
    listener = remote.listener(near)
    listener.start()
    eventually(lambda: near.is_subscribed, timeout=10, what="the listener subscribed")
    yield near, listener
    listener.stop()
    remote.close()


@pytest.fixture(params=["memory", "redis", "near"])
def cache(request: pytest.FixtureRequest) -> Iterator[OriginCache]:
    if request.param == "memory":
        yield InMemoryOriginCache()
        return
    if request.param == "near":
        yield request.getfixturevalue("near")[0]
        return
    adapter = RedisOriginCache(REDIS_URL, request.getfixturevalue("redis_prefix"))
    yield adapter
    adapter.close()


def test_a_view_comes_back_as_it_was_set(cache: OriginCache) -> None:
    assert cache.get(code_key("33K7MXH2TA9WPRC6")) is None
    cache.set(code_key("33K7MXH2TA9WPRC6"), VIEW, 60)
    assert cache.get(code_key("33K7MXH2TA9WPRC6")) == VIEW


def test_a_view_got_cannot_be_changed_through_the_dict(cache: OriginCache) -> None:
    cache.set(batch_key("B1"), VIEW, 60)
    got = cache.get(batch_key("B1"))
    assert got is not None
    got["flags"].append("C")
    assert cache.get(batch_key("B1")) == VIEW


def test_invalidation_drops_the_views_of_the_codes_and_batches_named(
        cache: OriginCache) -> None:
    for key in (code_key("C1"), code_key("C2"), batch_key("B1"), batch_key("B2")):
        cache.set(key, VIEW, 60)
    cache.invalidate(["C1"], ["B2"])
    assert cache.get(code_key("C1")) is None and cache.get(batch_key("B2")) is None
    assert cache.get(code_key("C2")) == VIEW and cache.get(batch_key("B1")) == VIEW
    cache.invalidate([], [])


def origin_views(cache: OriginCache, code: str) -> tuple[Any, Any]:
    """get_origin's JSON texts, decoded."""
    return tuple(json.loads(text) if text is not None else None  # type: ignore[return-value]
                 for text in cache.get_origin(code))


def test_a_scan_gets_the_code_view_and_the_view_of_the_batch_it_names(
        cache: OriginCache) -> None:
    code_view = {"state": "ACTIVE", "batch_id": "B1"}
    assert cache.get_origin("C1") == (None, None)
    cache.set(batch_key("B1"), VIEW, 60)
    assert cache.get_origin("C1") == (None, None)  # the batch's view alone is no answer
    cache.set(code_key("C1"), code_view, 60)
    assert origin_views(cache, "C1") == (code_view, VIEW)
    texts = cache.get_origin("C1")
    assert all(isinstance(text, str) for text in texts)  # the texts stored, undecoded
    cache.invalidate([], ["B1"])
    assert origin_views(cache, "C1") == (code_view, None)
    cache.set(code_key("C2"), {"state": "ISSUED", "batch_id": ""}, 60)
    assert origin_views(cache, "C2") == ({"state": "ISSUED", "batch_id": ""}, None)


def test_a_local_look_up_answers_only_what_the_process_holds(cache: OriginCache) -> None:
    """In memory and in a subscribed near cache what was set is held here; Redis alone holds
    nothing here, so its local look-up always misses (a first scan then reads its code with
    its batch's origin in one query)."""
    cache.set(batch_key("B1"), VIEW, 60)
    local = cache.get_local_text(batch_key("B1"))
    if isinstance(cache, RedisOriginCache):
        assert local is None and not cache.holds_views_locally
    else:
        assert local is not None and json.loads(local) == VIEW
        assert cache.holds_views_locally
    assert cache.get_local_text(batch_key("B2")) is None
    cache.invalidate([], ["B1"])
    assert cache.get_local_text(batch_key("B1")) is None


def test_a_near_cache_without_its_subscription_holds_nothing_locally(
        redis_prefix: str) -> None:
    remote = RedisOriginCache(REDIS_URL, redis_prefix)
    cache = NearOriginCache(remote, InMemoryOriginCache())  # no listener started
    cache.set(batch_key("B1"), VIEW, 60)
    assert not cache.holds_views_locally
    assert cache.get_local_text(batch_key("B1")) is None  # it could have missed a change
    assert cache.get(batch_key("B1")) == VIEW  # Redis has it
    remote.close()


def test_invalidating_thousands_of_codes_at_once(cache: OriginCache) -> None:
    codes = [f"C{n}" for n in range(2500)]
    for code in codes[::500]:
        cache.set(code_key(code), VIEW, 60)
    cache.invalidate(codes, [])
    assert all(cache.get(code_key(code)) is None for code in codes[::500])


def test_clear_drops_every_view_but_keeps_the_scan_counts(cache: OriginCache) -> None:
    cache.set(code_key("C1"), VIEW, 60)
    cache.set(batch_key("B1"), VIEW, 60)
    cache.count_unknown_scan("330106", 600)
    cache.clear()
    assert cache.get(code_key("C1")) is None and cache.get(batch_key("B1")) is None
    assert cache.count_unknown_scan("330106", 600) == 2


def test_unknown_scans_are_counted_per_place(cache: OriginCache) -> None:
    assert [cache.count_unknown_scan("330106", 600) for _ in range(3)] == [1, 2, 3]
    assert cache.count_unknown_scan("192.0.2.0/24", 600) == 1


def test_scans_counted_from_many_threads_are_all_counted(cache: OriginCache) -> None:
    def scan() -> None:
        for _ in range(25):
            cache.count_unknown_scan("330106", 600)

    threads = [threading.Thread(target=scan) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.count_unknown_scan("330106", 600) == 201


# -- expiry ----------------------------------------------------------------------------------

def test_in_memory_views_expire_after_their_ttl() -> None:
    clock = Clock()
    cache = InMemoryOriginCache(clock=clock)
    cache.set(code_key("C1"), VIEW, 30)
    clock.now += 29.9
    assert cache.get(code_key("C1")) == VIEW
    clock.now += 0.1
    assert cache.get(code_key("C1")) is None
    assert len(cache) == 0


def test_in_memory_scan_window_starts_with_the_first_scan_and_ends_by_itself() -> None:
    clock = Clock()
    cache = InMemoryOriginCache(clock=clock)
    cache.count_unknown_scan("330106", 600)
    clock.now += 599
    assert cache.count_unknown_scan("330106", 600) == 2  # a scan does not extend the window
    clock.now += 1
    assert cache.count_unknown_scan("330106", 600) == 1


def test_in_memory_cache_keeps_the_most_recently_used_views_within_its_bound() -> None:
    cache = InMemoryOriginCache(max_entries=2, max_places=2)
    cache.set(code_key("C1"), VIEW, 60)
    cache.set(code_key("C2"), VIEW, 60)
    cache.get(code_key("C1"))
    cache.set(code_key("C3"), VIEW, 60)
    assert cache.get(code_key("C2")) is None
    assert cache.get(code_key("C1")) == VIEW and cache.get(code_key("C3")) == VIEW
    for place in ("a", "b", "c"):
        cache.count_unknown_scan(place, 600)
    assert cache.count_unknown_scan("a", 600) == 1  # forgotten beyond the bound


def test_redis_views_and_scan_windows_carry_their_expiry(redis_prefix: str) -> None:
    import redis

    cache = RedisOriginCache(REDIS_URL, redis_prefix)
    client = redis.Redis.from_url(REDIS_URL)
    cache.set(code_key("C1"), VIEW, 30)
    assert 29_000 < client.pttl(redis_prefix + code_key("C1")) <= 30_000
    cache.count_unknown_scan("330106", 600)
    client.expire(redis_prefix + "unknown-scans:330106", 100)  # time has passed
    cache.count_unknown_scan("330106", 600)
    assert client.ttl(redis_prefix + "unknown-scans:330106") <= 100  # not extended
    client.close()
    cache.close()


def test_redis_keys_live_under_the_query_prefix() -> None:
    adapter = origin_cache(REDIS_URL)
    assert isinstance(adapter, RedisOriginCache) and adapter._prefix == "agritrace:query:"
    assert isinstance(origin_cache(None), InMemoryOriginCache)


def test_an_unreachable_redis_misses_and_never_raises() -> None:
    cache = RedisOriginCache("redis://127.0.0.1:1/0", "agritrace:query:test:")
    cache.set(code_key("C1"), VIEW, 60)
    assert cache.get(code_key("C1")) is None
    assert cache.get_origin("C1") == (None, None)
    cache.invalidate(["C1"], ["B1"])
    cache.clear()
    assert cache.count_unknown_scan("330106", 600) == 0
    assert not cache.ping()


# -- the near cache --------------------------------------------------------------------------

def _redis_client() -> Any:
    import redis

    return redis.Redis.from_url(REDIS_URL, socket_timeout=2)


def test_the_near_cache_serves_a_view_it_read_without_asking_redis_again(
        near: tuple[NearOriginCache, InvalidationListener], redis_prefix: str) -> None:
    cache, _ = near
    cache.set(code_key("C1"), {"state": "ACTIVE", "batch_id": "B1"}, 60)
    cache.set(batch_key("B1"), VIEW, 60)
    client = _redis_client()
    client.delete(redis_prefix + code_key("C1"), redis_prefix + batch_key("B1"))  # unannounced
    assert origin_views(cache, "C1") == ({"state": "ACTIVE", "batch_id": "B1"}, VIEW)
    client.close()


def test_an_invalidation_by_another_process_reaches_the_near_cache(
        near: tuple[NearOriginCache, InvalidationListener], redis_prefix: str) -> None:
    cache, _ = near
    worker = RedisOriginCache(REDIS_URL, redis_prefix)  # the query worker's cache
    for key in (code_key("C1"), code_key("C2"), batch_key("B1")):
        cache.set(key, VIEW, 60)
    eventually(lambda: worker.get(batch_key("B1")) == VIEW, timeout=5,
               what="the batch's fill written to Redis")
    worker.invalidate(["C1"], ["B1"])
    eventually(lambda: cache.get(code_key("C1")) is None and cache.get(batch_key("B1")) is None,
               timeout=5, what="the announced keys dropped")
    assert cache.get(code_key("C2")) == VIEW
    worker.clear()  # a rebuild: every view goes
    eventually(lambda: cache.get(code_key("C2")) is None, timeout=5, what="everything dropped")
    worker.close()


def test_without_its_subscription_the_near_cache_is_bypassed(redis_prefix: str) -> None:
    remote = RedisOriginCache(REDIS_URL, redis_prefix)
    cache = NearOriginCache(remote, InMemoryOriginCache())  # no listener started
    cache.set(code_key("C1"), VIEW, 60)
    assert cache.get(code_key("C1")) == VIEW
    client = _redis_client()
    client.delete(redis_prefix + code_key("C1"))
    assert cache.get(code_key("C1")) is None  # it asked Redis
    client.close()
    remote.close()


def test_a_fill_after_an_announced_change_is_skipped_here_and_in_redis(
        near: tuple[NearOriginCache, InvalidationListener], redis_prefix: str) -> None:
    """A scan misses, reads the read model, and meanwhile a change is announced: what it read
    may be stale, so it is not cached anywhere."""
    cache, _ = near
    assert cache.get_origin("C1") == (None, None)  # the miss
    cache.drop([code_key("C1")])  # an announcement arriving before the fill
    cache.set(code_key("C1"), VIEW, 60)
    client = _redis_client()
    assert client.get(redis_prefix + code_key("C1")) is None
    assert cache.get(code_key("C1")) is None
    cache.set(code_key("C1"), VIEW, 60)  # after a read of its own, a fill is kept
    assert cache.get(code_key("C1")) == VIEW
    client.close()


def subscribed_near(redis_prefix: str) -> tuple[NearOriginCache, RedisOriginCache]:
    """A near cache told it is subscribed, with no listener: the test writes its pending
    fills itself."""
    remote = RedisOriginCache(REDIS_URL, redis_prefix)
    cache = NearOriginCache(remote, InMemoryOriginCache())
    cache.subscribed(True)
    return cache, remote


def test_batch_views_reach_redis_when_the_pending_fills_are_written(
        redis_prefix: str) -> None:
    cache, remote = subscribed_near(redis_prefix)
    cache.set(code_key("C1"), {"state": "ACTIVE", "batch_id": "B1"}, 60)
    cache.set(batch_key("B1"), VIEW, 60)
    assert remote.get(batch_key("B1")) is None  # the scan did not wait for Redis
    assert cache.write_pending() == 1
    assert remote.get(batch_key("B1")) == VIEW
    assert remote.get(code_key("C1")) is None  # a code's view stays here
    assert cache.write_pending() == 0
    remote.close()


def test_an_announcement_before_the_write_drops_the_pending_fill(redis_prefix: str) -> None:
    cache, remote = subscribed_near(redis_prefix)
    cache.set(batch_key("B1"), VIEW, 60)
    cache.set(batch_key("B2"), VIEW, 60)
    cache.drop([batch_key("B1")])  # the worker changed B1 after this view was read
    assert cache.write_pending() == 1
    assert remote.get(batch_key("B1")) is None and remote.get(batch_key("B2")) == VIEW
    cache.set(batch_key("B3"), VIEW, 60)
    cache.drop(None)  # a rebuild's clear
    cache.set(batch_key("B4"), VIEW, 60)
    cache.subscribed(False)  # a lost subscription: nothing it kept is trusted
    assert cache.write_pending() == 0
    assert remote.get(batch_key("B3")) is None and remote.get(batch_key("B4")) is None
    remote.close()


class AnnouncingRedis(RedisOriginCache):
    """Redis whose announcement wakes the near cache's listener at once: its thread tries to
    write the pending fills while the invalidation is still under way."""

    near: NearOriginCache | None = None
    listener: threading.Thread | None = None

    def _wake_the_listener(self) -> None:
        near = self.near
        assert near is not None
        self.listener = threading.Thread(target=near.write_pending)
        self.listener.start()
        self.listener.join(timeout=0.5)  # it writes now, unless it has to wait

    def invalidate(self, codes: Any, batch_ids: Any) -> None:
        super().invalidate(codes, batch_ids)
        self._wake_the_listener()

    def clear(self) -> None:
        super().clear()
        self._wake_the_listener()


def test_an_invalidation_made_here_leaves_no_fill_for_the_listener_to_write_back(
        redis_prefix: str) -> None:
    remote = AnnouncingRedis(REDIS_URL, redis_prefix)
    cache = NearOriginCache(remote, InMemoryOriginCache())
    cache.subscribed(True)
    remote.near = cache
    cache.set(batch_key("B1"), VIEW, 60)
    cache.invalidate([], ["B1"])
    assert remote.listener is not None
    remote.listener.join()
    assert remote.get(batch_key("B1")) is None and cache.get(batch_key("B1")) is None
    cache.set(batch_key("B2"), VIEW, 60)
    cache.clear()
    remote.listener.join()
    assert remote.get(batch_key("B2")) is None
    remote.close()


def test_the_listener_writes_the_pending_fills(
        near: tuple[NearOriginCache, InvalidationListener], redis_prefix: str) -> None:
    cache, _ = near
    cache.set(batch_key("B1"), VIEW, 60)
    remote = RedisOriginCache(REDIS_URL, redis_prefix)
    eventually(lambda: remote.get(batch_key("B1")) == VIEW, timeout=5,
               what="the fill written by the listener's thread")
    remote.close()


def test_a_lost_subscription_empties_the_near_cache_until_it_listens_again(
        near: tuple[NearOriginCache, InvalidationListener], redis_prefix: str) -> None:
    cache, _ = near
    cache.set(code_key("C1"), VIEW, 60)
    client = _redis_client()
    client.delete(redis_prefix + code_key("C1"))  # unannounced: only memory still has it
    assert cache.get(code_key("C1")) == VIEW
    client.client_kill_filter(_type="pubsub")  # announcements may have been missed
    eventually(lambda: cache.get(code_key("C1")) is None, timeout=10,
               what="the near copy dropped")
    eventually(lambda: cache.is_subscribed, timeout=10, what="subscribed again")
    assert cache.get(code_key("C1")) is None  # a scan's miss, then its fill
    cache.set(code_key("C1"), VIEW, 60)
    client.delete(redis_prefix + code_key("C1"))
    assert cache.get(code_key("C1")) == VIEW  # served from memory again
    client.close()
