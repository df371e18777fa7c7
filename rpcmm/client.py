"""The client side of the registry protocol: casts to every registry, calls with failover.

:class:`RegistryClient` owns two DEALER sockets per registry: one for casts (HEARTBEAT,
UNREGISTER), one for calls (LOOKUP, LIST). Keeping them apart means a lookup waiting on a slow
registry never delays a heartbeat. Each group is guarded by its own lock, so every method is
thread-safe.

Casts go to every registry and never block: they queue in zmq while a registry is
unreachable, and beyond the high-water mark they are dropped (the next heartbeat carries the
same full state). Call sockets set ZMQ_IMMEDIATE, so a call to a registry that has no live
connection fails at once and the client moves to the next one instead of waiting out its
timeout; a registry that is connected but silent costs one timeout. A reply that arrives after
its call gave up is recognised by its request id and discarded.
"""

import itertools
import logging
import random
import time

from rpcmm import protocol
from rpcmm.errors import LifecycleError, ProtocolError, RegistryUnavailable
from rpcmm.runtime import default_runtime
from rpcmm.security import secure_client_socket

__all__ = ["RegistryClient", "DEFAULT_LOOKUP_TIMEOUT"]

LOG = logging.getLogger(__name__)

#: Seconds to wait for one registry's answer before trying the next.
DEFAULT_LOOKUP_TIMEOUT = 0.5
#: Casts queued per registry while it is unreachable: each heartbeat carries full state, so
#: only the latest few matter, and a registry that comes back gets a few, not a backlog.
_CAST_HIGH_WATER_MARK = 64
#: Each socket retries a registry that went away every 100-300 ms (drawn once per socket), so
#: thousands of hosts do not all reconnect and flush their queues in the same instant. An
#: attempt may fail just before a restarted registry binds, so a host is back within two of
#: these (0.6 s at most), inside the default heartbeat interval.
_RECONNECT_MS = (100, 300)
_NOT_CONNECTED = object()
#: Milliseconds close() waits to flush queued casts (the final UNREGISTER) to live registries.
_CAST_LINGER_MS = 500


class RegistryClient:
    """Talks to the registries at ``endpoints`` (Endpoint objects, in seed order).

    ``context`` is the zmq context to use; the client never terms it. ``curve`` (a
    :class:`~rpcmm.security.LoadedCurveClientConfig`) makes every socket a CURVE client of the
    registries' public key. Lifecycle:
    :meth:`start` connects (no blocking: zmq connects in the background), :meth:`close`
    closes every socket without lingering.
    """

    def __init__(self, endpoints, context, runtime=None, timeout=DEFAULT_LOOKUP_TIMEOUT, curve=None):
        if not endpoints:
            raise ValueError("a RegistryClient needs at least one registry endpoint")
        if not timeout > 0:
            raise ValueError("lookup timeout must be positive")
        self.endpoints = tuple(endpoints)
        self.timeout = timeout
        self.runtime = runtime if runtime is not None else default_runtime()
        self.curve = curve
        self._context = context
        self._cast_lock = self.runtime.lock()
        self._call_lock = self.runtime.lock()
        self._cast_sockets = None
        self._call_sockets = None
        self._request_ids = itertools.count(random.getrandbits(32))
        # Start at a random registry so clients spread over them; then stick to whichever answered.
        self._preferred = random.randrange(len(self.endpoints))

    def start(self):
        zmq = self.runtime.zmq
        made = []
        try:
            for immediate in (False, True):
                for endpoint in self.endpoints:
                    made.append(self._connect(endpoint, zmq, immediate))
        except BaseException:  # e.g. an address zmq refuses: close what was made, or term() hangs
            for socket in made:
                socket.close(linger=0)
            raise
        count = len(self.endpoints)
        self._cast_sockets, self._call_sockets = made[:count], made[count:]
        return self

    def _connect(self, endpoint, zmq, immediate):
        socket = self._context.socket(zmq.DEALER)
        try:
            self._configure(socket, endpoint, zmq, immediate)
        except BaseException:
            socket.close(linger=0)
            raise
        return socket

    def _configure(self, socket, endpoint, zmq, immediate):
        socket.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_REPLY_BYTES)  # what a registry may send back
        if immediate:
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.IMMEDIATE, 1)
        else:
            socket.setsockopt(zmq.LINGER, _CAST_LINGER_MS)
            socket.setsockopt(zmq.SNDHWM, _CAST_HIGH_WATER_MARK)
        socket.setsockopt(zmq.RECONNECT_IVL, random.randint(*_RECONNECT_MS))
        if self.curve is not None:
            secure_client_socket(socket, self.curve)
        if endpoint.is_ipv6:
            socket.setsockopt(zmq.IPV6, 1)
        socket.connect(endpoint.zmq_address())

    @property
    def preferred_endpoint(self):
        """The registry this client asks first (the last one that answered)."""
        return self.endpoints[self._preferred]

    def close(self):
        """Close every socket; idempotent.

        Queued casts (such as a final UNREGISTER) get up to half a second to reach live
        registries when the owner terms the context; pending calls are dropped.
        """
        with self._cast_lock, self._call_lock:
            for socket in (self._cast_sockets or []) + (self._call_sockets or []):
                socket.close()
            self._cast_sockets = self._call_sockets = None

    # -- casts -------------------------------------------------------------------------------

    def cast(self, message):
        """Send ``message`` to every registry without waiting; return how many took it."""
        frame = protocol.encode(message)
        zmq = self.runtime.zmq
        sent = 0
        with self._cast_lock:
            for endpoint, socket in zip(self.endpoints, self._require(self._cast_sockets)):
                try:
                    socket.send(frame, zmq.NOBLOCK)
                    sent += 1
                except zmq.Again:
                    LOG.debug("registry %s is not taking casts (queue full); dropped one", endpoint)
        return sent

    # -- calls -------------------------------------------------------------------------------

    def lookup(self, topic):
        """Ask a registry for ``topic``: ``(Hosts reply, endpoint that answered)``.

        An answer from a registry that is UP is preferred: a WARMING or DEGRADED answer is kept
        while the other registries are asked, and returned only if none of them does better.
        """
        return self._call(lambda rid: protocol.Lookup(rid, topic), protocol.Hosts, topic)

    def list_hosts(self):
        """The whole table of a registry (UP preferred): ``(Table reply, endpoint that answered)``.

        A registry lists its table in pages that each fit a message; the first page comes from
        whichever registry answers, the rest from that same one, and the reply returned holds
        every row. Other calls may run between two pages. RegistryUnavailable if no registry
        answers, or if the one listing stops answering midway; ProtocolError if its pages are
        not in order past their cursor (:func:`~rpcmm.protocol.check_page`) or add up to more
        than protocol.MAX_LISTED_HOSTS.
        """
        first, endpoint = self._call(protocol.ListHosts, protocol.Table, None)
        index, page, after, rows = self.endpoints.index(endpoint), first, "", []
        while True:
            protocol.check_page(page, after)
            rows += page.rows
            if len(rows) > protocol.MAX_LISTED_HOSTS:
                raise ProtocolError(f"registry {endpoint} lists more than {protocol.MAX_LISTED_HOSTS} hosts")
            if not page.next_after:
                return protocol.Table(first.request_id, tuple(rows), first.state), endpoint
            after = page.next_after
            with self._call_lock:
                page = self._ask(self._require(self._call_sockets), index,
                                 lambda rid: protocol.ListHosts(rid, after), protocol.Table)
            if page is None or page is _NOT_CONNECTED:
                raise RegistryUnavailable(None, (endpoint,), self.timeout)

    def status(self, index):
        """The Health of registry number ``index`` alone, or None if it does not answer."""
        with self._call_lock:
            sockets = self._require(self._call_sockets)
            request_id = next(self._request_ids)
            if not self._send_when_connected(sockets[index], protocol.encode(protocol.Status(request_id))):
                return None
            return self._await(sockets[index], request_id, protocol.Health, self.timeout)

    def suspect(self, hosts):
        """Tell every registry this client could not reach ``hosts``."""
        return self.cast(protocol.Suspect(tuple(hosts)))

    @staticmethod
    def _require(sockets):
        if sockets is None:
            raise LifecycleError("RegistryClient is not started")
        return sockets

    def _call(self, make_request, reply_type, topic):
        with self._call_lock:
            sockets = self._require(self._call_sockets)
            count = len(sockets)
            order = [(self._preferred + i) % count for i in range(count)]
            answer = self._best_answer(self._attempts(sockets, order, make_request, reply_type))
            if answer is not None:
                return answer
        raise RegistryUnavailable(topic, self.endpoints, self.timeout)

    def _attempts(self, sockets, order, make_request, reply_type):
        """Ask the registries in ``order`` that have a live connection, then give the others one
        timeout to connect (a client that just started has none yet) and ask each as it does.
        Yields ``(index, reply or None)``; the caller stops as soon as it is satisfied."""
        unconnected = []
        for index in order:
            reply = self._ask(sockets, index, make_request, reply_type)
            if reply is _NOT_CONNECTED:
                unconnected.append(index)
                continue
            if reply is None:
                LOG.warning("registry %s did not answer within %gs; trying the next", self.endpoints[index],
                            self.timeout)
            yield index, reply
        zmq = self.runtime.zmq
        deadline = time.monotonic() + self.timeout
        while unconnected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            ready = self.runtime.poll([(sockets[index], zmq.POLLOUT) for index in unconnected], remaining)
            for index in [i for i in unconnected if sockets[i] in ready]:
                unconnected.remove(index)
                reply = self._ask(sockets, index, make_request, reply_type)
                if reply is not _NOT_CONNECTED:
                    yield index, reply

    def _best_answer(self, attempts):
        """The first answer from a registry that is UP (which becomes the one asked first next
        time), else the first answer at all, else None: ``(reply, endpoint)``."""
        fallback = None
        for index, reply in attempts:
            if reply is None:
                continue
            if reply.state is protocol.State.UP:
                self._preferred = index
                return reply, self.endpoints[index]
            if fallback is None:
                fallback = (reply, self.endpoints[index])
        return fallback

    def _send_when_connected(self, socket, frame):
        """Send, waiting up to the timeout for a connection (ZMQ_IMMEDIATE refuses a send until
        there is one). The wait is a poll for POLLOUT, green under eventlet: eventlet's green
        ``send`` ignores SNDTIMEO and would retry for ever, holding the call lock."""
        zmq = self.runtime.zmq
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                socket.send(frame, zmq.NOBLOCK)
                return True
            except zmq.Again:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.runtime.poll([(socket, zmq.POLLOUT)], remaining):
                    return False

    def _ask(self, sockets, index, make_request, reply_type):
        """Ask registry ``index``: its reply, None if none came in time, or _NOT_CONNECTED if
        it has no live connection (ZMQ_IMMEDIATE refuses the send at once)."""
        zmq = self.runtime.zmq
        request_id = next(self._request_ids)
        try:
            sockets[index].send(protocol.encode(make_request(request_id)), zmq.NOBLOCK)
        except zmq.Again:
            return _NOT_CONNECTED
        return self._await(sockets[index], request_id, reply_type, self.timeout)

    def _await(self, socket, request_id, reply_type, timeout):
        """Wait up to ``timeout`` for the reply to ``request_id``; None on timeout.

        Waits on the socket in real time: this is I/O, not logic a test drives with a clock.
        """
        zmq = self.runtime.zmq
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            # A blocking receive with a timeout, rather than a poll: green under eventlet.
            socket.setsockopt(zmq.RCVTIMEO, max(1, int(remaining * 1000)))
            try:
                frame = socket.recv()
            except zmq.Again:
                return None
            try:
                reply = protocol.decode(frame, protocol.MAX_REPLY_BYTES)
            except ProtocolError as exc:
                LOG.warning("dropped a malformed reply from a registry: %s", exc)
                continue
            if getattr(reply, "request_id", None) != request_id:
                continue  # the late answer to a call that already gave up
            if type(reply) is protocol.Error:
                LOG.warning("registry refused request %d: %s", request_id, reply.reason)
                return None
            if type(reply) is not reply_type:
                LOG.warning("dropped a %s reply where %s was expected", type(reply).__name__, reply_type.__name__)
                continue
            return reply
