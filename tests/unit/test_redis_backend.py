"""Unit tests of the Redis backend's pure parts: locations, the cache, keys; no server, no sleeps.

The backend against a real redis-server is tested by tests/contract (the shared contract and
test_redis_specifics.py).
"""

import subprocess
import sys
import threading

import pytest

from rpcmm.addressing import Endpoint
from rpcmm.backends.redis_cache import InvalidatedCache
from rpcmm.backends.redis_location import RedisLocation, location_from_seed_value, parse_redis_url
from rpcmm.backends.redis_schema import KeySchema
from rpcmm.errors import ConfigurationError, SeedError

pytestmark = pytest.mark.timeout(10)


# -- locations -------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, expected", [
    ("redis://10.0.0.1:6380", RedisLocation((Endpoint("10.0.0.1", 6380),))),
    ("redis://10.0.0.1", RedisLocation((Endpoint("10.0.0.1", 6379),))),
    ("redis://cache.example.org:6379/3", RedisLocation((Endpoint("cache.example.org", 6379),), db=3)),
    ("zmq+redis://127.0.0.1:6379", RedisLocation((Endpoint("127.0.0.1", 6379),))),
    ("rediss://[fd00::1]:6379", RedisLocation((Endpoint("fd00::1", 6379),), tls=True)),
    ("redis://:s3cret@h:1", RedisLocation((Endpoint("h", 1),), password="s3cret")),
    ("redis://user:p%40ss@h:1", RedisLocation((Endpoint("h", 1),), username="user", password="p@ss")),
    ("redis+sentinel://s1:26379,s2,[::1]:26380/mymaster",
     RedisLocation((Endpoint("s1", 26379), Endpoint("s2", 26379), Endpoint("::1", 26380)), service="mymaster")),
    ("zmq+redis+sentinel://s1/mymaster/2", RedisLocation((Endpoint("s1", 26379),), service="mymaster", db=2)),
])
def test_urls_parse_to_locations(url, expected):
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize("url, complaint", [
    ("http://h:1", "not a Redis URL"),
    ("h:6379", "not a Redis URL"),
    ("redis://a:1,b:2", "list several only with redis"),
    ("redis+sentinel://s1:26379", "names the service"),
    ("redis://h:1/zero", "must be a number"),
    ("redis://h:1/0/1", "unexpected path"),
    ("redis://h:1?db=2", "query options"),
    ("redis://h:0", "port 0"),
    ("redis://h:99999", "above 65535"),
    ("redis://,h:1", "empty host"),
])
def test_malformed_urls_say_what_is_wrong(url, complaint):
    with pytest.raises(ConfigurationError, match=complaint):
        parse_redis_url(url)


def test_passwords_never_appear_in_messages_or_str():
    with pytest.raises(ConfigurationError) as caught:
        parse_redis_url("redis://user:hunter2@h:1/x")
    assert "hunter2" not in str(caught.value)
    location = parse_redis_url("redis://user:hunter2@h:1/2")
    assert "hunter2" not in str(location) and "hunter2" not in repr(location)
    assert str(location) == "redis://user:***@h:1/2"


def test_location_str_round_trips_without_a_password():
    for url in ("redis://h:1/0", "rediss+sentinel://a:2,b:3/svc/4"):
        assert str(parse_redis_url(url)) == url


def test_a_bad_seed_value_is_a_seed_error_naming_the_key():
    with pytest.raises(SeedError) as caught:
        location_from_seed_value(["redis://h:1"], source="seed.json")
    assert caught.value.key == "rpcmm-redis"
    assert caught.value.path == "seed.json"


# -- the cache -------------------------------------------------------------------------------------

@pytest.fixture
def cache(clock):
    return InvalidatedCache(max_age=1.0, max_entries=100, clock=clock, lock=threading.Lock())


def test_an_answer_is_fresh_for_max_age_then_stale(cache, clock):
    assert cache.put("compute", ("a",), cache.generation)
    clock.advance(0.99)
    assert cache.fresh("compute") == ("a",)
    clock.advance(0.02)
    assert cache.fresh("compute") is None
    assert cache.stale("compute") == ("a",)


def test_a_change_message_makes_the_topic_stale_only_and_keeps_it_as_a_fallback(cache):
    # Kept: after a Redis restart every topic is re-announced, just while Redis may be
    # unreachable; dropping the entries left lookups with nothing to fall back on.
    cache.put("compute", ("a",), cache.generation)
    cache.put("network", ("b",), cache.generation)
    cache.make_stale(["compute"])
    assert cache.fresh("compute") is None and cache.stale("compute") == ("a",)
    assert cache.fresh("network") == ("b",)


def test_an_answer_fetched_before_an_invalidation_is_never_fresh(cache):
    generation = cache.generation
    cache.make_stale(["compute"])  # arrives while the lookup is in flight
    assert not cache.put("compute", ("old",), generation)
    assert cache.fresh("compute") is None
    assert cache.stale("compute") == ("old",)  # still better than nothing when Redis is down


def test_losing_the_channel_makes_everything_stale_but_kept(cache):
    cache.put("compute", ("a",), cache.generation)
    cache.age_all()
    assert cache.fresh("compute") is None
    assert cache.stale("compute") == ("a",)
    assert cache.put("compute", ("b",), cache.generation)
    assert cache.fresh("compute") == ("b",)


def test_max_age_zero_never_answers_fresh(clock):
    cache = InvalidatedCache(max_age=0, max_entries=10, clock=clock, lock=threading.Lock())
    cache.put("compute", ("a",), cache.generation)
    assert cache.fresh("compute") is None
    assert cache.stale("compute") == ("a",)


# -- keys and the optional dependency -------------------------------------------------------------------

def test_keys_of_hosts_and_topics_never_collide():
    keys = KeySchema("ns")
    assert keys.host_key("x") != keys.topic_key("x")
    assert keys.topic_key("host:x") != keys.host_key("x")
    assert keys.channel == "ns:changes"


def test_rpcmm_imports_without_redis_and_start_says_how_to_install_it():
    # A child interpreter where "import redis" fails, as on a machine without the extra.
    program = (
        "import sys; sys.modules['redis'] = None\n"
        "import rpcmm.backends.redis as backend\n"
        "from rpcmm.errors import ConfigurationError\n"
        "matchmaker = backend.RedisMatchmaker('redis://127.0.0.1:6379')\n"
        "try:\n"
        "    matchmaker.start()\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "pip install 'rpcmm[redis]'" in result.stdout


def test_constructing_does_no_io():
    from rpcmm.backends.redis import RedisMatchmaker

    matchmaker = RedisMatchmaker("redis://192.0.2.1:6379")  # a TEST-NET address: never reachable
    assert not matchmaker.started
    with pytest.raises(ConfigurationError):
        RedisMatchmaker("redis://h:1", lookup_timeout=0)
