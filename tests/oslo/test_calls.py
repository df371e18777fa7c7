"""Waiting calls and their reply socket: callers take turns reading it (leader/followers)."""

import queue
import threading
import time

import pytest
import zmq

from rpcmm.oslo import wire
from rpcmm.oslo.calls import CallCancelled, CallTimedOut, PendingCalls
from rpcmm.runtime import THREADING
from rpcmm.testing import wait_for

pytestmark = [pytest.mark.functional, pytest.mark.timeout(20)]


@pytest.fixture
def calls(context):
    pending = PendingCalls(context, THREADING, "127.0.0.1", "127.0.0.1", 1 << 20).start()
    yield pending
    pending.stop()


@pytest.fixture
def server_for(context):
    """``server_for(calls)``: a function that sends replies and beats to the calls' socket, as
    a server's outbox would."""
    sockets = []

    def connect(calls):
        socket = context.socket(zmq.DEALER)
        sockets.append(socket)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(f"tcp://{calls.address}")
        lock = threading.Lock()

        def send(message):
            with lock:
                socket.send_multipart(wire.encode(message))

        return send

    yield connect
    for socket in sockets:
        socket.close()


@pytest.fixture
def server(calls, server_for):
    """Sends replies and beats to the calls' socket, as a server's outbox would."""
    return server_for(calls)


def call_in_thread(calls, msg_id, timeout=5.0, monitor=None):
    """Start waiting for ``msg_id`` in a thread; returns (thread, outcome list)."""
    slot = calls.expect(msg_id)
    outcome = []

    def wait():
        try:
            outcome.append(calls.wait(msg_id, slot, timeout, monitor))
        except (CallTimedOut, CallCancelled) as exc:
            outcome.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    return thread, outcome


def test_a_lone_call_reads_its_own_reply(calls, server):
    slot = calls.expect("a")
    server(wire.Reply("a", result=42))
    assert calls.wait("a", slot, 5.0, None) == wire.Reply("a", result=42)
    assert calls._slots == {}
    assert not calls._reader.locked()


def test_the_reader_hands_other_replies_to_their_calls(calls, server):
    slow, slow_outcome = call_in_thread(calls, "slow")
    wait_for(calls._reader.locked, timeout=5)  # "slow" is the reader now, blocked in recv
    quick, quick_outcome = call_in_thread(calls, "quick")
    server(wire.Reply("quick", result="q"))
    quick.join(2)
    assert quick_outcome == [wire.Reply("quick", result="q")] and slow.is_alive()
    server(wire.Reply("slow", result="s"))
    slow.join(2)
    assert slow_outcome == [wire.Reply("slow", result="s")]


def test_when_the_reader_leaves_a_waiting_call_takes_over(calls, server):
    first, first_outcome = call_in_thread(calls, "first", timeout=0.2)
    wait_for(calls._reader.locked, timeout=5)  # "first" reads
    second, second_outcome = call_in_thread(calls, "second", timeout=5.0)
    first.join(2)
    assert isinstance(first_outcome[0], CallTimedOut)
    server(wire.Reply("second", result=2))
    # "second" waits on its own event for up to 5 s: only a promotion makes it read in time.
    second.join(2)
    assert second_outcome == [wire.Reply("second", result=2)]


def test_many_concurrent_calls_each_get_their_reply(calls, server):
    started = [call_in_thread(calls, f"c{n}") for n in range(20)]
    for n in reversed(range(20)):
        server(wire.Reply(f"c{n}", result=n))
    for n, (thread, outcome) in enumerate(started):
        thread.join(5)
        assert outcome == [wire.Reply(f"c{n}", result=n)]


def test_beats_keep_a_monitored_call_alive(calls, server):
    thread, outcome = call_in_thread(calls, "m", timeout=5.0, monitor=0.3)
    for _ in range(4):
        time.sleep(0.15)
        server(wire.Beat("m"))
    assert thread.is_alive()  # 0.6 s in: past one monitor timeout, kept alive by the beats
    server(wire.Reply("m", result="done"))
    thread.join(2)
    assert outcome == [wire.Reply("m", result="done")]


def test_a_silent_monitored_call_times_out(calls):
    thread, outcome = call_in_thread(calls, "m", timeout=5.0, monitor=0.2)
    thread.join(2)
    assert isinstance(outcome[0], CallTimedOut)


def test_stop_cancels_the_reader_and_the_followers(calls):
    waiting = [call_in_thread(calls, f"w{n}", timeout=None) for n in range(3)]
    wait_for(lambda: calls._reader.locked() and len(calls._slots) == 3, timeout=5)
    t0 = time.monotonic()
    calls.stop()
    for thread, outcome in waiting:
        thread.join(2)
        assert isinstance(outcome[0], CallCancelled)
    assert time.monotonic() - t0 < 1.0
    assert calls._socket is None
    with pytest.raises(CallCancelled):
        calls.expect("late")


def test_junk_and_stray_replies_are_dropped(calls, server, context):
    stranger = context.socket(zmq.DEALER)
    stranger.setsockopt(zmq.LINGER, 0)
    stranger.connect(f"tcp://{calls.address}")
    for frames in ([b"junk"], [b"a", b"b"], wire.encode(wire.Request("r", "t", {}, {}))):
        stranger.send_multipart(frames)
    stranger.close()
    server(wire.Reply("nobody-waits", result=1))
    slot = calls.expect("x")
    server(wire.Reply("x", result="ok"))
    assert calls.wait("x", slot, 5.0, None).result == "ok"


def test_a_call_that_never_waits_hands_its_promotion_on(calls, server):
    # A reads; C registers but its request cannot be sent (it is forgotten, never waits); B
    # waits behind A. When A leaves it promotes the first call without a reply: C. C must
    # pass that on when it is forgotten, or B sits out its timeout with its reply unread.
    thread_a, outcome_a = call_in_thread(calls, "a")
    wait_for(calls._reader.locked, timeout=5)
    calls.expect("c")
    thread_b, outcome_b = call_in_thread(calls, "b", timeout=10.0)
    time.sleep(0.2)  # B is waiting on its event, not reading
    server(wire.Reply("a", result=1))
    thread_a.join(5)
    assert outcome_a == [wire.Reply("a", result=1)]
    server(wire.Reply("b", result=2))
    time.sleep(0.2)
    started = time.monotonic()
    calls.forget("c")  # what the driver does when C's send fails
    thread_b.join(5)
    assert outcome_b == [wire.Reply("b", result=2)] and time.monotonic() - started < 2.0


def test_callers_coming_and_going_never_miss_a_reply(calls, server):
    # Eight threads make 150 calls each, the reply sent just before the call starts to wait
    # or, by another thread, about when it does, so calls keep finding another one reading,
    # becoming the reader, and being promoted. A wake-up lost anywhere leaves a call waiting
    # out its timeout.
    failures = []
    later = queue.Queue()

    def replier():  # sends what it is given, while the callers go on to wait
        for message in iter(later.get, None):
            server(message)

    def caller(n):
        for i in range(150):
            msg_id = f"t{n}-{i}"
            slot = calls.expect(msg_id)
            (server if i % 2 else later.put)(wire.Reply(msg_id, result=i))
            try:
                reply = calls.wait(msg_id, slot, 3.0, None)
            except CallTimedOut:
                failures.append(msg_id)
                return
            if reply.result != i:
                failures.append((msg_id, reply))

    sending = threading.Thread(target=replier)
    sending.start()
    threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    later.put(None)
    sending.join(5)
    assert not any(thread.is_alive() for thread in threads + [sending])
    assert failures == []
    assert calls._slots == {} and not calls._reader.locked()


def test_a_promotion_before_the_callers_event_exists_is_not_lost(context, server_for):
    # B finds A reading and makes its event; just then A gets its reply and leaves. A's
    # promotion finds no event to set, so B must look at the reader's lock again before it
    # sleeps, or it waits out its whole timeout with its reply unread.
    class Runtime:
        zmq = THREADING.zmq
        lock = staticmethod(THREADING.lock)
        hook = None

        def event(self):
            if self.hook is not None:
                hook, self.hook = self.hook, None
                hook()
            return THREADING.event()

    runtime = Runtime()
    calls = PendingCalls(context, runtime, "127.0.0.1", "127.0.0.1", 1 << 20).start()
    try:
        send = server_for(calls)
        thread_a, outcome_a = call_in_thread(calls, "a")
        wait_for(calls._reader.locked, timeout=5)

        def a_leaves():
            send(wire.Reply("a", result=1))
            thread_a.join(5)

        runtime.hook = a_leaves
        send(wire.Reply("b", result=2))  # already queued when B starts to wait
        slot = calls.expect("b")
        started = time.monotonic()
        # Unwoken, B would sleep out its 10 s and time out; woken, it reads its queued reply.
        assert calls.wait("b", slot, 10.0, None) == wire.Reply("b", result=2)
        assert time.monotonic() - started < 5.0
        assert outcome_a == [wire.Reply("a", result=1)]
    finally:
        calls.stop()
