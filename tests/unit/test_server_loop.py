"""Pieces of the registry's loop, driven without its sockets: the decode memo (remembered
HEARTBEAT frames stay within their memory budget), the live feed's subscriptions and the
drain's time budget."""

import zmq

from rpcmm import protocol
from rpcmm import server as server_module
from rpcmm.clock import ManualClock
from rpcmm.server import RegistryServer


def _frame(i, topics=10):
    state = protocol.HostState(f"host-{i:06d}", 1.0, 3.0, tuple(f"topic-{j}" for j in range(topics)))
    return protocol.encode(protocol.Heartbeat((state,)))


def test_the_memo_charges_decoded_objects_not_just_frame_bytes():
    server = RegistryServer("127.0.0.1:0")  # never started: _decode needs no sockets
    frame = _frame(0)
    server._decode(frame)
    # A 10-topic frame is ~150 bytes; what the memo holds for it is several times that.
    assert server._memo_bytes > 5 * len(frame)


def test_the_memo_evicts_the_oldest_frames_to_stay_within_its_budget(monkeypatch):
    monkeypatch.setattr(server_module, "_MEMO_BYTES", 50_000)
    server = RegistryServer("127.0.0.1:0")
    frames = [_frame(i) for i in range(200)]
    for frame in frames:
        assert server._decode(frame) == protocol.decode(frame)
    kept = list(server._memo)
    assert 0 < len(kept) < len(frames) and kept == frames[-len(kept):]  # the newest are kept
    assert server._memo_bytes == sum(server_module._memo_charge(f, m) for f, m in server._memo.items())
    assert server._memo_bytes <= 50_000


class FakeFeed:
    """The XPUB's side the loop uses: subscription events to read, messages it publishes."""

    def __init__(self, events):
        self.events = list(events)
        self.published = []

    def recv(self, flags=0):
        if not self.events:
            raise zmq.Again()
        return self.events.pop(0)

    def send_multipart(self, frames, flags=0):
        self.published.append((frames[0], protocol.decode(frames[1])))


def test_a_burst_of_subscriptions_to_one_topic_costs_one_snapshot():
    server = RegistryServer("127.0.0.1:0")
    server.epoch = 5  # what start() draws
    server.table.heartbeat("h1", ("big",), 1.0, 3.0, 0.0)
    key, other = protocol.topic_key("big"), protocol.topic_key("x")
    # A peer re-subscribing over and over, a few ticks, one other topic: one batch of events.
    events = [b"\x01" + key, b"\x00" + key] * 200 + [b"\x01" + protocol.TICK_KEY] * 3 + [b"\x01" + other]
    feed = FakeFeed(events)
    server._subscriptions(feed)
    kinds = sorted((k, type(m).__name__) for k, m in feed.published)
    assert kinds == sorted([(key, "Snapshot"), (protocol.TICK_KEY, "Tick"), (other, "Snapshot")])
    assert dict(feed.published)[key].hosts == ("h1",)


class FakeRouter:
    """The ROUTER's side ``_drain`` uses: queued requests (identity, frame) and the replies."""

    def __init__(self, requests):
        self.frames = [part for identity, frame in requests for part in (identity, frame)]
        self.sent = []

    def getsockopt(self, option):
        if option == server_module._EVENTS:
            return server_module._POLLIN if self.frames else 0
        return 0  # RCVMORE: never a third frame

    def recv(self, flags=0):
        if not self.frames:
            raise zmq.Again()
        return self.frames.pop(0)

    def send(self, frame, flags=0):
        self.sent.append(frame)


class FakeTimer:
    """``server.timer``: real seconds that pass only when a handled request says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _drain_costly(reply_rows):
    """A server whose every request takes 5 ms (on a fake timer), answered with a Table of
    ``reply_rows`` rows; and a socket with 100 such requests queued."""
    server = RegistryServer("127.0.0.1:0")
    server.timer = timer = FakeTimer()
    rows = tuple(protocol.TableRow(f"host-{i:04d}", 0.0, 1.0, 3.0, ("t",)) for i in range(reply_rows))

    def costly(message, identity, key, now):
        timer.now += 0.005
        return protocol.Table(message.request_id, rows)

    server._handle = costly
    return server, FakeRouter([(b"peer", protocol.encode(protocol.ListHosts(i, ""))) for i in range(100)])


def test_a_drain_of_costly_requests_stops_after_its_time_budget_so_the_loop_can_tick():
    server, socket = _drain_costly(reply_rows=200)  # replies of ~5 kB: the time is read after each
    server._drain(socket)
    assert server.stats.received == 5  # 25 ms of work: past the 20 ms budget
    server._drain(socket)  # the rest waits for the next pass, in order
    assert server.stats.received == 10


def test_a_drain_reads_the_time_every_few_requests_when_the_replies_are_small():
    server, socket = _drain_costly(reply_rows=1)
    server._drain(socket)
    assert server.stats.received == server_module._DRAIN_CHECK_EVERY - 1


def test_a_large_batch_of_joins_and_departures_is_logged_in_a_few_lines(caplog):
    clock = ManualClock()
    server = RegistryServer("127.0.0.1:0", clock=clock)
    joining = protocol.Heartbeat(tuple(protocol.HostState(f"h{i}", 1.0, 3.0, ("t",)) for i in range(1000)))
    leaving = protocol.Unregister(tuple(f"h{i}" for i in range(1000)))
    limit = server_module._HOST_EVENT_LINES
    with caplog.at_level("INFO", logger="rpcmm.server"):
        server._handle(joining, b"peer", None, clock.monotonic())
        server._handle(leaving, b"peer", None, clock.monotonic())
        assert len(caplog.messages) == 2 * limit
        assert caplog.messages[0] == "host h0 joined: t" and caplog.messages[limit] == "host h0 unregistered"
        clock.advance(1.5)  # the next line of a kind says how many of it were held back
        server._handle(protocol.Heartbeat((protocol.HostState("late", 1.0, 3.0, ("t",)),)), b"peer", None,
                       clock.monotonic())
    assert caplog.messages[-2].startswith(f"... {1000 - limit} more like this in the last 1.5s")
    assert caplog.messages[-1] == "host late joined: t"
    assert server.stats.joined == 1001 and server.stats.left == 1000
