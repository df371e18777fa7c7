"""Pieces of the registry's loop, driven without its sockets: the decode memo (remembered
HEARTBEAT frames stay within their memory budget), the live feed's subscriptions and the
drain's time budget."""

import time

import zmq

from rpcmm import protocol
from rpcmm import server as server_module
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


def test_a_drain_stops_after_its_time_budget_so_the_loop_can_tick(monkeypatch):
    server = RegistryServer("127.0.0.1:0")
    requests = [(b"peer", protocol.encode(protocol.Status(i))) for i in range(100)]
    socket = FakeRouter(requests)

    def slow_handle(message, identity, key, now):  # each request takes 5 ms, like a large LIST
        time.sleep(0.005)

    monkeypatch.setattr(server, "_handle", slow_handle)
    started = time.perf_counter()
    server._drain(socket)
    took = time.perf_counter() - started
    handled = server.stats.received
    assert 1 <= handled < 20 and took < 0.1  # about 20 ms worth, not 100 x 5 ms
    server._drain(socket)  # the rest waits for the next pass, in order
    assert server.stats.received > handled


def test_a_large_batch_of_joins_and_departures_is_logged_in_a_few_lines(caplog):
    server = RegistryServer("127.0.0.1:0")
    joining = protocol.Heartbeat(tuple(protocol.HostState(f"h{i}", 1.0, 3.0, ("t",)) for i in range(1000)))
    with caplog.at_level("INFO", logger="rpcmm.server"):
        server._handle(joining, b"peer", None, 0.0)
        server._handle(protocol.Unregister(tuple(f"h{i}" for i in range(1000))), b"peer", None, 1.0)
    lines = caplog.messages
    assert len(lines) == 2 * (server_module._HOST_EVENT_LINES + 1)
    assert lines[0] == "host h0 joined: t" and lines[server_module._HOST_EVENT_LINES] == (
        "... and in the same message: 984 more host(s) joined")
    assert lines[-1] == "... and in the same message: 984 more host(s) unregistered"
    assert server.stats.joined == 1000 and len(server.table) == 0
