"""Hostile frames against a running RegistryServer over real zmq on 127.0.0.1.

After every hostile message the server must still run, still answer lookups, and still hold a
known good host exactly as that host declared it. Example counts are bounded so the module
stays well under half a minute.
"""

import logging

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpcmm import protocol as p
from rpcmm.server import RegistryServer
from rpcmm.testing import wait_for
from tests.fuzz.test_decode_fuzz import mutated_frames, near_valid_messages, valid_messages, values

pytestmark = pytest.mark.functional

GOOD_HOST = "keeper.example.org"  # hostile strategies never draw this exact name by chance
GOOD_TOPICS = ("compute", "scheduler")
HOSTILE = settings(max_examples=150, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

payloads = st.one_of(
    near_valid_messages().map(lambda fields: msgpack.packb(fields, use_bin_type=True)),
    mutated_frames(),
    valid_messages.map(p.encode),
    values.map(lambda v: msgpack.packb(v, use_bin_type=True)),
    st.binary(max_size=64),
)
# One to three frames: the ROUTER adds the identity, so anything but one payload frame is wrong.
messages = st.lists(payloads, min_size=1, max_size=3)


class Harness:
    """A server in a thread, a good host that registered, a checker and a hostile DEALER."""

    def __init__(self):
        self.context = zmq.Context()
        self.server = RegistryServer("127.0.0.1:0", context=self.context, sweep_interval=0.05).start()
        address = self.server.endpoint.zmq_address()
        self.sockets = []
        self.good = self._dealer(address)
        self.checker = self._dealer(address)
        self.hostile = self._dealer(address)
        self.request_id = 0
        self.sent = 0
        self._send(self.good, p.encode(p.Heartbeat((p.HostState(GOOD_HOST, 60.0, 600.0, GOOD_TOPICS),))))
        self.assert_intact()

    def _dealer(self, address):
        return self._dealer_like(zmq.DEALER, address)

    def _dealer_like(self, kind, address):
        socket = self.context.socket(kind)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(address)
        self.sockets.append(socket)
        return socket

    def _send(self, socket, *frames):
        socket.send_multipart(list(frames))
        self.sent += 1
        # The server has read it. It has *handled* it once it answers a later call: one loop
        # reads and handles messages in turn.
        wait_for(lambda: self.server.stats.received >= self.sent, what="the server to read the message")

    def hostile_send(self, frames):
        self._send(self.hostile, *frames)

    def call(self, request):
        self.request_id += 1
        self._send(self.checker, p.encode(request(self.request_id)))
        deadline_ms = 5000
        while self.checker.poll(deadline_ms):
            reply = p.decode(self.checker.recv())
            if reply.request_id == self.request_id:
                return reply
        raise AssertionError("the server did not answer")

    def assert_intact(self):
        assert self.server.running
        for topic in GOOD_TOPICS:
            assert GOOD_HOST in self.call(lambda rid: p.Lookup(rid, topic)).hosts
        rows, after = {}, ""
        while True:  # the table comes in pages
            page = self.call(lambda rid: p.ListHosts(rid, after))
            rows.update((row.host, row) for row in page.rows)
            if not page.next_after:
                break
            after = page.next_after
        assert rows[GOOD_HOST].topics == tuple(sorted(GOOD_TOPICS))
        assert rows[GOOD_HOST].ttl == 600.0

    def close(self):
        for socket in self.sockets:
            socket.close()
        self.server.stop()
        self.context.term()


@pytest.fixture
def harness():
    h = Harness()
    yield h
    h.close()


def test_hostile_messages_never_stop_the_server_or_touch_another_host(harness):
    @HOSTILE
    @given(messages)
    def run(frames):
        harness.hostile_send(frames)
        harness.assert_intact()

    run()


def test_a_flood_of_garbage_is_survived_and_logged_in_bounded_lines(harness, caplog):
    with caplog.at_level(logging.WARNING, logger="rpcmm.server"):
        for i in range(5000):
            harness.hostile.send(b"\xc1" + i.to_bytes(4, "big"))  # 0xc1: never valid msgpack
        harness.sent += 5000
        wait_for(lambda: harness.server.stats.received >= harness.sent, timeout=20)
    harness.assert_intact()
    assert harness.server.stats.dropped >= 5000
    assert len(caplog.records) < 100  # rate-limited, with summaries, not 5000 lines


def test_an_oversized_frame_disconnects_its_sender_only(harness):
    harness.hostile.send(b"\x00" * (p.MAX_MESSAGE_BYTES + 1))
    # zmq drops the peer at MAXMSGSIZE before the server reads anything; nothing to wait for
    # but the server still serving everyone else.
    harness.assert_intact()


def test_huge_but_legal_messages_are_taken_whole(harness):
    topics = tuple(f"t{i}" for i in range(p.MAX_TOPICS_PER_HOST))
    big = p.Heartbeat(tuple(p.HostState(f"bulk-{i}", 1.0, 3.0, topics) for i in range(100)))
    frame = p.encode(big)
    assert len(frame) < p.MAX_MESSAGE_BYTES
    harness.hostile_send([frame])
    harness.assert_intact()
    assert len(harness.server.table) == 101
    harness.hostile_send([p.encode(p.Unregister(tuple(f"bulk-{i}" for i in range(100))))])
    harness.assert_intact()  # answered after the UNREGISTER was read, so after it was applied
    assert len(harness.server.table) == 1


def test_memory_stays_bounded_when_topics_come_and_go(harness):
    """Finding F2 (fixed): topic versions used to outlive their topics, so register/unregister
    cycles with fresh topic names grew a registry without bound."""
    for round_ in range(20):
        topics = tuple(f"churn-{round_}-{i}" for i in range(p.MAX_TOPICS_PER_HOST))
        harness.hostile_send([p.encode(p.Heartbeat((p.HostState("churner", 1.0, 3.0, topics),)))])
        harness.hostile_send([p.encode(p.Unregister(("churner",)))])
    harness.assert_intact()
    remembered = len(harness.server.table._versions)  # the loop is idle: a read is safe here
    assert remembered <= 10 * len(GOOD_TOPICS), f"{remembered} topic versions kept for 2 live topics"


def test_hostile_subscriptions_to_the_live_feed(harness):
    """The feed's XPUB reads subscription frames from any subscriber: random keys, invalid
    UTF-8, unsubscriptions and junk must neither stop the server nor disturb its table."""
    xsub = harness._dealer_like(zmq.XSUB, f"tcp://127.0.0.1:{harness.server.feed_port}")
    subscriptions = st.one_of(
        st.binary(max_size=64),
        st.builds(lambda flag, key: bytes([flag]) + key, st.sampled_from([0, 1, 2, 255]),
                  st.one_of(st.binary(max_size=40), st.text(max_size=20).map(lambda t: t.encode() + b"\0"))),
    )

    @HOSTILE
    @given(st.lists(subscriptions, min_size=1, max_size=20))
    def run(frames):
        for frame in frames:
            xsub.send(frame)
        harness.assert_intact()

    run()
    # A new subscriber to the good host's topic still gets that topic's snapshot.
    subscriber = harness._dealer_like(zmq.XSUB, f"tcp://127.0.0.1:{harness.server.feed_port}")
    subscriber.send(b"\x01" + p.topic_key("compute"))
    assert subscriber.poll(5000), "no snapshot for a real subscription"
    key, body = subscriber.recv_multipart()
    assert key == p.topic_key("compute") and GOOD_HOST in p.decode(body).hosts
