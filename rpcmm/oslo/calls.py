"""The caller's side of RPC calls: a reply address and the calls waiting on it.

A driver that makes calls binds one reply socket (a :class:`~rpcmm.oslo.receiver.Receiver`)
and puts its address in every request; servers send the reply, and call-monitor beats, there.
:class:`PendingCalls` matches each reply to the waiting call by request id. A reply that
matches no waiting call (its caller timed out, or a hostile sender made it up) is dropped.

Thread-safety: :meth:`PendingCalls.expect`, :meth:`PendingCalls.wait` and
:meth:`PendingCalls.forget` may be called from any thread, for many calls at once; replies are
delivered from the receiver's task.
"""

import logging
import time

from rpcmm.oslo import wire
from rpcmm.oslo.receiver import Receiver

__all__ = ["PendingCalls", "CallTimedOut", "CallCancelled"]

LOG = logging.getLogger(__name__)


class CallTimedOut(Exception):
    """No reply came within the call's timeout, or no beat within its monitor timeout."""


class CallCancelled(Exception):
    """The driver was cleaned up while the call was waiting."""


class _Slot:
    """One waiting call; written by the receiver's task, read by the caller."""

    __slots__ = ("done", "reply", "last_beat")

    def __init__(self, runtime):
        self.done = runtime.event()
        self.reply = None
        self.last_beat = time.monotonic()


class PendingCalls:
    """Calls waiting for replies, and the socket their replies arrive on.

    Lifecycle: :meth:`start` binds the reply socket (:attr:`address` is then its
    ``host:port``); :meth:`stop` closes it and wakes every waiting call with CallCancelled.
    """

    def __init__(self, context, runtime, listen_host, advertise_host, max_message_bytes, curve=None):
        self._runtime = runtime
        self._lock = runtime.lock()
        self._slots = {}
        self._stopped = False
        self._receiver = Receiver(
            context, runtime, self._deliver, listen_host, advertise_host, max_message_bytes,
            name="rpcmm-oslo-replies", curve=curve,
        )

    @property
    def address(self):
        return self._receiver.address

    def start(self):
        self._receiver.start()
        return self

    def stop(self):
        with self._lock:
            self._stopped = True
            slots, self._slots = list(self._slots.values()), {}
        for slot in slots:
            slot.done.set()
        self._receiver.stop()

    def expect(self, msg_id):
        """Register a call before its request is sent, so a fast reply is not missed."""
        slot = _Slot(self._runtime)
        with self._lock:
            if self._stopped:
                raise CallCancelled("the transport is cleaned up")
            self._slots[msg_id] = slot
        return slot

    def forget(self, msg_id):
        with self._lock:
            self._slots.pop(msg_id, None)

    def wait(self, msg_id, slot, timeout, monitor_timeout):
        """The call's :class:`~rpcmm.oslo.wire.Reply`, or CallTimedOut after ``timeout`` seconds
        (None: no limit) or after ``monitor_timeout`` seconds without a reply or a beat."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                now = time.monotonic()
                limits = []
                if deadline is not None:
                    limits.append(deadline - now)
                if monitor_timeout is not None:
                    limits.append(slot.last_beat + monitor_timeout - now)
                wait_for = min(limits) if limits else None
                if wait_for is not None and wait_for <= 0:
                    raise CallTimedOut()
                if slot.done.wait(wait_for):
                    if slot.reply is None:
                        raise CallCancelled("the transport was cleaned up during the call")
                    return slot.reply
                # Woken by a limit: loop, since a beat may have moved the monitor's one.
        finally:
            self.forget(msg_id)

    def _deliver(self, frames):
        """Receiver task: route a reply or beat to its call."""
        message = wire.decode(frames)
        if isinstance(message, wire.Request):
            LOG.debug("a request arrived on the reply socket; dropped")
            return
        with self._lock:
            slot = self._slots.get(message.msg_id)
        if slot is None:
            LOG.debug("reply for %s, which nobody waits for (timed out?); dropped", message.msg_id)
            return
        if isinstance(message, wire.Beat):
            slot.last_beat = time.monotonic()
            return
        slot.reply = message
        slot.done.set()
