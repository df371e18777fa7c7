"""The caller's side of RPC calls: a reply address and the calls waiting on it.

A driver that makes calls binds one reply socket (a ROUTER) and puts its address in every
request; servers send the reply, and call-monitor beats, there. :class:`PendingCalls` matches
each reply to the waiting call by request id. A reply that matches no waiting call (its caller
timed out, or a hostile sender made it up) is dropped.

Who reads the socket: the waiting callers themselves, one at a time (leader/followers). The
first caller to wait becomes the *reader*: it receives from the socket until its own reply
arrives, handing every other reply to its call on the way. The others wait on their own event.
When the reader leaves, it wakes one waiting caller, which becomes the next reader. So a lone
call is woken by zmq itself when its reply arrives, instead of by a reading thread that then
wakes it: one thread hand-off less on every call (profiles in ``doc/performance.rst``), and
no thread at all while nobody waits. Replies that arrive while nobody waits stay queued in zmq
and are read (and dropped, if late) by the next reader. A call makes its event only once it
finds another caller reading: a lone call, the common case, never needs one.

Thread-safety: :meth:`PendingCalls.expect`, :meth:`PendingCalls.wait` and
:meth:`PendingCalls.forget` may be called from any thread (or green thread), for many calls at
once. zmq sockets are not thread-safe: only the holder of the reader lock touches the socket
(zmq allows a socket to move between threads across such a barrier), and :meth:`stop` closes
it while holding that lock.
"""

import logging
import os
import time
import uuid

import zmq

from rpcmm.addressing import Endpoint
from rpcmm.errors import LifecycleError, ProtocolError
from rpcmm.logutil import RateLimitedLogger
from rpcmm.oslo import wire
from rpcmm.oslo.receiver import bind_router, receive_routed
from rpcmm.runtime import send_wake_token

__all__ = ["PendingCalls", "CallTimedOut", "CallCancelled"]

LOG = logging.getLogger(__name__)

#: How long stop() waits for a reader to leave the socket (it is woken at once).
_STOP_TIMEOUT = 5.0
#: A plain int (the same in eventlet's green zmq): pyzmq converts enum options per call.
_RCVTIMEO = int(zmq.RCVTIMEO)


class CallTimedOut(Exception):
    """No reply came within the call's timeout, or no beat within its monitor timeout."""


class CallCancelled(Exception):
    """The driver was cleaned up while the call was waiting."""


class _Slot:
    """One waiting call. ``reply`` is written once, by whoever reads the socket, before
    ``wake`` is set; ``wake`` is also set to make the call the next reader (or on stop).

    ``wake`` stays None until the call first finds another caller reading (see
    :meth:`PendingCalls.wait`): whoever sets it reads it after writing what it announces, and
    the call looks again after making it, so nothing set before the event existed is missed.
    """

    __slots__ = ("msg_id", "wake", "reply", "last_beat")

    def __init__(self, msg_id):
        self.msg_id = msg_id
        self.wake = None
        self.reply = None
        self.last_beat = time.monotonic()


class PendingCalls:
    """Calls waiting for replies, and the socket their replies arrive on.

    Lifecycle: :meth:`start` binds the reply socket on ``listen_host`` (:attr:`address` is
    then ``advertise_host:port``; zmq errors such as a bad address are raised); :meth:`stop`
    wakes every waiting call with CallCancelled and closes the socket. Idempotent.
    """

    def __init__(self, context, runtime, listen_host, advertise_host, max_message_bytes, curve=None):
        self._context = context
        self._runtime = runtime
        self._zmq = runtime.zmq
        self._listen = Endpoint(listen_host, 0)
        self._advertise_host = advertise_host
        self._max_message_bytes = max_message_bytes
        self._curve = curve
        self._lock = runtime.lock()  # guards _slots and _stopped
        self._reader = runtime.lock()  # held by the one caller that reads the socket
        self._slots = {}
        self._stopped = False
        self._socket = None
        self._token = os.urandom(16)
        self._wake_address = f"inproc://rpcmm-oslo-replies-{uuid.uuid4().hex}"
        self._drops = RateLimitedLogger(LOG)  # used by the reader only, one at a time
        self.address = None

    def start(self):
        if self._socket is not None or self._stopped:
            raise LifecycleError("PendingCalls starts once")
        self._socket, port = bind_router(self._context, self._zmq, self._listen,
                                         self._max_message_bytes, self._curve, self._wake_address)
        self.address = str(Endpoint(self._advertise_host, port))
        return self

    def stop(self):
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            slots, self._slots = list(self._slots.values()), {}
        for slot in slots:
            wake = slot.wake  # a call without one has not slept yet: it sees _stopped itself
            if wake is not None:
                wake.set()
        self._wake_reader()
        acquired = self._reader.acquire(timeout=_STOP_TIMEOUT)
        if not acquired:
            LOG.error("a caller kept the reply socket for %gs after stop; closing it anyway",
                      _STOP_TIMEOUT)
        try:
            socket, self._socket = self._socket, None
            if socket is not None:
                socket.close()
        finally:
            if acquired:  # releasing the reader's lock would make its own release raise
                self._reader.release()

    def _wake_reader(self):
        """Make a reader blocked in recv return: the token arrives on the socket's inproc end."""
        if self._socket is None:
            return
        send_wake_token(self._context, self._zmq, self._zmq.DEALER, self._wake_address, self._token)

    def expect(self, msg_id):
        """Register a call before its request is sent, so a fast reply is not missed."""
        slot = _Slot(msg_id)
        with self._lock:
            if self._stopped:
                raise CallCancelled("the transport is cleaned up")
            self._slots[msg_id] = slot
        return slot

    def forget(self, msg_id):
        """Drop the call ``msg_id`` (its wait is over, or it never started: its request could
        not be sent). If nobody reads the socket, a waiting call is made the reader: one that
        leaves may have been the one just promoted, and then nobody else would be woken."""
        with self._lock:
            self._slots.pop(msg_id, None)
            if self._reader.locked():
                return  # someone reads; it promotes the next one when it leaves
            # Only a call that sleeps needs waking: one without an event is still on its way
            # to try the reader's lock itself.
            waiting = next((s for s in self._slots.values() if s.reply is None and s.wake is not None), None)
        if waiting is not None:
            waiting.wake.set()

    def wait(self, msg_id, slot, timeout, monitor_timeout):
        """The call's :class:`~rpcmm.oslo.wire.Reply`, or CallTimedOut after ``timeout`` seconds
        (None: no limit) or after ``monitor_timeout`` seconds without a reply or a beat;
        CallCancelled if the transport is stopped meanwhile."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                wake = slot.wake
                if wake is not None:
                    # Clear first: a reply or promotion after this line sets the event again.
                    wake.clear()
                if slot.reply is not None:
                    return slot.reply
                if self._stopped:
                    raise CallCancelled("the transport was cleaned up during the call")
                wait_for = _time_left(slot, deadline, monitor_timeout)
                if self._reader.acquire(blocking=False):
                    try:
                        self._read_until(slot, deadline, monitor_timeout)
                    finally:
                        self._reader.release()
                    continue
                if wake is None:
                    # Another caller reads: from now on this call can be woken, by its reply or
                    # a promotion. Round the loop once more before sleeping, so that neither
                    # one that came before the event existed is missed.
                    slot.wake = self._runtime.event()
                    continue
                wake.wait(wait_for)
        finally:
            # Whoever leaves may leave nobody reading (the reader, or a caller that was made
            # reader as its own reply came): forget() hands the socket to one still waiting.
            self.forget(msg_id)

    def _read_until(self, slot, deadline, monitor_timeout):
        """As the reader: receive and hand out messages until ``slot`` has its reply, its time
        is up (the caller's loop then raises), or the transport stops."""
        zmq, socket = self._zmq, self._socket
        if socket is None:  # stopped and closed while this caller waited for the lock
            return
        while slot.reply is None and not self._stopped:
            try:
                wait_for = _time_left(slot, deadline, monitor_timeout)
            except CallTimedOut:
                return
            # A blocking receive with a timeout rather than a poll: green under eventlet.
            socket.setsockopt(_RCVTIMEO, -1 if wait_for is None else max(1, int(wait_for * 1000) + 1))
            try:
                frames = receive_routed(socket)
            except zmq.Again:
                continue  # the loop looks at the time again
            if len(frames) == 2 and frames[1] == self._token:
                return  # stop() woke us; it closes the socket once we let go
            try:
                self._deliver(frames[1:], slot)
            except ProtocolError as exc:
                self._drops.log("reply socket: dropped a message: %s", exc)
            except Exception:
                LOG.exception("reply socket: dropped a message that could not be handled")

    def _deliver(self, frames, own):
        """As the reader, whose call is ``own``: route a reply or beat to its call."""
        message = wire.decode(frames)
        kind = type(message)
        if kind is wire.Request:
            raise ProtocolError("a request arrived on the reply socket")
        msg_id = message.msg_id
        if msg_id == own.msg_id:
            slot = own  # most often: a lone call reading its own reply
        else:
            with self._lock:
                slot = self._slots.get(msg_id)
            if slot is None:
                LOG.debug("reply for %s, which nobody waits for (timed out?); dropped", msg_id)
                return
        if kind is wire.Beat:
            slot.last_beat = time.monotonic()
            return
        slot.reply = message
        wake = slot.wake  # read after the reply is written: see _Slot
        if wake is not None:
            wake.set()


def _time_left(slot, deadline, monitor_timeout):
    """Seconds the call may still wait (None: no limit); CallTimedOut if none are left."""
    now = time.monotonic()
    limits = []
    if deadline is not None:
        limits.append(deadline - now)
    if monitor_timeout is not None:
        limits.append(slot.last_beat + monitor_timeout - now)
    if not limits:
        return None
    left = min(limits)
    if left <= 0:
        raise CallTimedOut()
    return left
