"""The driver between real processes: client and server apart, kill -9, eventlet, zmq://."""

import collections
import threading
import time

import pytest

import oslo_messaging
from rpcmm.testing import wait_for
from tests.oslo.processes import Peer

pytestmark = [pytest.mark.functional, pytest.mark.timeout(90)]

@pytest.fixture
def peers():
    started = []

    def start(*args, **kwargs):
        peer = Peer(*args, **kwargs)
        started.append(peer)
        return peer.wait_ready()

    yield start
    for peer in started:
        peer.stop()


def call(transport, topic, method="whoami", timeout=5, **kwargs):
    client = oslo_messaging.get_rpc_client(transport, oslo_messaging.Target(topic=topic),
                                           timeout=timeout)
    return client.call({}, method, **kwargs)


def test_client_and_server_in_separate_processes(transports, peers, url):
    peers(url, "apart", "remote-1")
    assert call(transports.rpc(), "apart") == "remote-1"
    assert call(transports.rpc(), "apart", "add", a=20, b=22) == 42


def test_a_killed_server_stops_getting_calls_within_its_ttl(transports, peers, url):
    doomed = peers(url, "mortal", "doomed")
    peers(url, "mortal", "survivor")
    transport = transports.rpc(cache_max_age=0.2)
    assert {call(transport, "mortal") for _ in range(4)} == {"doomed", "survivor"}
    doomed.kill()
    killed_at = time.monotonic()
    # TTL 0.5 s + registry sweep + client cache 0.2 s: well within 2 s every call is answered.
    streak = 0
    while streak < 6:
        assert time.monotonic() - killed_at < 2.0, "calls still went to the killed server"
        try:
            assert call(transport, "mortal", timeout=0.25) == "survivor"
            streak += 1
        except oslo_messaging.MessagingTimeout:
            streak = 0


def test_a_service_under_eventlet(transports, peers, url):
    peers(url, "green", "green-1", eventlet=True)
    transport = transports.rpc()
    assert call(transport, "green") == "green-1"
    slow = []
    sleeper = threading.Thread(target=lambda: slow.append(call(transport, "green", "sleep", seconds=3)))
    sleeper.start()
    try:
        wait_for(lambda: call(transport, "green", "sleeping") == 1, timeout=2)
        quick = [call(transport, "green", "add", a=i, b=i) for i in range(20)]
        assert quick == [2 * i for i in range(20)]
        # Answered while the slow call still sleeps in the same green process.
        assert call(transport, "green", "sleeping") == 1
    finally:
        sleeper.join(10)
    assert slow == [3]


def test_zero_configuration_survives_the_registry_owner_leaving(transports, peers, registry):
    # ``registry`` plays the first process on this machine: it holds the embedded port (one
    # the OS picked), so the peer and this test's transport find it taken and use it.
    port = registry.endpoint.port
    peers("zmq://", "zeroconf", "zc-1", embedded_port=port)
    transport = transports.rpc(url="zmq://", embedded_registry_port=port)
    assert call(transport, "zeroconf") == "zc-1"
    registry.stop()  # the owner leaves: one of the others must take over, and re-learn zc-1
    assert wait_for(lambda: _answers(transport, "zeroconf"), timeout=10) == "zc-1"
    assert [call(transport, "zeroconf") for _ in range(5)] == ["zc-1"] * 5


def _answers(transport, topic):
    try:
        return call(transport, topic, timeout=0.5)
    except oslo_messaging.MessagingTimeout:
        return None


def test_a_server_stopping_cleanly_loses_no_call_or_cast(transports, peers, url):
    """A rolling restart: one of two servers of a topic stops (SIGTERM, oslo's stop and wait)
    while callers and a caster keep the topic busy. Every call is answered and every cast is
    processed by one of the two: the stopping server drains what was already on its way."""
    leaving = peers(url, "rolling", "leaving")
    peers(url, "rolling", "staying")
    transport = transports.rpc()
    assert {call(transport, "rolling") for _ in range(4)} == {"leaving", "staying"}
    topic_client = oslo_messaging.get_rpc_client(transport, oslo_messaging.Target(topic="rolling"), timeout=3)
    done, failures, answered, casts = threading.Event(), [], collections.Counter(), [0]
    deadline = time.monotonic() + 30  # every loop below is bounded in time and in count

    def caller():
        for _ in range(20_000):
            if done.is_set() or time.monotonic() > deadline:
                return
            try:
                answered[topic_client.call({}, "whoami")] += 1
            except Exception as exc:  # a MessagingTimeout is the failure this test looks for
                failures.append(repr(exc))

    def caster():
        for _ in range(20_000):
            if done.is_set() or time.monotonic() > deadline:
                return
            topic_client.cast({}, "tick")
            casts[0] += 1
            time.sleep(0.001)

    workers = [threading.Thread(target=caller) for _ in range(4)] + [threading.Thread(target=caster)]
    for worker in workers:
        worker.start()
    try:
        wait_for(lambda: answered["leaving"] >= 50 and answered["staying"] >= 50, timeout=10)
        leaving.stop()  # SIGTERM: the peer stops its server, waits for it, cleans up, exits
        stopped_at = sum(answered.values())
        wait_for(lambda: sum(answered.values()) >= stopped_at + 200, timeout=10)  # life goes on
    finally:
        done.set()
        for worker in workers:
            worker.join(10)
    assert failures == []
    assert leaving.ticked is not None and leaving.ticked > 0
    staying = oslo_messaging.get_rpc_client(
        transport, oslo_messaging.Target(topic="rolling", server="staying"), timeout=3)
    # Casts run concurrently in the executor: the last few may still be running.
    wait_for(lambda: leaving.ticked + staying.call({}, "ticked") == casts[0], timeout=5)
