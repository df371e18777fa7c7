"""Outgoing connections: one DEALER per peer address, shared by every thread of a driver.

A driver sends requests to listeners and replies to callers through one :class:`Outbox`. Each
remote ``host:port`` gets one DEALER, connected on first use and kept for the next message
(zmq reconnects by itself if the peer restarts). Every socket operation happens under one
lock, which is what makes the sockets safe to share between threads; sends never block
(``NOBLOCK``), so the lock is only ever held for microseconds.

At most ``max_peers`` connections stay open: beyond that the least recently used is closed,
so a process that talked to many short-lived peers does not keep their sockets for ever.
"""

import collections
import logging

from rpcmm.addressing import Endpoint
from rpcmm.errors import ConfigurationError, LifecycleError
from rpcmm.security import secure_client_socket

__all__ = ["Outbox", "PeerBusy", "PeerUnreachable", "MessageTooLarge"]

LOG = logging.getLogger(__name__)

#: Messages queued for one peer before sends to it fail with PeerBusy (a dead or stuck peer).
_SEND_HIGH_WATER_MARK = 10_000
#: Milliseconds a closed socket keeps trying to deliver what is queued: long enough for a
#: cast sent just before cleanup to leave, short enough that closing never hangs.
_LINGER_MS = 1000


class PeerBusy(Exception):
    """Nothing could be handed to a peer: its send queue is full (it is dead, unreachable or
    not reading), or its address cannot be connected to (see PeerUnreachable)."""


class PeerUnreachable(PeerBusy):
    """A peer's address is not one zmq can connect to (e.g. a bare host name from a static
    ring: the driver's hosts are ``host:port``)."""


class MessageTooLarge(Exception):
    """A message over ``max_message_bytes``: the receiver's zmq would refuse it by dropping the
    whole connection, and with it whatever else was queued on it, so it is never sent."""


class Outbox:
    """Send-only DEALER sockets to peers, keyed by ``host:port``; thread-safe.

    ``curve`` (a :class:`~rpcmm.security.LoadedCurveClientConfig`) makes every connection a
    CURVE client. The outbox owns its sockets; the caller owns ``context`` and must :meth:`close` the outbox
    before terming it. :meth:`send` raises :class:`PeerBusy` when the peer's queue is full or its address
    cannot be connected to, MessageTooLarge for a message over ``max_message_bytes`` (what every
    receiver of the deployment takes), and LifecycleError after :meth:`close`.
    """

    def __init__(self, context, runtime, max_peers, curve=None, max_message_bytes=None):
        self._context = context
        self._max_message_bytes = max_message_bytes  # None: no limit checked here
        self._curve = curve
        self._zmq = runtime.zmq
        self._noblock = int(runtime.zmq.NOBLOCK)  # a plain int: enum flags cost a call each
        self._lock = runtime.lock()
        self._max_peers = max_peers
        self._sockets = collections.OrderedDict()  # address -> socket, least recently used first
        self._closed = False

    def send(self, address, frames):
        """Queue ``frames`` for the peer at ``address``; returns at once. MessageTooLarge if they
        add up to more than ``max_message_bytes`` (nothing is sent)."""
        zmq = self._zmq
        limit = self._max_message_bytes
        if limit is not None:
            size = len(frames[0]) if len(frames) == 1 else sum(map(len, frames))
            if size > limit:
                raise MessageTooLarge(f"a message of {size} bytes is over max_message_bytes ({limit})")
        with self._lock:
            if self._closed:
                raise LifecycleError("the outbox is closed")
            socket = self._sockets.get(address)
            if socket is None:
                try:
                    socket = self._connect(address)
                except (ConfigurationError, zmq.ZMQError) as exc:
                    raise PeerUnreachable(f"cannot connect to {address!r}: {exc}") from None
            else:
                self._sockets.move_to_end(address)
            try:
                if len(frames) == 1:  # every envelope today: skip send_multipart's checks
                    socket.send(frames[0], self._noblock)
                else:
                    socket.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                raise PeerBusy(f"the send queue to {address} is full") from None

    def close(self):
        """Close every connection (each lingers at most a second); idempotent."""
        with self._lock:
            self._closed = True
            sockets, self._sockets = list(self._sockets.values()), collections.OrderedDict()
        for socket in sockets:
            socket.close()

    def __len__(self):
        return len(self._sockets)

    def _connect(self, address):
        zmq = self._zmq
        endpoint = Endpoint.parse(address)
        while len(self._sockets) >= self._max_peers:
            _, oldest = self._sockets.popitem(last=False)
            oldest.close()
        socket = self._context.socket(zmq.DEALER)
        try:
            socket.setsockopt(zmq.LINGER, _LINGER_MS)
            socket.setsockopt(zmq.SNDHWM, _SEND_HIGH_WATER_MARK)
            if endpoint.is_ipv6:
                socket.setsockopt(zmq.IPV6, 1)
            if self._curve is not None:
                secure_client_socket(socket, self._curve)
            socket.connect(endpoint.zmq_address())
        except Exception:
            socket.close(linger=0)
            raise
        self._sockets[address] = socket
        return socket
