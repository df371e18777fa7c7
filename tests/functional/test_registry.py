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


def test_a_full_registry_refuses_more_and_keeps_serving_what_it_holds(start_server, seed_for, matchmakers):
    server = start_server(max_registrations=3)
    seed = seed_for(server)
    first, second, client = matchmakers(seed), matchmakers(seed), matchmakers(seed)
    first.register("a", "h1")
    first.register("b", "h1")
    second.register("a", "h2")  # the third registration: the table is full
    wait_for(lambda: client.hosts("a") == ("h1", "h2"))
    second.register("c", "h2")  # would be the fourth: refused, h2 keeps serving "a"
    second.start_heartbeat()
    wait_for(lambda: server.stats.refused_full >= 2)
    assert server.running
    assert client.hosts("a") == ("h1", "h2") and client.hosts("c") == ()
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
        with pytest.raises(ProtocolError, match="does not move on"):
            client.list_hosts()
    finally:
        server.join(5)
        client.close()
        fake.close()
    assert answered == ["", "h"]
