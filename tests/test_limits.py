"""The shared rate limit: RedisRateLimiter keeps RateLimiter's contract (0 = counted, else whole
seconds to wait) against a real redis-server, with one count across API servers."""

import socket
import time
import uuid

import pytest

from atelier.server.limits import RateLimiter, RedisRateLimiter


@pytest.fixture
def limiters(redis_url):
    """Makes RedisRateLimiters on the module's server, each test under a prefix of its own (the
    server is shared by the module), all closed afterwards."""
    prefix, made = f"test:{uuid.uuid4().hex}:", []

    def make(limit: int, window: float) -> RedisRateLimiter:
        made.append(RedisRateLimiter(redis_url, limit, window, prefix=prefix))
        return made[-1]

    yield make
    for limiter in made:
        limiter.close()


def test_the_limit_is_enforced_with_a_whole_second_wait_within_the_window(limiters):
    limiter = limiters(limit=3, window=30)
    assert [limiter.acquire("key") for _ in range(3)] == [0, 0, 0]
    for _ in range(2):   # refused requests are not counted, so the wait does not grow
        wait = limiter.acquire("key")
        assert isinstance(wait, int) and 1 <= wait <= 30


def test_two_servers_share_one_count(limiters):
    first, second = limiters(limit=4, window=30), limiters(limit=4, window=30)
    assert [first.acquire("key"), second.acquire("key"), first.acquire("key"), second.acquire("key")] == [0] * 4
    assert first.acquire("key") > 0
    assert second.acquire("key") > 0


def test_keys_are_independent(limiters):
    limiter = limiters(limit=1, window=30)
    assert limiter.acquire(1) == 0
    assert limiter.acquire(1) > 0
    assert limiter.acquire(2) == 0
    assert limiter.acquire("1-other") == 0


def test_the_window_slides(limiters):
    limiter = limiters(limit=2, window=1)
    assert [limiter.acquire("key"), limiter.acquire("key")] == [0, 0]
    assert limiter.acquire("key") == 1
    time.sleep(1.2)
    assert limiter.acquire("key") == 0


def test_the_key_expires_with_its_window(limiters, redis_url):
    """Idle keys leave Redis by themselves: no sweep is needed for keys that stop sending."""
    import redis

    limiter = limiters(limit=5, window=30)
    limiter.acquire("key")
    with redis.Redis.from_url(redis_url) as client:
        assert 29_000 < client.pttl(f"{limiter.prefix}key") <= 30_000


def test_the_in_memory_limiter_is_interchangeable():
    now = [0.0]
    limiter = RateLimiter(1, 10, clock=lambda: now[0])
    assert (limiter.acquire("key"), limiter.acquire("key")) == (0, 10)
    now[0] = 10.0
    assert limiter.acquire("key") == 0
    limiter.close()


def test_an_unreachable_redis_is_an_error_of_its_own_not_a_pass():
    from atelier.server.limits import LimiterUnavailable

    with socket.socket() as probe:       # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{port}/0", 3, 1.0)
    with pytest.raises(LimiterUnavailable, match="cannot be reached"):
        limiter.acquire("key")
    limiter.close()
