"""The registry server: a zmq ROUTER around a :class:`~rpcmm.table.RegistryTable`.

It takes HEARTBEAT and UNREGISTER casts and answers LOOKUP and LIST calls (see
:mod:`rpcmm.protocol`), and sweeps expired hosts every ``sweep_interval`` seconds. It runs
standalone (``rpcmm registry``) or inside any service process::

    server = RegistryServer("127.0.0.1:7701")
    server.start()          # binds now (errors raise here), then serves in a background task
    ...
    server.stop()           # stops the loop, closes the socket, joins

Nothing happens in the constructor. One background task owns the socket and the table; the
public methods only signal it. A malformed or hostile message is logged (rate-limited) and
dropped; it never stops the loop and never touches another host's entry.
"""

import logging

from rpcmm import protocol
from rpcmm.addressing import Endpoint
from rpcmm.clock import SYSTEM_CLOCK
from rpcmm.errors import EndpointInUse, LifecycleError, ProtocolError
from rpcmm.logutil import RateLimitedLogger
from rpcmm.runtime import default_runtime
from rpcmm.table import Change, RegistryTable
from rpcmm.timing import DEFAULT_SWEEP_INTERVAL

__all__ = ["RegistryServer", "ServerStats"]

LOG = logging.getLogger(__name__)

#: Messages handled in a row before the loop checks its timers again.
_DRAIN_BATCH = 512
#: Queue depth (messages) of the ROUTER socket, both ways.
_HIGH_WATER_MARK = 100_000


class ServerStats:
    """Counters a server keeps; read them from any thread (they are plain ints)."""

    __slots__ = ("received", "dropped", "heartbeats", "lookups", "lists", "expired", "joined", "left")

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self):
        return {name: getattr(self, name) for name in self.__slots__}


class RegistryServer:
    """One registry: see the module docstring for the lifecycle.

    ``endpoint`` is ``"host:port"`` or an :class:`~rpcmm.addressing.Endpoint`; port 0 binds
    a port the OS picks, readable afterwards from :attr:`endpoint`. ``bounds`` clamps hosts'
    declared timing. ``context`` is a zmq context to use (else the server makes and terms its own).
    """

    def __init__(self, endpoint="127.0.0.1:0", bounds=None, clock=SYSTEM_CLOCK, runtime=None,
                 context=None, sweep_interval=DEFAULT_SWEEP_INTERVAL):
        self._requested = endpoint if isinstance(endpoint, Endpoint) else Endpoint.parse(endpoint)
        self.table = RegistryTable(bounds)
        self.clock = clock
        self.runtime = runtime if runtime is not None else default_runtime()
        self.sweep_interval = sweep_interval
        self.stats = ServerStats()
        self._context = context
        self._owns_context = context is None
        self._socket = None
        self._wake_send = None
        self._wake_recv = None
        self._task = None
        self._bound = None
        self._drops = RateLimitedLogger(LOG)

    @property
    def endpoint(self):
        """The bound endpoint (with the real port) once started, else the requested one."""
        return self._bound or self._requested

    @property
    def running(self):
        return self._task is not None and self._task.is_alive()

    def start(self):
        """Bind and start serving; raises EndpointInUse if the endpoint cannot be bound."""
        if self._task is not None:
            raise LifecycleError("a RegistryServer starts once")
        zmq = self.runtime.zmq
        if self._context is None:
            self._context = self.runtime.new_context()
        socket = self._context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE_BYTES)
        socket.setsockopt(zmq.RCVHWM, _HIGH_WATER_MARK)
        socket.setsockopt(zmq.SNDHWM, _HIGH_WATER_MARK)
        if self._requested.is_ipv6:
            socket.setsockopt(zmq.IPV6, 1)
        try:
            socket.bind(self._requested.zmq_address())
        except zmq.ZMQError as exc:
            socket.close()
            self._release_context()
            raise EndpointInUse(str(self._requested), exc.strerror) from exc
        last = socket.getsockopt_string(zmq.LAST_ENDPOINT)
        port = int(last.rsplit(":", 1)[1])
        self._bound = Endpoint(self._requested.host, port)
        # A pipe to wake the loop on stop(): the loop owns the ROUTER, nobody else touches it.
        address = f"inproc://rpcmm-registry-wake-{id(self):x}"
        self._wake_recv = self._context.socket(zmq.PAIR)
        self._wake_recv.setsockopt(zmq.LINGER, 0)
        self._wake_recv.bind(address)
        self._wake_send = self._context.socket(zmq.PAIR)
        self._wake_send.setsockopt(zmq.LINGER, 0)
        self._wake_send.connect(address)
        self._socket = socket
        self._task = self.runtime.spawn(self._serve, name=f"rpcmm-registry-{port}")
        LOG.info("registry serving on %s", self._bound)
        return self

    def stop(self, timeout=5.0):
        """Stop serving and release the socket; idempotent. Hosts are not told: they re-register
        with the next registry they reach, and with this one when it comes back."""
        if self._task is None:
            return
        try:
            self._wake_send.send(b"stop")
        except Exception:  # the loop may already be gone
            LOG.debug("wake-up send failed", exc_info=True)
        self._task.join(timeout)
        if self._task.is_alive():
            LOG.error("registry loop did not stop within %gs", timeout)
        self._wake_send.close()
        self._task = None
        self._release_context()
        LOG.info("registry on %s stopped", self._bound)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def _release_context(self):
        if self._owns_context and self._context is not None:
            self._context.term()
            self._context = None

    # -- the loop (runs in the background task, which owns self._socket) ---------------------

    def _serve(self):
        zmq = self.runtime.zmq
        socket, wake = self._socket, self._wake_recv
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(wake, zmq.POLLIN)
        next_sweep = self.clock.monotonic() + self.sweep_interval
        try:
            while True:
                wait_ms = max(0.0, next_sweep - self.clock.monotonic()) * 1000
                ready = dict(poller.poll(wait_ms))
                if wake in ready:
                    return
                if socket in ready:
                    self._drain(socket, zmq)
                now = self.clock.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + self.sweep_interval
        except Exception:
            LOG.exception("registry loop crashed; the registry on %s stops", self._bound)
        finally:
            socket.close()
            wake.close()

    def _drain(self, socket, zmq):
        for _ in range(_DRAIN_BATCH):
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.stats.received += 1
            if len(frames) != 2:
                self._drop(frames[0] if frames else b"", f"expected 2 frames, got {len(frames)}")
                continue
            identity, frame = frames
            try:
                message = protocol.decode(frame)
            except ProtocolError as exc:
                self._drop(identity, str(exc))
                continue
            reply = self._handle(message)
            if reply is not None:
                try:
                    socket.send_multipart([identity, protocol.encode(reply)], zmq.NOBLOCK)
                except zmq.Again:
                    self._drop(identity, "reply queue full; reply dropped")

    def _handle(self, message):
        kind = type(message)
        now = self.clock.monotonic()
        table = self.table
        if kind is protocol.Heartbeat:
            self.stats.heartbeats += 1
            for state in message.states:
                change = table.heartbeat(state.host, state.topics, state.interval, state.ttl, now)
                if change is Change.REFRESHED:
                    continue
                if change is Change.JOINED:
                    self.stats.joined += 1
                    LOG.info("host %s joined: %s", state.host, ", ".join(state.topics))
                elif change is Change.CHANGED:
                    LOG.info("host %s now serves: %s", state.host, ", ".join(state.topics))
                else:
                    self.stats.left += 1
                    LOG.info("host %s left (no topics)", state.host)
            return None
        if kind is protocol.Lookup:
            self.stats.lookups += 1
            return protocol.Hosts(message.request_id, table.hosts_for(message.topic))
        if kind is protocol.Unregister:
            for host in message.hosts:
                if table.remove(host):
                    self.stats.left += 1
                    LOG.info("host %s unregistered", host)
            return None
        if kind is protocol.ListHosts:
            self.stats.lists += 1
            return protocol.Table(message.request_id, table.rows(now))
        # A reply kind sent to a server: well-formed but meaningless here.
        self.stats.dropped += 1
        self._drops.log("registry %s: dropped a %s message: registries do not take replies",
                        self._bound, kind.__name__)
        return None

    def _drop(self, identity, reason):
        self.stats.dropped += 1
        self._drops.log("registry %s: dropped a message from peer %s: %s", self._bound, identity.hex()[:16], reason)

    def _sweep(self, now):
        expired = self.table.expire(now)
        if expired:
            self.stats.expired += len(expired)
            LOG.info("expired %d host(s) whose heartbeats stopped: %s", len(expired),
                     ", ".join(expired[:20]) + (" ..." if len(expired) > 20 else ""))
