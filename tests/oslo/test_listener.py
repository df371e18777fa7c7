"""The listener on its own: registration, batching, pushing, stopping, hostile input, back pressure."""

import collections
import threading
import time

import pytest
import zmq

from rpcmm.oslo import listener as listener_module
from rpcmm.oslo import receiver as receiver_module

from rpcmm.oslo import wire
from rpcmm.oslo.listener import PushListener, ZmqListener
from rpcmm.oslo.peers import Outbox
from rpcmm.runtime import THREADING
from rpcmm.testing import wait_for
from tests.oslo.conftest import make_conf

pytestmark = [pytest.mark.functional, pytest.mark.timeout(20)]

TOPIC = "rpc/openstack/things"


class RecordingMatchmaker:
    """Records register/unregister; the listener needs nothing else. ``on_unregister()`` runs
    after each unregister (a peer that goes on sending before it hears of it)."""

    def __init__(self):
        self.registered = set()
        self.on_unregister = lambda: None

    def register(self, topic, host):
        self.registered.add((topic, host))

    def unregister(self, topic, host):
        self.registered.discard((topic, host))
        self.on_unregister()


@pytest.fixture
def make_listener(context):
    made, outbox = [], Outbox(context, THREADING, max_peers=4)

    def make(backlog=100, host_for=lambda address: address, drain=0.0):
        # No drain unless a test asks: most tests stop listeners and would each wait for it.
        conf = make_conf(listener_backlog=backlog, stop_drain_timeout=drain)
        listener = ZmqListener(context, THREADING, RecordingMatchmaker(), outbox, [TOPIC],
                               host_for, conf.rpcmm, "test-listener")
        made.append(listener)
        return listener.start()

    yield make
    for listener in made:
        listener.cleanup()
    outbox.close()


@pytest.fixture
def sender(context):
    sockets = []

    def connect(address):
        socket = context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(f"tcp://{address}")
        sockets.append(socket)
        return lambda frames: socket.send_multipart(frames)

    yield connect
    for socket in sockets:
        socket.close()


def request(n, to=TOPIC):
    return wire.encode(wire.Request(f"id{n}", to, {}, {"n": n}))


def test_registers_its_topics_and_unregisters_on_stop(make_listener):
    listener = make_listener(host_for=lambda address: f"pool@{address}")
    matchmaker = listener._matchmaker
    assert matchmaker.registered == {(TOPIC, f"pool@{listener.address}")}
    listener.stop()
    assert matchmaker.registered == set()


def test_a_batch_waits_for_its_timeout_from_the_first_message_only(make_listener, sender):
    listener = make_listener()
    send = sender(listener.address)
    result = []
    poller = threading.Thread(target=lambda: result.append(listener.poll(batch_size=5, batch_timeout=0.3)))
    poller.start()
    # Idle for longer than the batch timeout: that must not count, so poll is still waiting.
    poller.join(0.5)
    assert poller.is_alive() and not result
    for n in range(3):
        send(request(n))
    first_sent = time.monotonic()
    poller.join(5)
    elapsed = time.monotonic() - first_sent
    assert [m.message["n"] for m in result[0]] == [0, 1, 2]
    assert 0.25 <= elapsed < 1.0


def test_a_full_batch_returns_at_once(make_listener, sender):
    listener = make_listener()
    send = sender(listener.address)
    for n in range(7):
        send(request(n))
    first = listener.poll(timeout=5, batch_size=5, batch_timeout=30)
    assert [m.message["n"] for m in first] == [0, 1, 2, 3, 4]
    rest = listener.poll(timeout=5, batch_size=5, batch_timeout=0.05)
    assert [m.message["n"] for m in rest] == [5, 6]


def test_a_batch_without_a_size_gathers_until_its_timeout(make_listener, sender):
    # oslo's get_batch_notification_listener passes batch_size=None unless told otherwise.
    listener = make_listener()
    send = sender(listener.address)
    for n in range(3):
        send(request(n))
    batch = listener.poll(timeout=5, batch_size=None, batch_timeout=0.2)
    assert [m.message["n"] for m in batch] == [0, 1, 2]


def test_polling_a_listener_the_transport_cleaned_up_pauses_instead_of_spinning(make_listener):
    listener = make_listener()
    listener.cleanup()
    started, polls = time.monotonic(), 0
    while time.monotonic() - started < 0.5:
        assert listener.poll(batch_size=2, batch_timeout=None) == []
        polls += 1
    assert polls <= 10  # 0.1 s a poll, not a busy loop


def test_poll_times_out_empty_and_stop_wakes_it(make_listener):
    listener = make_listener()
    assert listener.poll(timeout=0.05) == []
    result = []
    poller = threading.Thread(target=lambda: result.append(listener.poll()))
    poller.start()
    listener.stop()
    poller.join(5)
    assert result == [[]]


def test_hostile_input_is_dropped_and_the_listener_goes_on(make_listener, sender):
    listener = make_listener()
    send = sender(listener.address)
    for frames in ([b"junk"], [b"\x92\x02"], request(1, to="rpc/openstack/other"),
                   wire.encode(wire.Reply("x", result=1)), [b"a", b"b", b"c"]):
        send(frames)
    send(request(2))
    [message] = listener.poll(timeout=5)
    assert listener.dropped == 5
    assert message.message == {"n": 2}
    assert message.msg_id == "id2" and message.client_timeout is None


def test_a_full_backlog_drops_new_messages(make_listener, sender):
    listener = make_listener(backlog=3)
    send = sender(listener.address)
    for n in range(6):
        send(request(n))
    send(request(99, to="rpc/openstack/other"))
    wait_for(lambda: listener.dropped == 4, timeout=5)  # 3, 4, 5 and the stranger
    received = []
    while len(received) < 3:
        received += listener.poll(timeout=5, batch_size=10, batch_timeout=0.2)
    assert [m.message["n"] for m in received] == [0, 1, 2]
    assert listener.poll(timeout=0.01) == []


def test_replies_to_a_cast_are_ignored(make_listener, sender):
    listener = make_listener()
    sender(listener.address)(request(1))
    [message] = listener.poll(timeout=5)

    class RecordingOutbox:
        sent = []

        def send(self, address, frames):
            self.sent.append(address)

    message._outbox = RecordingOutbox()
    message.reply({"ignored": True})  # no reply address: nothing is sent anywhere
    message.heartbeat()
    assert RecordingOutbox.sent == []


# -- pushed to oslo's callback (batches of one) -------------------------------------------------


def test_pushed_messages_reach_the_callback_from_the_receiving_task(make_listener, sender):
    listener = make_listener()
    push = PushListener(listener)
    send = sender(listener.address)
    send(request(0))  # before start: queued, then handed over by start
    wait_for(lambda: len(listener._queue) == 1, timeout=5)
    got, threads = [], set()

    def on_incoming(batch):
        threads.add(threading.current_thread().name)
        got.extend(batch)

    push.start(on_incoming)
    for n in range(1, 4):
        send(request(n))
    wait_for(lambda: len(got) == 4, timeout=5)
    assert [m.message["n"] for m in got] == [0, 1, 2, 3]
    assert "test-listener" in threads  # the later ones came straight from the receiving task
    assert listener._queue == collections.deque()
    push.stop()
    push.cleanup()


def test_after_stop_the_callback_is_never_called(make_listener, sender):
    listener = make_listener()
    push = PushListener(listener)
    got = []
    push.start(got.extend)
    send = sender(listener.address)
    send(request(1))
    wait_for(lambda: len(got) == 1, timeout=5)
    push.stop()
    send(request(2))
    time.sleep(0.2)  # give a wrong delivery its chance to happen
    assert [m.message["n"] for m in got] == [1]
    assert listener._matchmaker.registered == set()


def test_a_callback_may_stop_its_own_listener(make_listener, sender):
    listener = make_listener()
    push = PushListener(listener)
    stopped = threading.Event()

    def on_incoming(batch):
        push.stop()  # from the receiving task itself: must not wait for itself
        stopped.set()

    push.start(on_incoming)
    sender(listener.address)(request(1))
    assert stopped.wait(5)
    wait_for(lambda: not listener._receiver._task, timeout=5)


def _stream(send, first, stop, pause=0.02, most=500):
    """Send requests ``first``, ``first + 1``, ... every ``pause`` seconds until ``stop`` is
    set (at most ``most``); returns the thread and the list of numbers sent."""
    sent = []

    def run():
        for n in range(first, first + most):
            if stop.is_set():
                return
            send(request(n))
            sent.append(n)
            time.sleep(pause)

    thread = threading.Thread(target=run)
    return thread, sent


def test_stop_goes_on_delivering_what_arrives_after_unregistering(make_listener, sender):
    # A peer that has not yet heard of the unregistration keeps sending for a while: the
    # stop delivers all of it, and returns once nothing has arrived for DRAIN_QUIET.
    listener = make_listener(drain=10.0)
    push = PushListener(listener)
    got = []
    push.start(got.extend)
    send = sender(listener.address)
    stop_streaming = threading.Event()
    stream, sent = _stream(send, 1, stop_streaming)
    listener._matchmaker.on_unregister = stream.start
    # The stream stops itself after five messages sent after the unregistration.
    threading.Thread(target=lambda: (wait_for(lambda: len(sent) >= 5, timeout=5), stop_streaming.set())).start()
    push.stop()
    stream.join(5)
    assert listener._matchmaker.registered == set()
    assert len(sent) >= 5
    assert sorted(m.message["n"] for m in got) == sent


def test_a_stop_with_nothing_arriving_returns_after_the_quiet_time(make_listener):
    listener = make_listener(drain=10.0)
    started = time.monotonic()
    listener.stop()
    assert listener_module.DRAIN_QUIET <= time.monotonic() - started < 10.0


def test_a_drain_shorter_than_the_quiet_time_ends_quietly(make_listener, caplog):
    listener = make_listener(drain=0.1)
    started = time.monotonic()
    listener.stop()
    assert 0.1 <= time.monotonic() - started < 2.0
    assert "still receiving" not in caplog.text  # nothing arrived: nothing to warn about


def test_a_drain_ends_at_its_timeout_however_busy_the_socket(make_listener, sender, caplog):
    listener = make_listener(drain=0.5)
    push = PushListener(listener)
    got = []
    push.start(got.extend)
    stop_streaming = threading.Event()
    stream, sent = _stream(sender(listener.address), 1, stop_streaming)
    stream.start()
    try:
        wait_for(lambda: len(got) >= 1, timeout=5)
        started = time.monotonic()
        push.stop()
        took = time.monotonic() - started
    finally:
        stop_streaming.set()
        stream.join(5)
    assert 0.5 <= took < 5.0
    assert "still receiving" in caplog.text
    delivered = len(got)
    time.sleep(0.1)
    assert len(got) == delivered  # nothing after stop returned


def test_cleanup_cuts_a_drain_in_progress_short(make_listener, sender):
    listener = make_listener(drain=30.0)
    stop_streaming = threading.Event()
    stream, sent = _stream(sender(listener.address), 1, stop_streaming)
    stream.start()
    stopper = threading.Thread(target=listener.stop)
    try:
        wait_for(lambda: len(sent) >= 1, timeout=5)
        stopper.start()
        wait_for(lambda: listener._leaving, timeout=5)
        started = time.monotonic()
        listener.cleanup()  # the transport goes away: no waiting out a 30 s drain
        assert time.monotonic() - started < 5.0
        stopper.join(5)
        assert not stopper.is_alive()
        assert listener._receiver._task is None
    finally:
        stop_streaming.set()
        stream.join(5)


def test_a_batch_listener_gets_what_arrives_while_it_drains(make_listener, sender):
    # oslo's polling adapter (batch listeners): its thread polls until the drain is over.
    from oslo_messaging._drivers import base

    listener = make_listener(drain=10.0)
    adapter = base.PollStyleListenerAdapter(listener, batch_size=2, batch_timeout=0.05)
    got = []
    adapter.start(got.extend)
    stop_streaming = threading.Event()
    stream, sent = _stream(sender(listener.address), 1, stop_streaming)
    listener._matchmaker.on_unregister = stream.start
    threading.Thread(target=lambda: (wait_for(lambda: len(sent) >= 5, timeout=5), stop_streaming.set())).start()
    adapter.stop()
    stream.join(5)
    assert len(sent) >= 5
    assert sorted(m.message["n"] for m in got) == sent


def test_a_start_whose_registration_fails_unregisters_and_closes(context):
    class FailingSecond(RecordingMatchmaker):
        def register(self, topic, host):
            if self.registered:
                raise OSError("registry refused")
            super().register(topic, host)

    outbox = Outbox(context, THREADING, max_peers=4)
    matchmaker = FailingSecond()
    listener = ZmqListener(context, THREADING, matchmaker, outbox, [TOPIC, TOPIC + "2"], lambda a: a,
                           make_conf(stop_drain_timeout=10.0).rpcmm, "test-listener")
    try:
        with pytest.raises(OSError, match="registry refused"):
            listener.start()
        assert matchmaker.registered == set()
        assert listener._receiver._task is None
    finally:
        listener.cleanup()
        outbox.close()


def test_a_drain_under_eventlet_reads_what_came_while_the_hub_was_held():
    # A green thread holding the hub past the quiet time must not make the drain close the
    # socket with requests still in it (see eventlet_drain_program.py).
    import os
    import subprocess
    import sys

    pytest.importorskip("eventlet")
    program = os.path.join(os.path.dirname(os.path.abspath(__file__)), "eventlet_drain_program.py")
    result = subprocess.run([sys.executable, program, "0.5"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "delivered 30 of 30" in result.stdout


class Interrupted(BaseException):
    """What a second Ctrl-C or a killed green thread raises in the middle of a stop."""


def test_a_stop_interrupted_midway_still_stops_delivering_and_closes(make_listener, sender):
    listener = make_listener(drain=10.0)
    push = PushListener(listener)
    got = []
    push.start(got.extend)

    def interrupt():
        raise Interrupted()

    listener._matchmaker.on_unregister = interrupt
    with pytest.raises(Interrupted):
        push.stop()
    assert listener._stopped
    assert listener._receiver._task is None  # the socket is closed
    send = sender(listener.address)
    send(request(1))
    started = time.monotonic()
    listener.cleanup()
    assert time.monotonic() - started < 5.0
    time.sleep(0.2)  # give a wrong delivery its chance to happen
    assert got == []


def test_a_listener_whose_receiving_fails_unregisters_instead_of_swallowing_messages(make_listener, sender,
                                                                                      monkeypatch, caplog):
    listener = make_listener()
    matchmaker = listener._matchmaker
    assert matchmaker.registered

    def failing(socket):
        raise zmq.ZMQError(zmq.EFAULT, "simulated")

    # The task is blocked in a receive that began before this: that one returns the message
    # sent next, and the one after fails, as on a broken socket.
    monkeypatch.setattr(receiver_module, "receive_routed", failing)
    sender(listener.address)(request(1))  # wakes the blocked receive; the one after fails
    wait_for(lambda: not matchmaker.registered, timeout=5)
    assert "stopped receiving; unregistering" in caplog.text
    listener.stop()  # and a later stop is a no-op
    listener.cleanup()
