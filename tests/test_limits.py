"""The shared rate limit: RedisRateLimiter keeps RateLimiter's contract (an Allowance: wait 0 =
counted, else whole seconds to wait; what is left of the window) against a real redis-server, with
one count across API servers."""

import socket
import time
import uuid

import pytest

from atelier.server.limits import Allowance, RateLimiter, RedisRateLimiter


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
    assert [limiter.acquire("key").wait for _ in range(3)] == [0, 0, 0]
    for _ in range(2):   # refused requests are not counted, so the wait does not grow
        wait = limiter.acquire("key").wait
        assert isinstance(wait, int) and 1 <= wait <= 30


def test_an_allowance_says_what_is_left_of_the_window(limiters):
    limiter = limiters(limit=2, window=30)
    first, second, refused = (limiter.acquire("key") for _ in range(3))
    assert (first.wait, first.limit, first.remaining) == (0, 2, 1) and 29 < first.reset <= 30
    assert (second.remaining, refused.remaining) == (0, 0) and refused.wait > 0
    assert 29 < refused.reset <= second.reset == 30     # until the newest counted request leaves the window


def test_two_servers_share_one_count(limiters):
    first, second = limiters(limit=4, window=30), limiters(limit=4, window=30)
    assert [limiter.acquire("key").wait for limiter in (first, second, first, second)] == [0] * 4
    assert first.acquire("key").wait > 0
    assert second.acquire("key").wait > 0


def test_keys_are_independent(limiters):
    limiter = limiters(limit=1, window=30)
    assert limiter.acquire(1).wait == 0
    assert limiter.acquire(1).wait > 0
    assert limiter.acquire(2).wait == 0
    assert limiter.acquire("1-other").wait == 0


def test_the_window_slides(limiters):
    limiter = limiters(limit=2, window=1)
    assert [limiter.acquire("key").wait, limiter.acquire("key").wait] == [0, 0]
    assert limiter.acquire("key").wait == 1
    time.sleep(1.2)
    assert limiter.acquire("key").wait == 0


def test_the_key_expires_with_its_window(limiters, redis_url):
    """Idle keys leave Redis by themselves: no sweep is needed for keys that stop sending."""
    import redis

    limiter = limiters(limit=5, window=30)
    limiter.acquire("key")
    with redis.Redis.from_url(redis_url) as client:
        assert 29_000 < client.pttl(f"{limiter.prefix}key") <= 30_000


def test_the_in_memory_limiter_is_interchangeable():
    now = [0.0]
    limiter = RateLimiter(2, 10, clock=lambda: now[0])
    assert limiter.acquire("key") == Allowance(wait=0, limit=2, remaining=1, reset=10.0)
    now[0] = 4.0
    assert limiter.acquire("key") == Allowance(wait=0, limit=2, remaining=0, reset=10.0)
    now[0] = 5.0
    assert limiter.acquire("key") == Allowance(wait=5, limit=2, remaining=0, reset=9.0)   # refused: not counted
    now[0] = 10.0
    assert limiter.acquire("key") == Allowance(wait=0, limit=2, remaining=0, reset=10.0)
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
