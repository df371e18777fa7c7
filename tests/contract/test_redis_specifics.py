"""What only the Redis backend does, on real redis-server processes: the data model, one round
trip per lookup, pub/sub cache invalidation, reconnection, Sentinel failover, and the CI rule
for a missing redis-server."""

import time

import pytest

from rpcmm.addressing import Fanout
from rpcmm.errors import RegistryUnavailable
from rpcmm.testing import wait_for
from tests.contract.backends import FAST
from tests.contract.redis_process import RedisProcess, redis_executable

pytest.importorskip("redis", reason="redis-py is not installed (pip install 'rpcmm[redis]')")

#: A cache age no test waits out: a change seen sooner came through pub/sub.
LONG_CACHE = 60.0


@pytest.fixture
def make(redis_backend):
    """make(url=None, **options): a started RedisMatchmaker in this test's namespace."""
    return redis_backend.make_with


@pytest.fixture
def redis_client(redis_server):
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture
def workdir(tmp_path):
    return str(tmp_path)


# -- data model ----------------------------------------------------------------------------------

def test_a_host_has_one_liveness_key_whatever_its_topic_count(make, redis_client, redis_namespace):
    provider = make()
    for topic in ("compute", "network", "storage"):
        provider.register(topic, "host-a")
    host_key = f"{redis_namespace}:host:host-a"
    assert redis_client.smembers(host_key) == {"compute", "network", "storage"}
    assert 0 < redis_client.pttl(host_key) <= FAST.ttl * 1000
    topic_keys = redis_client.keys(f"{redis_namespace}:topic:*")
    assert sorted(topic_keys) == sorted(f"{redis_namespace}:topic:{t}" for t in ("compute", "network", "storage"))
    assert all(redis_client.pttl(key) == -1 for key in topic_keys)  # the index never expires on its own


def test_an_expired_host_is_pruned_from_the_topic_index(make, redis_client, redis_namespace):
    provider, client = make(), make(cache_max_age=0)
    provider.register("compute", "host-a")
    wait_for(lambda: client.lookup(Fanout("compute")) == (), what="host-a expired")
    assert redis_client.exists(f"{redis_namespace}:topic:compute") == 0


def test_unregistering_everything_leaves_no_keys(make, redis_client, redis_namespace):
    provider = make()
    provider.register("compute", "host-a")
    provider.register("network", "host-a")
    provider.unregister("compute", "host-a")
    provider.unregister("network", "host-a")
    assert redis_client.keys(f"{redis_namespace}:*") == []


def test_a_lookup_is_one_round_trip(make, monkeypatch):
    import redis.connection

    client = make(cache_max_age=0)
    provider = make()
    for index in range(10):
        provider.register("compute", f"host-{index}")
    client.lookup(Fanout("compute"))  # loads the script once
    sent = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        sent.append(command)
        return original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    assert len(client.lookup(Fanout("compute"))) == 10
    # Only data commands count: the pub/sub connection's periodic health-check PING may fall in
    # the same instant on a loaded machine.
    data = [c for c in sent if b"PING" not in b"".join(c if isinstance(c, list) else [c])[:64]]
    assert len(data) == 1, sent


# -- pub/sub and the cache ----------------------------------------------------------------------------

def test_changes_reach_other_caches_through_pubsub(make):
    provider, client = make(), make(cache_max_age=LONG_CACHE)
    assert client.wait_subscribed(5)
    provider.start_heartbeat()
    assert client.lookup(Fanout("compute")) == ()  # cached for LONG_CACHE
    provider.register("compute", "host-a")
    wait_for(lambda: client.lookup(Fanout("compute")) == ("host-a",), what="register seen via pub/sub")
    provider.unregister("compute", "host-a")
    wait_for(lambda: client.lookup(Fanout("compute")) == (), what="unregister seen via pub/sub")


def test_changes_missed_while_unsubscribed_are_not_served_from_cache(make, redis_client, redis_namespace):
    provider, client = make(), make(cache_max_age=LONG_CACHE)
    provider.start_heartbeat()
    assert client.wait_subscribed(5)
    assert client.lookup(Fanout("compute")) == ()  # cached for LONG_CACHE
    # Cut the change channel; the change below is published while nobody listens.
    redis_client.client_kill_filter(_type="pubsub")
    provider.register("compute", "host-a")
    channel = f"{redis_namespace}:changes"
    wait_for(lambda: dict(redis_client.pubsub_numsub(channel))[channel] == 2, what="both resubscribed")
    assert client.wait_subscribed(5)
    # No lookup ran in between: only resubscribing could have dropped the cached answer.
    assert client.lookup(Fanout("compute")) == ("host-a",)


def test_stop_closes_every_connection(make, redis_client):
    def clients():
        return len(redis_client.client_list())

    before = clients()
    matchmaker = make()
    matchmaker.register("compute", "host-a")
    assert matchmaker.wait_subscribed(5)
    assert clients() > before
    matchmaker.stop()
    wait_for(lambda: clients() == before, what="connections closed")


def test_expiry_events_drop_cached_hosts_when_the_server_sends_them(make, redis_client):
    redis_client.config_set("notify-keyspace-events", "Ex")
    try:
        provider, client = make(), make(cache_max_age=LONG_CACHE)
        assert client.wait_subscribed(5)
        provider.register("compute", "host-a")
        wait_for(lambda: client.lookup(Fanout("compute")) == ("host-a",), what="host-a visible")
        wait_for(lambda: client.lookup(Fanout("compute")) == (), what="expiry seen via keyspace event")
    finally:
        redis_client.config_set("notify-keyspace-events", "")


def test_a_restarted_server_is_found_again_and_refilled_by_heartbeats(make, workdir):
    server = RedisProcess(redis_executable(), workdir).start()
    try:
        provider, client = make(server.url), make(server.url, cache_max_age=0)
        provider.register("compute", "host-a")
        provider.start_heartbeat()
        assert client.lookup(Fanout("compute")) == ("host-a",)
        server.stop()
        # Unreachable: the last answer is served rather than an error.
        assert client.lookup(Fanout("compute")) == ("host-a",)
        with pytest.raises(RegistryUnavailable):
            client.lookup(Fanout("never-asked"))
        server.start(port=server.port)
        # The new server starts empty; the provider's next heartbeat announces host-a again.
        wait_for(lambda: client.lookup(Fanout("compute")) == ("host-a",) and client.wait_subscribed(0),
                 what="host-a back and change channel resubscribed")
    finally:
        server.stop()


def test_a_topic_that_changed_is_still_answered_from_cache_while_the_server_is_down(make, workdir):
    # A change message makes the entry stale; it must stay as the fallback (it was dropped,
    # so a topic that changed just before an outage raised RegistryUnavailable).
    server = RedisProcess(redis_executable(), workdir).start()
    try:
        provider, client = make(server.url), make(server.url, cache_max_age=LONG_CACHE)
        assert client.wait_subscribed(5)
        provider.register("compute", "host-a")
        wait_for(lambda: client.lookup(Fanout("compute")) == ("host-a",), what="host-a visible")
        generation = client.cache.generation
        provider.register("compute", "host-b")  # the change message reaches the client's cache
        wait_for(lambda: client.cache.generation > generation, what="change message seen")
        server.stop()
        assert client.lookup(Fanout("compute")) == ("host-a",)  # stale, but better than nothing
    finally:
        server.stop()


def test_a_host_this_process_unregistered_is_not_its_fallback_answer(make, workdir):
    # Its own change drops the entry (a change message from others only makes it stale).
    server = RedisProcess(redis_executable(), workdir).start()
    try:
        matchmaker = make(server.url, cache_max_age=LONG_CACHE)
        matchmaker.register("compute", "host-a")
        assert matchmaker.lookup(Fanout("compute")) == ("host-a",)
        server.stop()
        matchmaker.unregister("compute", "host-a")
        with pytest.raises(RegistryUnavailable):
            matchmaker.lookup(Fanout("compute"))
    finally:
        server.stop()


def test_a_hung_server_costs_a_lookup_one_timeout_and_a_stop_one_round_trip(make, workdir):
    # Timeouts are not retried (a hung server cost a lookup two timeouts) and stop() withdraws
    # every host in one pipeline (five hosts cost it nine seconds at a 0.5 s timeout).
    server = RedisProcess(redis_executable(), workdir).start()
    try:
        matchmaker = make(server.url, lookup_timeout=1.0, cache_max_age=0)
        for i in range(5):
            matchmaker.register("compute", f"host-{i}")
        assert len(matchmaker.hosts("compute")) == 5
        server.pause()
        started = time.monotonic()
        assert len(matchmaker.hosts("compute")) == 5  # the stale answer, after one timeout
        assert time.monotonic() - started < 1.7
        started = time.monotonic()
        matchmaker.stop()
        assert time.monotonic() - started < 3.0
    finally:
        server.resume()
        server.stop()


# -- Sentinel -------------------------------------------------------------------------------------------

SENTINEL_CONFIG = """\
sentinel monitor rpcmm 127.0.0.1 {master_port} 1
sentinel down-after-milliseconds rpcmm 1000
sentinel failover-timeout rpcmm 5000
"""


@pytest.fixture
def sentinel_cluster(workdir):
    """A master, a replica and one Sentinel watching them as service "rpcmm"."""
    executable = redis_executable()
    started = []
    try:
        master = RedisProcess(executable, workdir).start()
        started.append(master)
        replica = RedisProcess(executable, workdir).start()
        started.append(replica)
        with replica.client() as client:
            client.replicaof("127.0.0.1", master.port)
        sentinel = RedisProcess(executable, workdir, ["--sentinel"],
                                config=SENTINEL_CONFIG.format(master_port=master.port)).start()
        started.append(sentinel)
        yield master, replica, sentinel
    finally:
        for process in reversed(started):
            process.stop()


def _master_port(sentinel):
    with sentinel.client() as client:
        return int(client.sentinel_get_master_addr_by_name("rpcmm")[1])


def _sentinel_knows_a_replica(sentinel):
    with sentinel.client() as client:
        return any(not replica["is_sdown"] for replica in client.sentinel_slaves("rpcmm"))


def _replica_in_sync(replica):
    with replica.client() as client:
        return client.info("replication").get("master_link_status") == "up"


@pytest.mark.timeout(40)
def test_sentinel_finds_the_master_and_follows_a_failover(sentinel_cluster, make):
    master, replica, sentinel = sentinel_cluster
    url = f"redis+sentinel://{sentinel.address}/rpcmm"
    provider, client = make(url), make(url, cache_max_age=0)
    provider.register("compute", "host-a")
    provider.start_heartbeat()
    assert client.lookup(Fanout("compute")) == ("host-a",)
    wait_for(lambda: _replica_in_sync(replica), timeout=10, what="replica in sync")
    wait_for(lambda: _sentinel_knows_a_replica(sentinel), timeout=15, what="Sentinel found the replica")
    with sentinel.client() as admin:
        admin.execute_command("SENTINEL", "FAILOVER", "rpcmm")
    wait_for(lambda: _master_port(sentinel) == replica.port, timeout=20, what="Sentinel promoted the replica")
    provider.register("network", "host-b")  # written to the new master
    wait_for(lambda: client.lookup(Fanout("network")) == ("host-b",), timeout=10, what="lookups on the new master")
    assert client.lookup(Fanout("compute")) == ("host-a",)


# -- the CI rule ------------------------------------------------------------------------------------------

def test_missing_redis_server_fails_under_ci(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the Redis tests"):
        redis_executable()


def test_missing_redis_server_skips_outside_ci(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="redis-server is not installed"):
        redis_executable()
