"""Registry servers in threads and RegistryMatchmaker clients, over real zmq on 127.0.0.1."""

import threading
import time

import pytest
import zmq

from rpcmm import protocol
from rpcmm.addressing import Anycast, Directed, Endpoint, Fanout
from rpcmm.backends.registry import RegistryMatchmaker
from rpcmm.client import RegistryClient
from rpcmm.errors import EndpointInUse, ProtocolError, RegistryUnavailable
from rpcmm.testing import wait_for
from rpcmm.timing import HeartbeatTiming

FAST = HeartbeatTiming(interval=0.05, ttl=0.3)


@pytest.fixture
def matchmakers(make_matchmaker):
    """Matchmakers with the cache off: every lookup asks a registry."""
    return lambda seed, **kwargs: make_matchmaker(seed, **{"cache_max_age": 0.0, **kwargs})


def test_register_lookup_unregister(start_server, seed_for, matchmakers):
    server = start_server()
    seed = seed_for(server)
    host_side, client = matchmakers(seed), matchmakers(seed)
    host_side.register("scheduler", "c1.example.org")
    host_side.register("scheduler", "c2")
    wait_for(lambda: client.hosts("scheduler") == ("c1.example.org", "c2"))
    assert client.lookup(Directed("scheduler", "c2")) == ("c2",)
    assert [client.lookup(Anycast("scheduler"))[0] for _ in range(3)] == ["c1.example.org", "c2", "c1.example.org"]
    host_side.unregister("scheduler", "c1.example.org")
    wait_for(lambda: client.hosts("scheduler") == ("c2",))
    assert client.lookup(Fanout("nobody")) == ()


def test_a_silent_host_leaves_within_ttl_plus_one_sweep(start_server, seed_for, matchmakers):
    server = start_server(sweep_interval=0.05)
    seed = seed_for(server)
    host_side, client = matchmakers(seed), matchmakers(seed)
    host_side.register("t", "h1")
    host_side.start_heartbeat()
    wait_for(lambda: client.hosts("t") == ("h1",))
    time.sleep(FAST.ttl * 2)  # real time passing is the point here: heartbeats keep it alive
    assert client.hosts("t") == ("h1",)
    host_side.stop_heartbeat()
    silent_since = time.monotonic()
    wait_for(lambda: client.hosts("t") == (), timeout=5)
    gone_after = time.monotonic() - silent_since
    assert gone_after <= FAST.ttl + server.sweep_interval + 0.2  # plus one lookup's latency


def test_stop_unregisters_at_once(start_server, seed_for, matchmakers):
    server = start_server()
    seed = seed_for(server)
    client = matchmakers(seed)
    host_side = RegistryMatchmaker(seed, timing=HeartbeatTiming(1.0, 60.0)).start()
    host_side.register("t", "h1")
    wait_for(lambda: client.hosts("t") == ("h1",))
    host_side.stop()
    wait_for(lambda: client.hosts("t") == (), timeout=2)  # long before its 60 s TTL


def test_lookups_fail_over_when_a_registry_dies(start_server, seed_for, matchmakers):
    first, second = start_server(), start_server()
    seed = seed_for(first, second)
    host_side, client = matchmakers(seed), matchmakers(seed)
    host_side.register("t", "h1")
    host_side.start_heartbeat()
    wait_for(lambda: first.table.hosts_for("t") and second.table.hosts_for("t"))
    client._client._preferred = 0  # it asks the first registry first...
    assert client.hosts("t") == ("h1",)
    first.stop()  # ...which then dies
    for _ in range(20):
        assert client.hosts("t") == ("h1",)


def test_a_restarted_registry_has_its_table_back_within_one_interval(start_server, seed_for, matchmakers):
    server = start_server()
    seed = seed_for(server)
    interval = 0.6  # at least two of the longest reconnect delays (0.3 s), as with the 1 s default
    host_side = matchmakers(seed, timing=HeartbeatTiming(interval, 2.0))
    for topic in ("a", "b", "c"):
        host_side.register(topic, "h1")
    host_side.start_heartbeat()
    wait_for(lambda: len(server.table) == 1)
    server.stop()
    restarted = start_server(server.endpoint)  # same port, empty table
    restarted_at = time.monotonic()
    wait_for(lambda: server_has(restarted, "h1", ("a", "b", "c")), timeout=5)
    # The next heartbeat comes within one interval; if the client's socket has not reconnected
    # yet (it retries every 100-300 ms), it is queued and flushed when it does.
    assert time.monotonic() - restarted_at <= interval + 0.3  # scheduling slack, shared cores


def server_has(server, host, topics):
    return all(host in server.table.hosts_for(t) for t in topics)


def test_stale_cache_then_unavailable_when_every_registry_is_down(start_server, seed_for, matchmakers):
    server = start_server()
    seed = seed_for(server, ring={"ringed": ["s1"]})
    host_side = matchmakers(seed)
    client = matchmakers(seed, cache_max_age=0.01, lookup_timeout=0.1)
    host_side.register("t", "h1")
    wait_for(lambda: client.hosts("t") == ("h1",))
    server.stop()
    assert client.hosts("t") == ("h1",)  # stale cache
    assert client.hosts("ringed") == ("s1",)  # static ring
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable):
        client.hosts("never-looked-up")
    assert time.monotonic() - started < 1.0


def test_binding_a_taken_endpoint_is_a_clear_error(start_server):
    server = start_server()
    with pytest.raises(EndpointInUse, match=str(server.endpoint.port)):
        start_server(server.endpoint)


def test_a_start_that_fails_after_binding_releases_every_socket():
    # The loop's thread cannot start: whatever start() opened must be closed, or the owner's
    # context.term() waits for ever.
    import threading

    import zmq

    from rpcmm.runtime import Runtime
    from rpcmm.server import RegistryServer

    class NoThreads(Runtime):
        def spawn_native(self, fn, name):
            raise RuntimeError("can't start new thread")

    context = zmq.Context()
    server = RegistryServer("127.0.0.1:0", runtime=NoThreads("threading", zmq), context=context)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        server.start()
    terming = threading.Thread(target=context.term, daemon=True)
    terming.start()
    terming.join(5)
    assert not terming.is_alive(), "a socket of the failed start was left open"
    server.stop()  # nothing to stop: still fine


def test_stopping_a_registry_whose_loop_is_stuck_returns(caplog):
    # A loop that does not end (a bug, a handler that blocks) must not make stop() hang in
    # context.term() for ever: it gives up after its timeout, says so, and leaves the sockets.
    import threading

    from rpcmm.server import RegistryServer

    release = threading.Event()
    server = RegistryServer("127.0.0.1:0")
    server._serve = lambda: release.wait(30)  # never reads its wake-up
    server.start()
    stopper = threading.Thread(target=server.stop, kwargs={"timeout": 0.2})
    stopper.start()
    stopper.join(5)
    try:
        assert not stopper.is_alive(), "stop() hung on a stuck loop"
        assert "did not stop within 0.2s" in caplog.text
    finally:
        release.set()
        server._close_sockets()
        server._context.term()


def test_a_live_feed_followed_after_it_stopped_ignores_it():
    # A lookup racing the matchmaker's stop() asks the stopped feed to follow a topic.
    from rpcmm.addressing import Endpoint
    from rpcmm.cache import LookupCache
    from rpcmm.clock import SYSTEM_CLOCK
    from rpcmm.feed import LiveFeed
    from rpcmm.runtime import THREADING

    feed = LiveFeed(LookupCache(), THREADING, SYSTEM_CLOCK, timeout=0.05).start()
    feed.stop()
    feed.follow(Endpoint("127.0.0.1", 9), "t")  # no error


def test_a_live_feed_follows_no_more_topics_than_its_cache_holds():
    # Every topic ever looked up was followed for good: memory, subscriptions, and after a
    # registry restart a snapshot of each, crowding the topics in use out of the cache.
    from rpcmm.addressing import Endpoint
    from rpcmm.cache import LookupCache
    from rpcmm.clock import SYSTEM_CLOCK
    from rpcmm.feed import LiveFeed
    from rpcmm.runtime import THREADING

    cache = LookupCache(max_entries=50)
    feed = LiveFeed(cache, THREADING, SYSTEM_CLOCK, timeout=0.05).start()
    try:
        nobody = Endpoint("127.0.0.1", 9)
        cache.put("t1", ("h",), 0.0)
        for n in range(50):
            feed.follow(nobody, f"t{n}")
        feed.follow(nobody, "t0")  # followed again: now the most recent
        feed.follow(nobody, "t50")  # one too many: the least recent, t1, goes
        assert "t0" in feed._following and "t1" not in feed._following
        for n in range(51, 500):
            feed.follow(nobody, f"t{n}")
        assert len(feed._following) == 50
        wait_for(lambda: not feed._commands, timeout=5)
        wait_for(lambda: len(feed._topics) == 50, timeout=5)
        assert set(feed._topics) == {f"t{n}" for n in range(450, 500)}
        assert cache.fresh("t1", 0.0) is None and cache.stale("t1") == ("h",)  # asked again next time
    finally:
        feed.stop()


def test_following_from_many_threads_keeps_the_subscriptions_and_the_bookkeeping_equal():
    # follow() from several threads with a small cache: the topics the feed believes it
    # follows must be the ones its loop subscribes to (before its lock, a topic evicted by
    # one thread and followed again by another could end up believed followed, unsubscribed).
    import random
    import sys
    import threading
    import time

    from rpcmm.addressing import Endpoint
    from rpcmm.cache import LookupCache
    from rpcmm.clock import SYSTEM_CLOCK
    from rpcmm.feed import LiveFeed
    from rpcmm.runtime import THREADING

    endpoint, topics, errors = Endpoint("127.0.0.1", 9), [f"t{i}" for i in range(6)], []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up fast
    try:
        for trial in range(60):
            feed = LiveFeed(LookupCache(max_entries=3), THREADING, SYSTEM_CLOCK)  # unstarted: commands pile up
            stop_at = time.monotonic() + 0.03

            def follow_some(k, feed=feed, stop_at=stop_at, trial=trial):
                pick = random.Random(trial * 10 + k).choice
                for _ in range(20_000):
                    if time.monotonic() > stop_at:
                        return
                    try:
                        feed.follow(endpoint, pick(topics))
                    except Exception as exc:
                        errors.append(repr(exc))

            threads = [threading.Thread(target=follow_some, args=(k,)) for k in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
            subscribed = set()  # what the loop would subscribe to, replaying its commands
            for kind, _, topic in feed._commands:
                (subscribed.add if kind == "follow" else subscribed.discard)(topic)
            assert set(feed._following) == subscribed, f"trial {trial}"
    finally:
        sys.setswitchinterval(interval)
    assert errors == []


def test_a_joining_host_whose_timing_is_clamped_is_logged_with_both(start_server, context, caplog):
    import logging

    from rpcmm.client import RegistryClient

    caplog.set_level(logging.INFO, logger="rpcmm.server")
    server = start_server()
    client = RegistryClient([server.endpoint], context, timeout=2.0).start()
    try:
        client.cast(protocol.Heartbeat((
            protocol.HostState("eager", 0.01, 1000.0, ("t",)),  # beyond both bounds
            protocol.HostState("plain", 1.0, 3.0, ("t",)),
        )))
        wait_for(lambda: server.stats.joined == 2)
    finally:
        client.close()
    assert ("host eager joined: t (declared interval 0.01s and TTL 1000s; the registry's bounds apply "
            "0.05s and 600s)") in caplog.text
    assert "host plain joined: t\n" in caplog.text


def test_hostile_messages_are_dropped_and_harm_nobody(start_server, seed_for, matchmakers, context):
    server = start_server()
    seed = seed_for(server)
    host_side, client = matchmakers(seed), matchmakers(seed)
    host_side.register("t", "good")
    wait_for(lambda: client.hosts("t") == ("good",))
    attacker = context.socket(zmq.DEALER)
    attacker.setsockopt(zmq.LINGER, 0)
    attacker.connect(server.endpoint.zmq_address())
    garbage = [
        b"", b"\xff\xfe", b"\x93\x01\x01", protocol.encode(protocol.Hosts(1, ("x",))),
        b"\x94\x02\x03\x01\xa1t",  # version 2
        b"\x93\x01\x01" + b"\x91\x94\xa4good\x00\x00\x90",  # 'good' with zero timing
    ]
    for frame in garbage:
        attacker.send(frame)
    attacker.send_multipart([b"two", b"frames"])
    # An oversized frame is cut off by ZMQ_MAXMSGSIZE (the connection is dropped).
    attacker.send(b"x" * (protocol.MAX_MESSAGE_BYTES + 10))
    wait_for(lambda: server.stats.dropped >= len(garbage) + 1)
    assert server.running
    assert client.hosts("t") == ("good",)
    assert [r.host for r in client.table()[0]] == ["good"]
    attacker.close()


def test_hosts_table_reports_age_and_the_answering_registry(start_server, seed_for, matchmakers):
    server = start_server()
    seed = seed_for(server)
    host_side, client = matchmakers(seed), matchmakers(seed)
    host_side.register("b", "h1")
    host_side.register("a", "h1")
    wait_for(lambda: client.table()[0])
    rows, endpoint = client.table()
    assert endpoint == server.endpoint
    assert rows[0].host == "h1" and rows[0].topics == ("a", "b") and 0 <= rows[0].age < 5
    assert (rows[0].interval, rows[0].ttl) == (FAST.interval, FAST.ttl)


def test_many_hosts_in_one_batched_heartbeat(start_server, seed_for, matchmakers):
    server = start_server()
    seed = seed_for(server)
    host_side, client = matchmakers(seed), matchmakers(seed)
    host_side._announce_many([(f"h{i}", frozenset({"t", f"own-{i}"})) for i in range(5000)])
    wait_for(lambda: len(server.table) == 5000)
    assert len(client.hosts("t")) == 5000 and client.hosts("own-4999") == ("h4999",)


def test_a_batched_heartbeat_larger_than_a_message_reaches_the_registry(start_server, seed_for, matchmakers):
    # 500 hosts of 10 topics of 250 characters: 1.3 MB of records. In one frame the registry
    # refused it (ZMQ_MAXMSGSIZE) and zmq dropped the connection without a word, so the hosts
    # would all expire one TTL later.
    server = start_server()
    host_side = matchmakers(seed_for(server))
    topics = frozenset(f"service-{j:02d}." + "x" * 240 for j in range(10))
    host_side._announce_many([(f"host-{i:05d}", topics) for i in range(500)])
    wait_for(lambda: len(server.table) == 500, timeout=10)
    assert server.stats.received >= 2


def test_a_full_registry_refuses_more_and_keeps_serving_what_it_holds(start_server, seed_for, matchmakers):
    server = start_server(max_registrations=3)
    seed = seed_for(server)
    first, second, client = matchmakers(seed), matchmakers(seed), matchmakers(seed)
    first.register("a", "h1")
    first.register("b", "h1")
    first.start_heartbeat()  # FAST timing: without heartbeats h1 would expire in 0.3 s
    wait_for(lambda: client.hosts("b") == ("h1",))
    second.register("a", "h2")  # the third registration: the table is full
    second.start_heartbeat()
    wait_for(lambda: client.hosts("a") == ("h1", "h2"))
    second.register("c", "h2")  # would be the fourth: refused, h2 keeps serving "a"
    wait_for(lambda: server.stats.refused_full >= 2)
    assert server.running
    assert client.hosts("a") == ("h1", "h2") and client.hosts("c") == ()
    health = client.status()[0][1]  # what `rpcmm status` shows operators
    assert health.registrations == 3 and health.max_registrations == 3 and health.refused >= 2
    first.unregister("b", "h1")  # room for one more: h2's next heartbeat gets in
    wait_for(lambda: client.hosts("c") == ("h2",))
    assert client.hosts("a") == ("h1", "h2") and server.table.registration_count == 3


def test_a_table_larger_than_a_message_is_listed_and_warmed_up_from_in_pages(start_server, seed_for, matchmakers):
    """20,000 hosts of 10 topics: a table of about 4 MB, four times the largest message."""
    server = start_server()
    seed = seed_for(server)
    host_side = matchmakers(seed, timing=HeartbeatTiming(10.0, 60.0))  # alive for the whole test
    client = matchmakers(seed)
    topics = frozenset(f"service-{j}.topic" for j in range(10))
    host_side._announce_many([(f"compute-{i:05d}.example.org", topics) for i in range(20_000)])
    wait_for(lambda: len(server.table) == 20_000, timeout=30)
    rows, endpoint = client.table()
    assert endpoint == server.endpoint
    assert [r.host for r in rows] == [f"compute-{i:05d}.example.org" for i in range(20_000)]
    assert all(r.topics == tuple(sorted(topics)) for r in rows)
    assert server.stats.lists > 4  # it did take pages
    late = start_server(peers=[server.endpoint])
    wait_for(lambda: late.synced_from == str(server.endpoint), timeout=30)
    assert len(late.table) == 20_000 and late.stats.synced_hosts == 20_000
    assert late.table.hosts_for("service-3.topic") == server.table.hosts_for("service-3.topic")


def test_a_registry_whose_pages_do_not_move_on_is_an_error_not_a_loop(context):
    """A fake registry answers every LIST with the same page and the same cursor."""
    fake = context.socket(zmq.ROUTER)
    fake.setsockopt(zmq.LINGER, 0)
    port = fake.bind_to_random_port("tcp://127.0.0.1")
    client = RegistryClient([Endpoint("127.0.0.1", port)], context, timeout=2.0).start()
    answered = []

    def serve():
        while len(answered) < 2 and fake.poll(2000):
            identity, frame = fake.recv_multipart()
            request = protocol.decode(frame)
            answered.append(request.after)
            row = protocol.TableRow("h", 0.0, 1.0, 3.0, ("t",))
            fake.send_multipart([identity, protocol.encode(protocol.Table(request.request_id, (row,),
                                                                          next_after="h"))])

    server = threading.Thread(target=serve)
    server.start()
    try:
        with pytest.raises(ProtocolError, match="not in order past the cursor"):
            client.list_hosts()
    finally:
        server.join(5)
        client.close()
        fake.close()
    assert answered == ["", "h"]


class FakePeer:
    """A ROUTER on 127.0.0.1 that answers LIST with pages from ``pages(after)`` (a list of
    ``(rows, next_after)``), in a thread, until it has answered ``answers`` requests; then it
    closes, like a registry that dies mid-listing."""

    def __init__(self, context, pages, answers):
        self.socket = context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.endpoint = Endpoint("127.0.0.1", self.socket.bind_to_random_port("tcp://127.0.0.1"))
        self.asked = []
        self._pages, self._answers = pages, answers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve)
        self._thread.start()

    def _serve(self):
        deadline = time.monotonic() + 20  # bounded whatever the test does
        try:
            while len(self.asked) < self._answers and not self._stop.is_set() and time.monotonic() < deadline:
                if not self.socket.poll(50):
                    continue
                identity, frame = self.socket.recv_multipart()
                request = protocol.decode(frame)
                self.asked.append(request.after)
                rows, next_after = self._pages(request.after)
                self.socket.send_multipart([identity, protocol.encode(
                    protocol.Table(request.request_id, tuple(rows), protocol.State.UP, next_after))])
        finally:
            self.socket.close()

    def join(self):
        """Stop answering (if it has not yet) and close."""
        self._stop.set()
        self._thread.join(10)


def _rows(names):
    return [protocol.TableRow(name, 0.0, 10.0, 60.0, ("t",)) for name in names]


def test_warm_up_moves_on_when_a_peer_dies_mid_listing(start_server, context):
    full = start_server()
    full.table.heartbeat("a", ("t",), 10.0, 60.0, full.clock.monotonic())  # the loop is idle: safe
    full.table.heartbeat("b", ("t",), 10.0, 60.0, full.clock.monotonic())
    dying = FakePeer(context, lambda after: (_rows(["a"]), "a"), answers=1)
    late = start_server(peers=[dying.endpoint, full.endpoint], peer_timeout=0.5)
    wait_for(lambda: late.synced_from == str(full.endpoint), timeout=10)
    dying.join()
    assert late.running and dying.asked == [""]
    # "a" came from the peer that died, "b" from the next one ("a" again was already there).
    assert sorted(late.table.hosts_for("t")) == ["a", "b"] and late.stats.synced_hosts == 2


def test_a_topic_whose_answer_outgrows_a_request_message_is_still_answered(start_server, seed_for,
                                                                            make_matchmaker, context):
    # A fanout topic of a large region: 45,000 hosts make a 1.2 MB answer, over the 1 MiB a
    # registry takes in; the client and its live feed take up to 64 MiB from registries.
    server = start_server()
    hosts = tuple(f"compute-{i:06d}.example.org" for i in range(45_000))
    assert len(protocol.encode(protocol.Hosts(1, hosts))) > protocol.MAX_MESSAGE_BYTES
    sender = RegistryClient([server.endpoint], context).start()
    step = protocol.MAX_HOSTS_PER_MESSAGE
    for start in range(0, len(hosts), step):
        sender.cast(protocol.Heartbeat(tuple(protocol.HostState(h, 10.0, 60.0, ("compute",))
                                             for h in hosts[start:start + step])))
    wait_for(lambda: len(server.table) == len(hosts), timeout=20)
    sender.close()
    watcher = make_matchmaker(seed_for(server), cache_max_age=60.0, lookup_timeout=5.0)
    assert watcher.hosts("compute") == hosts  # the HOSTS reply
    wait_for(lambda: watcher._feed.stats["snapshots"] > 0, timeout=10)  # the feed's SNAPSHOT


def test_a_peer_zmq_cannot_connect_to_is_skipped_and_the_registry_serves(start_server, seed_for, matchmakers):
    # Endpoint.parse refuses such names in a seed; a peer given directly can still be one.
    full = start_server()
    full.table.heartbeat("a", ("t",), 10.0, 60.0, full.clock.monotonic())  # the loop is idle: safe
    late = start_server(peers=[Endpoint("_bad", 7702), full.endpoint], peer_timeout=0.5)
    wait_for(lambda: late.synced_from == str(full.endpoint), timeout=10)
    assert late.running and late.table.hosts_for("t") == ("a",)
    assert matchmakers(seed_for(late)).hosts("t") == ("a",)


def test_stop_returns_when_the_loop_has_already_died(start_server):
    server = start_server()
    server._wake_send.send(b"stop")  # what stop() sends: the loop ends and closes its end of the pipe
    wait_for(lambda: not server.running, timeout=5)
    started = time.monotonic()
    server.stop(timeout=5.0)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("pages", [
    lambda after: (_rows(["b", "a"]), ""),  # out of order
    lambda after: (_rows(["x"]), "y"),  # the cursor is not the last host
    lambda after: (_rows(["a"]), "a"),  # the same page again and again
], ids=["unordered", "cursor-not-last-host", "stuck-cursor"])
def test_warm_up_refuses_a_bad_page_and_moves_on(start_server, context, pages):
    bad = FakePeer(context, pages, answers=2)
    good = start_server()
    late = start_server(peers=[bad.endpoint, good.endpoint], peer_timeout=0.5)
    wait_for(lambda: late.synced_from or not late.running, timeout=20)
    bad.join()
    assert late.running and late.synced_from == str(good.endpoint)


def test_a_peer_listing_without_end_stops_when_the_table_is_full(start_server, context):
    # Every page is well-formed and moves on: only the table's own cap ends it.
    endless = FakePeer(context, lambda after: (_rows([after + "x"]), after + "x"), answers=100)
    late = start_server(peers=[endless.endpoint], peer_timeout=0.5, max_registrations=10)
    wait_for(lambda: late.synced_from == str(endless.endpoint), timeout=20)
    assert late.running and len(late.table) == 10 and len(endless.asked) == 10
    endless.join()  # it waits for an 11th LIST that never comes, then closes


def test_a_peer_listing_expired_hosts_without_end_does_not_keep_a_registry_warming(start_server, context):
    # Well-formed pages that move on, every row already past its TTL (so nothing is loaded and
    # the table never fills): only the count of rows listed ends it.
    def expired(after):
        return [protocol.TableRow(after + "x", 120.0, 10.0, 60.0, ("t",))], after + "x"

    endless = FakePeer(context, expired, answers=100)
    late = start_server(peers=[endless.endpoint], peer_timeout=0.5, max_registrations=10)
    wait_for(lambda: not late._warming, timeout=20)
    assert late.running and len(late.table) == 0 and len(endless.asked) == 10
    endless.join()


def test_a_list_without_a_cursor_gets_as_much_as_one_message_holds(start_server, seed_for, context):
    server = start_server()
    now = server.clock.monotonic()
    for i in range(2000):  # about 400 kB of rows: more than one page, less than one message
        server.table.heartbeat(f"compute-{i:04d}.example.org", tuple(f"topic-{j}" for j in range(10)), 10.0, 60.0,
                               now)
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(server.endpoint.zmq_address())
    try:
        dealer.send(protocol.encode(protocol.ListHosts(1, None)))  # as a client from before paging
        assert dealer.poll(5000)
        old = protocol.decode(dealer.recv())
        dealer.send(protocol.encode(protocol.ListHosts(2, "")))
        assert dealer.poll(5000)
        new = protocol.decode(dealer.recv())
    finally:
        dealer.close()
    assert len(old.rows) == 2000 and old.next_after == ""
    assert 0 < len(new.rows) < 2000 and new.next_after == new.rows[-1].host


def test_a_peer_asking_for_large_lists_without_reading_does_not_stall_the_registry(start_server, context):
    # 60 LISTs of a 20,000-host table, never read: each is tens of ms of the loop and ~1 MB of
    # answer. Meanwhile the feed must go on ticking (clients call a feed dead after 3 missed
    # ticks) and another client's lookups must be answered.
    server = start_server(tick_interval=0.2)
    now = server.clock.monotonic()
    for i in range(20_000):
        server.table.heartbeat(f"host-{i:07d}.example", ("compute", f"svc-{i % 50:03d}"), 60.0, 600.0, now)
    ticks, hostile, good = (context.socket(kind) for kind in (zmq.SUB, zmq.DEALER, zmq.DEALER))
    try:
        for socket in (ticks, hostile, good):
            socket.setsockopt(zmq.LINGER, 0)
        ticks.setsockopt(zmq.SUBSCRIBE, protocol.TICK_KEY)
        ticks.connect(f"tcp://127.0.0.1:{server.feed_port}")
        hostile.connect(server.endpoint.zmq_address())
        good.connect(server.endpoint.zmq_address())
        assert ticks.poll(5000)  # subscribed
        for i in range(60):
            hostile.send(protocol.encode(protocol.ListHosts(i, None)))
        started = last = time.monotonic()
        longest, answered, asked = 0.0, 0, 0
        while time.monotonic() - started < 3.0:
            if asked == answered:
                asked += 1
                good.send(protocol.encode(protocol.Lookup(asked, "svc-007")))
            if good.poll(0):
                reply = protocol.decode(good.recv())
                answered += reply.request_id == asked and len(reply.hosts) == 400
            if ticks.poll(20):
                ticks.recv_multipart()
                longest, last = max(longest, time.monotonic() - last), time.monotonic()
        assert longest < 1.0, f"the loop went {longest:.2f}s without ticking"
        assert answered >= 3 and server.running
    finally:
        for socket in (ticks, hostile, good):
            socket.close()
