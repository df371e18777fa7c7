"""A bound ROUTER socket and the one task that reads it.

A listener receives requests this way. The socket is created, bound, read and closed by the
same background task, so no other thread ever touches it (zmq sockets are not thread-safe); the
only way in from outside is a message. :meth:`Receiver.stop` wakes the task with
:func:`~rpcmm.runtime.send_wake_token`, which works the same with plain threads and with
eventlet's green zmq: while it serves, the task blocks in a receive, with no polling loop or
receive timeout.

A stop may drain first (``stop(quiet=...)``): the task goes on reading, polling now, until the
socket has stayed empty for ``quiet`` seconds. The task itself decides that, from the socket: a timer in
another thread could not tell "nothing arrived" from "the reader did not get to run" (under
eventlet a green thread that holds the hub delays the reader, and the timer fires first).

The caller's reply socket (:mod:`rpcmm.oslo.calls`) is bound and read with the same helpers,
:func:`bind_router` and :func:`receive_routed`, but by the waiting callers themselves.
"""

import logging
import os
import threading
import time
import uuid

import zmq

from rpcmm.addressing import Endpoint
from rpcmm.errors import LifecycleError, ProtocolError
from rpcmm.logutil import RateLimitedLogger
from rpcmm.runtime import send_wake_token
from rpcmm.security import secure_server_socket

__all__ = ["Receiver", "bind_router", "receive_routed"]

LOG = logging.getLogger(__name__)

#: Messages queued in the socket before zmq stops reading from peers (back pressure).
_RECEIVE_HIGH_WATER_MARK = 100_000
#: Messages read in a row before the reading task yields to others.
_YIELD_EVERY = 16
#: How long stop() waits for the reading task.
_JOIN_TIMEOUT = 5.0
#: Plain ints (the same in eventlet's green zmq): pyzmq converts enum options per call.
_RCVMORE = int(zmq.RCVMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


class Receiver:
    """Reads messages from a ROUTER bound on ``tcp://<listen_host>:*`` and hands them on.

    ``curve`` (a :class:`~rpcmm.security.LoadedCurveServerConfig`) makes the socket a CURVE
    server. ``handle(frames)`` is called in the reading task with the frames after the sender's
    identity, one message at a time; it must be quick. It refuses a message by raising
    ProtocolError (logged with one rate limit per receiver); anything else it raises is a bug,
    logged in full, and the message is dropped either way. ``advertise_host`` is the address
    peers are told. ``on_failure()``, if given, is called in the reading task when a receive
    fails and the task ends with nothing more to read (the socket is closed after it returns).

    Lifecycle: the constructor does nothing; :meth:`start` binds (raising zmq errors, e.g. a bad
    ``listen_host``) and starts the task; :attr:`address` is then ``host:port``;
    :meth:`stop` wakes the task, which closes the socket, and joins it (unless ``handle`` itself
    called it: then the task ends when ``handle`` returns). Idempotent.
    """

    def __init__(self, context, runtime, handle, listen_host, advertise_host, max_message_bytes,
                 name="rpcmm-oslo-receiver", curve=None, on_failure=None):
        self._context = context
        self._on_failure = on_failure
        self._curve = curve
        self._runtime = runtime
        self._handle = handle
        self._listen = Endpoint(listen_host, 0)
        self._advertise_host = advertise_host
        self._max_message_bytes = max_message_bytes
        self._name = name
        self._token = os.urandom(16)
        self._drain_token = os.urandom(16)
        self._drain_for = (0.0, 0.0)  # (quiet, timeout) of the drain asked for, read by the task
        self._stop_sent = False  # the plain stop token is on its way: one is enough
        self._wake_address = f"inproc://rpcmm-oslo-wake-{uuid.uuid4().hex}"
        self._ready = runtime.event()
        self._start_error = None
        self._task = None
        self._reader_ident = None
        self.address = None
        self._drops = RateLimitedLogger(LOG)

    def start(self):
        """Bind and start reading; returns self once the socket is bound."""
        if self._task is not None:
            raise LifecycleError("a Receiver starts once")
        self._task = self._runtime.spawn(self._run, self._name)
        self._ready.wait()
        if self._start_error is not None:
            self._task.join(_JOIN_TIMEOUT)
            raise self._start_error
        return self

    def in_reading_task(self):
        """True when called from the reading task (that is, from ``handle``)."""
        return threading.get_ident() == self._reader_ident

    def stop(self, quiet=0.0, timeout=0.0):
        """Stop reading and close the socket; messages not yet read are discarded.

        With ``quiet`` and ``timeout`` (seconds), drain first: go on reading and handling until
        the socket has been empty for ``quiet`` seconds, for at most ``timeout``. A plain
        ``stop()`` from another thread meanwhile cuts the drain short. Called from ``handle``
        itself, it never drains or waits: the task ends once ``handle`` returns."""
        task = self._task
        if task is None or not task.is_alive():
            self._task = None
            return
        # Called by the handler itself (e.g. an oslo server stopped from one of its own
        # callbacks): the token ends the loop once the handler returns; nothing to join.
        inside = self.in_reading_task()
        drain = quiet > 0 and timeout > 0 and not inside
        if drain:
            self._drain_for = (quiet, timeout)  # written before the token that makes it read
            token = self._drain_token
        elif not self._stop_sent:
            self._stop_sent = True  # one stop token is enough: a second stop only waits
            token = self._token
        else:
            token = None
        if token is not None:
            zmq = self._runtime.zmq
            send_wake_token(self._context, zmq, zmq.DEALER, self._wake_address, token)
        if inside:
            self._task = None  # it ends once the handler returns
            return
        wait = _JOIN_TIMEOUT + (timeout if drain else 0.0)
        task.join(wait)
        if task.is_alive():
            LOG.error("%s did not stop within %gs", self._name, wait)
        else:
            self._task = None

    # -- the reading task: owns the socket from creation to close ------------------------------

    def _run(self):
        self._reader_ident = threading.get_ident()
        try:
            socket, port = self._bind()
        except Exception as exc:  # reported to start()'s caller
            self._start_error = exc
            self._ready.set()
            return
        self.address = str(Endpoint(self._advertise_host, port))
        self._ready.set()
        try:
            if self._read(socket):
                self._drain(socket)
        finally:
            socket.close()
            self._reader_ident = None  # a later thread may get this id

    def _bind(self):
        return bind_router(self._context, self._runtime.zmq, self._listen, self._max_message_bytes,
                           self._curve, self._wake_address)

    def _read(self, socket):
        """Read and handle until a wake token arrives; True if it asks for a drain."""
        read = 0
        while True:
            try:
                frames = receive_routed(socket)
            except Exception:
                LOG.exception("%s: receive failed; the receiver stops", self._name)
                self._failed()
                return False
            if len(frames) == 2 and frames[1] in (self._token, self._drain_token):
                return frames[1] == self._drain_token
            self._deliver(frames)
            read += 1
            if read % _YIELD_EVERY == 0:
                # A green recv only yields when the socket is empty: under a steady stream
                # this task would starve every other green thread (the executor, the
                # heartbeat, an in-process registry). sleep(0) yields under eventlet and
                # costs next to nothing with plain threads.
                time.sleep(0)

    def _failed(self):
        if self._on_failure is None:
            return
        try:
            self._on_failure()
        except Exception:
            LOG.exception("%s: its failure handler failed", self._name)

    def _deliver(self, frames):
        try:
            self._handle(frames[1:])
        except ProtocolError as exc:
            self._drops.log("%s: dropped a message: %s", self._name, exc)
        except Exception:
            LOG.exception("%s: dropped a message its handler could not take", self._name)

    def _drain(self, socket):
        """Read and handle until the socket stayed empty for ``quiet`` seconds, for at most
        ``timeout``, or until a stop token arrives (see :meth:`stop`)."""
        quiet, timeout = self._drain_for
        quiet = min(quiet, timeout)  # a drain shorter than the quiet time is just that long
        started = last = time.monotonic()  # last: when the latest message was read
        deadline = started + timeout
        drained = 0
        while True:
            now = time.monotonic()
            if now - last >= quiet:
                LOG.debug("%s: drained %d messages in %.3fs after unregistering", self._name, drained,
                          now - started)
                return
            if now >= deadline:
                LOG.warning("%s: still receiving %.1fs after unregistering (%d messages since); closing: "
                            "peers still sending here may time out", self._name, now - started, drained)
                return  # (reached only with a message within the last quiet time: see above)
            ready = self._runtime.poll([(socket, _POLLIN)], min(last + quiet, deadline) - now)
            # An empty poll may have come back late (its thread was not run in time): what the
            # socket holds now decides, not the timer.
            if not ready and not socket.getsockopt(_EVENTS) & _POLLIN:
                continue  # the loop looks at the time again
            try:
                frames = receive_routed(socket)  # readable: never blocks
            except Exception:
                LOG.exception("%s: receive failed while draining; the receiver stops", self._name)
                return
            if len(frames) == 2 and frames[1] in (self._token, self._drain_token):
                if frames[1] == self._token:
                    return  # cut short
                continue
            self._deliver(frames)
            drained += 1
            last = time.monotonic()
            if drained % _YIELD_EVERY == 0:
                time.sleep(0)  # as in _read


def bind_router(context, zmq, listen, max_message_bytes, curve, wake_address):
    """A ROUTER bound on ``listen`` (an Endpoint whose port 0 lets the OS pick) and on the
    ``inproc://`` ``wake_address``; returns ``(socket, port)``. Raises zmq errors (e.g. a bad
    address), closing the socket first. ``curve`` (a LoadedCurveServerConfig) secures the tcp
    endpoint; the inproc one has no handshake (only this process can reach it)."""
    socket = context.socket(zmq.ROUTER)
    try:
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, _RECEIVE_HIGH_WATER_MARK)
        # zmq drops oversized messages before they are read (a hostile peer's memory bomb).
        socket.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        if listen.is_ipv6:
            socket.setsockopt(zmq.IPV6, 1)
        if curve is not None:
            secure_server_socket(socket, curve)
        socket.bind(listen.zmq_address())
        port = int(socket.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])
        socket.bind(wake_address)
    except Exception:
        socket.close()
        raise
    return socket, port


def receive_routed(socket):
    """One message from a ROUTER, ``[identity, frame, ...]``; waits and raises as ``recv`` does.

    Not ``recv_multipart``, which reads RCVMORE through an enum conversion after every frame
    (a few µs a message, measured on the registry's loop): a ROUTER message always has the
    sender's identity and one frame more, both there once the first is, so only a third frame
    needs the check.
    """
    frames = [socket.recv(), socket.recv()]
    while socket.getsockopt(_RCVMORE):
        frames.append(socket.recv())
    return frames
