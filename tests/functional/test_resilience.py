"""Live caches, peer warm-up, self-preservation and client reports, over real zmq."""

import time

import pytest

from rpcmm.backends.registry import RegistryMatchmaker
from rpcmm.preservation import ExpiryGuard
from rpcmm.protocol import State
from rpcmm.testing import wait_for
from rpcmm.timing import HeartbeatTiming

FAST = HeartbeatTiming(interval=0.05, ttl=0.3)


@pytest.fixture
def matchmakers(make_matchmaker):
    return make_matchmaker


def test_a_change_reaches_a_subscribed_cache_within_milliseconds(start_server, seed_for, matchmakers):
    server = start_server(tick_interval=0.05)
    seed = seed_for(server)
    host_side = matchmakers(seed, live=False)
    client = matchmakers(seed, cache_max_age=60.0)  # without the feed, it would wait a minute
    host_side.register("t", "h1")
    wait_for(lambda: client.hosts("t") == ("h1",))
    wait_for(lambda: client._feed.live_epoch == server.epoch)
    lookups_before = server.stats.lookups
    delays = []
    for i in range(2, 7):
        host_side.register("t", f"h{i}")
        changed = time.monotonic()
        wait_for(lambda: f"h{i}" in client.hosts("t"), timeout=2, poll=0.0005)
        delays.append(time.monotonic() - changed)
    assert server.stats.lookups == lookups_before  # every answer came from the cache
    assert max(delays) < 0.1, delays
    assert client._feed.stats["deltas"] >= 5 and client._feed.stats["gaps"] == 0


def test_if_the_live_feed_dies_its_answers_stop_being_trusted(start_server, seed_for, matchmakers, clock):
    server = start_server(tick_interval=0.05)
    seed = seed_for(server)
    host_side = matchmakers(seed, live=False)
    host_side.register("t", "h1")
    host_side.start_heartbeat()  # h1 stays registered (FAST timing: a 0.3 s TTL)
    # The client's cache and feed read an injected clock: the answers' ages are the test's to set.
    client = matchmakers(seed, cache_max_age=1.0, live_max_age=60.0, clock=clock)
    wait_for(lambda: client.hosts("t") == ("h1",))
    wait_for(lambda: client._feed.live_epoch == server.epoch and client.cache._entries["t"][3] == server.epoch)
    lookups = server.stats.lookups

    def broken(now):
        raise RuntimeError("a bug in the feed")

    client._feed._check_liveness = broken  # the feed's thread dies on its next pass
    wait_for(lambda: client._feed.live_epoch is None, timeout=5)
    assert client.hosts("t") == ("h1",) and server.stats.lookups == lookups  # within max_age: cached
    clock.advance(1.0)  # past max_age: a live answer would still be fresh, a plain one is not
    assert client.hosts("t") == ("h1",) and server.stats.lookups == lookups + 1


def test_a_restarted_registry_is_a_new_epoch_and_caches_reload(start_server, seed_for, matchmakers):
    server = start_server(tick_interval=0.05)
    seed = seed_for(server)
    host_side = matchmakers(seed, live=False)
    client = matchmakers(seed, cache_max_age=60.0)
    host_side.register("t", "h1")
    host_side.start_heartbeat()
    wait_for(lambda: client.hosts("t") == ("h1",))
    wait_for(lambda: client._feed.live_epoch == server.epoch)
    old_epoch = server.epoch
    server.stop()
    restarted = start_server(server.endpoint, tick_interval=0.05)
    assert restarted.epoch != old_epoch
    host_side.register("t", "h2")
    wait_for(lambda: sorted(client.hosts("t")) == ["h1", "h2"], timeout=5)


def test_a_restarted_registry_warms_up_from_a_peer_before_any_heartbeat(start_server, seed_for, matchmakers):
    first, second = start_server(), start_server()
    seed = seed_for(first, second)
    slow = HeartbeatTiming(interval=30.0, ttl=90.0)  # no heartbeat will come during this test
    host_side = matchmakers(seed, timing=slow)
    for i in range(50):
        host_side.register("t", f"h{i}")
    wait_for(lambda: len(first.table) == 50 and len(second.table) == 50)
    second.stop()
    restarted = start_server(second.endpoint, peers=[first.endpoint, second.endpoint])
    started = time.monotonic()
    wait_for(lambda: restarted.state is State.UP, timeout=5)
    assert len(restarted.table) == 50 and restarted.synced_from == str(first.endpoint)
    assert time.monotonic() - started < 1.0


def test_clients_prefer_an_up_registry_to_a_warming_one(start_server, seed_for, matchmakers):
    up = start_server()
    # A warming registry whose only peer never answers stays warming for peer_timeout.
    warming = start_server(peers=[protocol_endpoint_nobody_serves()], peer_timeout=30.0)
    seed = seed_for(warming, up)
    host_side = matchmakers(seed)
    host_side.register("t", "h1")
    wait_for(lambda: len(up.table) == 1 and len(warming.table) == 1)
    client = matchmakers(seed, cache_max_age=0.0, live=False)
    client._client._preferred = 0  # it asks the warming one first...
    assert warming.state is State.WARMING
    assert client.hosts("t") == ("h1",)
    assert client.preferred_registry == up.endpoint  # ...and settles on the up one


def protocol_endpoint_nobody_serves():
    from rpcmm.addressing import Endpoint

    return Endpoint("127.0.0.1", 9)  # the discard port: nothing listens there


def test_a_silenced_table_is_held_and_every_answer_says_degraded(start_server, seed_for, matchmakers):
    server = start_server(guard=ExpiryGuard(fraction=0.5, min_hosts=5, max_hold=30.0), sweep_interval=0.02)
    seed = seed_for(server)
    host_side = matchmakers(seed)
    for i in range(10):
        host_side.register("t", f"h{i}")
    host_side.start_heartbeat()
    wait_for(lambda: len(server.table) == 10)
    host_side.stop_heartbeat()  # as if the registry had been cut off from every host
    wait_for(lambda: server.state is State.DEGRADED, timeout=5)
    client = matchmakers(seed, cache_max_age=0.0, live=False)
    answer, _ = client._client.lookup("t")
    assert answer.state is State.DEGRADED and len(answer.hosts) == 10 and answer.data_age >= FAST.ttl
    host_side.start_heartbeat()  # heartbeats are back
    wait_for(lambda: server.state is State.UP, timeout=5)
    assert len(server.table) == 10


def test_a_degraded_registrys_feed_does_not_keep_answers_live(start_server, seed_for, matchmakers, clock):
    server = start_server(guard=ExpiryGuard(fraction=0.5, min_hosts=5, max_hold=30.0), sweep_interval=0.02,
                          tick_interval=0.05)
    seed = seed_for(server)
    host_side = matchmakers(seed, live=False)
    for i in range(10):
        host_side.register("t", f"h{i}")
    host_side.start_heartbeat()
    wait_for(lambda: len(server.table) == 10)
    client = matchmakers(seed, cache_max_age=0.5, live_max_age=60.0, clock=clock)  # ages: the test's
    wait_for(lambda: len(client.hosts("t")) == 10 and client._feed.live_epoch == server.epoch)
    client.cache.invalidate("t")
    assert len(client.hosts("t")) == 10  # stored live: fresh for a minute while the registry is UP
    host_side.stop_heartbeat()  # as if the registry had been cut off from every host
    wait_for(lambda: server.state is State.DEGRADED, timeout=5)
    wait_for(lambda: not client._feed._source_up, timeout=5)  # its feed has said so
    lookups = server.stats.lookups
    clock.advance(0.5)  # past max_age: a live answer would still be fresh, a plain one is not
    assert len(client.hosts("t")) == 10 and server.stats.lookups == lookups + 1  # asked again


def test_reports_from_two_clients_drop_a_host_early_but_one_cannot(start_server, seed_for, matchmakers):
    server = start_server()
    seed = seed_for(server)
    # 1.5 intervals of silence after a report confirm it: 0.75 s here, so a heartbeat merely
    # delayed by a loaded machine is not taken for a missed one.
    slow = HeartbeatTiming(interval=0.5, ttl=60.0)
    zombie_side = matchmakers(seed, timing=slow)
    zombie_side.register("t", "zombie")
    zombie_side.start_heartbeat()
    healthy_side = matchmakers(seed, timing=slow)
    healthy_side.register("t", "healthy")
    healthy_side.start_heartbeat()
    wait_for(lambda: len(server.table) == 2)
    first, second = matchmakers(seed, live=False), matchmakers(seed, live=False)
    for _ in range(5):
        first.report_unreachable("healthy")  # one client, however insistent
    wait_for(lambda: server.stats.suspected >= 5)
    time.sleep(0.5)  # several heartbeat intervals of real time: the healthy host stays
    assert "healthy" in server.table
    first.report_unreachable("zombie")
    second.report_unreachable("zombie")
    wait_for(lambda: "zombie" not in server.table, timeout=2)  # long before its 60 s TTL
    assert server.stats.dropped_suspects == 1


def test_status_reports_state_size_epoch_and_peer_sync(start_server, seed_for, matchmakers):
    first = start_server()
    second = start_server(peers=[first.endpoint])
    seed = seed_for(first, second)
    host_side = matchmakers(seed)
    host_side.register("t", "h1")
    wait_for(lambda: len(first.table) == 1 and len(second.table) == 1)
    client = matchmakers(seed, live=False)
    (e1, h1), (e2, h2) = client.status()
    assert (e1, e2) == (first.endpoint, second.endpoint)
    assert h1.state is State.UP and h1.hosts == 1 and h1.registrations == 1 and h1.epoch == first.epoch
    assert h1.feed_port == first.feed_port and h1.synced_age == -1.0
    assert h2.synced_from == str(first.endpoint) and h2.synced_age >= 0


def test_status_of_a_dead_registry_is_none(start_server, seed_for, matchmakers):
    server = start_server()
    seed = seed_for(server)
    client = matchmakers(seed, live=False, lookup_timeout=0.1)
    server.stop()
    assert client.status() == [(server.endpoint, None)]


def test_a_cold_start_with_no_registry_uses_the_cache_file(start_server, seed_for, matchmakers, tmp_path):
    server = start_server()
    seed = seed_for(server)
    path = str(tmp_path / "cache.json")
    host_side = matchmakers(seed)
    host_side.register("t", "h1")
    first_run = RegistryMatchmaker(seed, cache_file=path).start()
    wait_for(lambda: first_run.hosts("t") == ("h1",))
    first_run.stop()  # writes the file
    server.stop()
    with RegistryMatchmaker(seed, cache_file=path, lookup_timeout=0.1) as cold:
        assert cold.hosts("t") == ("h1",)
