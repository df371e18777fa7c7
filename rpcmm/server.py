"""The registry server: a zmq ROUTER around a :class:`~rpcmm.table.RegistryTable`, and a live feed.

It takes HEARTBEAT, UNREGISTER and SUSPECT casts and answers LOOKUP, LIST and STATUS calls on
its ROUTER, publishes every change to a topic on its live feed (an XPUB socket: sequenced
deltas with an epoch, a snapshot of a topic to whoever subscribes to it, and a tick), and
sweeps expired hosts every ``sweep_interval`` seconds (see :mod:`rpcmm.protocol`). It runs
standalone (``rpcmm registry``) or inside any service process::

    server = RegistryServer("127.0.0.1:7701", peers=[Endpoint.parse("127.0.0.1:7702")])
    server.start()          # binds now (errors raise here), then serves in a background task
    ...
    server.stop()           # stops the loop, closes the sockets, joins

With ``peers``, a starting registry is WARMING until it has loaded the table of the first peer
that answers, page by page (or none did within ``peer_timeout`` a page); meanwhile it answers
lookups with what it has, marked WARMING, and clients prefer another registry. Expiry goes through an
:class:`~rpcmm.preservation.ExpiryGuard`, which holds off a mass expiry and reports DEGRADED,
and a :class:`~rpcmm.suspicion.SuspicionBoard`, which drops hosts that clients report and that
then miss a heartbeat.

With ``curve`` (a :class:`~rpcmm.security.LoadedCurveServerConfig`), both sockets are CURVE
servers and only the authorized client keys get in (the server runs the ZAP handler of its
own context); ``policy`` (a :class:`~rpcmm.policy.TopicPolicy`) then says which key may
register which hosts and topics, and SUSPECT reports count per key. ``limiter`` (a
:class:`~rpcmm.limits.PeerRateLimiter`) caps what each peer (its key, else its connection)
may send, so one noisy peer cannot starve the others. See ``doc/security.rst``.
``max_registrations`` caps the table's (topic, host) pairs (None: no limit): once it is
reached, heartbeats that would add more are refused while known hosts keep refreshing
(:attr:`~rpcmm.table.Change.REFUSED`), which bounds the table's memory (see
``doc/operations.rst`` for what a registration costs).

Nothing happens in the constructor. One background loop, on a native thread with plain pyzmq
(see :mod:`rpcmm.runtime`), owns the sockets, the table and every piece of state; the public
methods only signal it (:attr:`stats` and :attr:`state` may be read from any thread). A
malformed or hostile message is logged (rate-limited) and dropped; it never stops the loop and
never touches another host's entry.
"""

import logging
import math
import random
import time

import zmq

from rpcmm import protocol
from rpcmm.addressing import Endpoint
from rpcmm.clock import SYSTEM_CLOCK
from rpcmm.errors import EndpointInUse, LifecycleError, ProtocolError
from rpcmm.limits import PeerRateLimiter
from rpcmm.logutil import RateLimitedLogger
from rpcmm.policy import TopicPolicy
from rpcmm.preservation import ExpiryGuard
from rpcmm.protocol import State
from rpcmm.runtime import default_runtime, native_poll
from rpcmm.security import (
    CurveAuthenticator,
    LoadedCurveClientConfig,
    peer_key,
    secure_client_socket,
    secure_server_socket,
)
from rpcmm.suspicion import SuspicionBoard
from rpcmm.table import UNOWNED, Change, RegistryTable
from rpcmm.timing import DEFAULT_SWEEP_INTERVAL

__all__ = ["RegistryServer", "ServerStats", "DEFAULT_TICK_INTERVAL", "DEFAULT_PEER_TIMEOUT"]

LOG = logging.getLogger(__name__)

#: Seconds between two ticks on the live feed (clients call a feed dead after three missed).
DEFAULT_TICK_INTERVAL = 0.5
#: (topic, host) registrations one registry holds at most: five times a region of 100,000
#: hosts serving 10 topics each; about 1 GiB of table with names like the benchmark's (~200
#: bytes a registration, doc/performance.rst), up to ~5.5 GB with unique 255-character names.
#: Beyond it new hosts are refused (logged, counted in ``stats.refused_full``).
DEFAULT_MAX_REGISTRATIONS = 5_000_000
#: Bytes of table rows per LIST reply: a quarter of the largest message, so a page always
#: fits, and one page costs the loop 5-50 ms (measured at 100,000 hosts), not the whole table at once.
_LIST_PAGE_BYTES = 256 << 10
#: The same for a LIST without a cursor (a client or registry from before paging, which reads
#: one answer only): as much as one message holds, less room for the rest of the answer.
_WHOLE_LIST_BYTES = protocol.MAX_MESSAGE_BYTES - (64 << 10)
#: Seconds a warming registry waits for each page of a peer's table.
DEFAULT_PEER_TIMEOUT = 1.0
#: Host events (joined, changed, left) logged per kind and second; the rest are counted in the
#: next line of that kind.
_HOST_EVENT_LINES = 16
#: Messages handled in a row before the loop checks its timers again, and the most time they
#: may take (a few costly requests, say LISTs of a large table, must not hold up the feed's
#: ticks and the expiry sweeps for seconds). The time is read every _DRAIN_CHECK_EVERY
#: messages and after every large reply, not after each message.
_DRAIN_BATCH = 512
_DRAIN_SECONDS = 0.02
_DRAIN_CHECK_EVERY = 16
#: A reply larger than _FREE_REPLY_BYTES (a LIST page, the HOSTS of a large fanout topic) costs
#: its peer's rate limiter one more token per _REPLY_BYTES_PER_TOKEN bytes, paid from its next
#: messages. At the default rate a whole listing of 100,000 hosts (about 80 pages, 20 MB)
#: fits in one burst, and a peer can list that much about once a second, not without end.
_FREE_REPLY_BYTES = 4096
_REPLY_BYTES_PER_TOKEN = 1024
#: Replies queued for one peer before more are dropped: an honest client waits for each
#: answer, so a peer with this many unread is not reading, and would otherwise pile up to
#: _HIGH_WATER_MARK replies (a megabyte each for LIST) in the registry's memory.
_REPLY_QUEUE = 64
# Plain ints for the hot loop: pyzmq's enum flags cost a Python-level call per use.
_NOBLOCK, _SNDMORE, _POLLIN, _EVENTS = int(zmq.NOBLOCK), int(zmq.SNDMORE), int(zmq.POLLIN), int(zmq.EVENTS)
_RCVMORE = int(zmq.RCVMORE)
#: Queue depth (messages) of the ROUTER's incoming queues and of the XPUB's outgoing ones.
_HIGH_WATER_MARK = 100_000
#: Memory the decode memo may take (see RegistryServer._decode), as charged by _memo_charge.
#: 100,000 hosts heartbeating one per message (about 1.5 kB charged each) fit.
_MEMO_BYTES = 256 << 20
#: Frames larger than this are always decoded afresh.
_MEMO_MAX_FRAME = 64 << 10


class ServerStats:
    """Counters a server keeps; read them from any thread (they are plain ints)."""

    __slots__ = ("received", "dropped", "heartbeats", "lookups", "lists", "expired", "joined", "left",
                 "published", "suspected", "dropped_suspects", "synced_hosts", "refused", "rate_limited",
                 "refused_full", "refused_quota")

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self):
        return {name: getattr(self, name) for name in self.__slots__}


def _memo_charge(frame, heartbeat):
    """The memory one memo entry holds, in bytes: the frame, its decoded objects (about 90 B a
    name: the str, its slot in a tuple, the records around them, measured with tracemalloc)
    and the dict's slot. Counting the frame alone undercounted small frames up to 8x."""
    names = sum(len(state.topics) + 1 for state in heartbeat.states)
    return len(frame) + 33 + 96 * names + 200


class RegistryServer:
    """One registry: see the module docstring for the lifecycle.

    ``endpoint`` is ``"host:port"`` or an :class:`~rpcmm.addressing.Endpoint`; port 0 binds
    a port the OS picks, readable afterwards from :attr:`endpoint`. ``feed_port`` is the live
    feed's port on the same host (0: any free port; clients learn it through STATUS).
    ``peers`` are the other registries to warm up from. ``bounds`` clamps hosts' declared
    timing; ``guard`` is the ExpiryGuard to use. ``context`` is a plain pyzmq context to use
    (never a green one; else the server makes and terms its own; with ``curve`` and a shared
    context, the context's owner runs its one ZAP handler). ``curve``, ``policy`` and
    ``limiter`` are described in the module docstring; ``peer_server_key`` is the public key of
    the peers to warm up from (default: this server's own, for registries sharing one key pair).
    """

    def __init__(self, endpoint="127.0.0.1:0", bounds=None, clock=SYSTEM_CLOCK, runtime=None,
                 context=None, sweep_interval=DEFAULT_SWEEP_INTERVAL, peers=(), feed_port=0,
                 tick_interval=DEFAULT_TICK_INTERVAL, peer_timeout=DEFAULT_PEER_TIMEOUT, guard=None,
                 curve=None, policy=None, limiter=None, peer_server_key=None,
                 max_registrations=DEFAULT_MAX_REGISTRATIONS):
        self._requested = endpoint if isinstance(endpoint, Endpoint) else Endpoint.parse(endpoint)
        self.table = RegistryTable(bounds, max_registrations)
        self.clock = clock
        self.runtime = runtime if runtime is not None else default_runtime()
        self.sweep_interval = sweep_interval
        self.tick_interval = tick_interval
        self.peer_timeout = peer_timeout
        self.peers = tuple(p for p in peers if p != self._requested)
        self.feed_port = feed_port
        self.guard = guard if guard is not None else ExpiryGuard()
        self.suspicion = SuspicionBoard()
        self.curve = curve
        self.policy = policy if policy is not None else TopicPolicy.allow_all()
        self.limiter = limiter if limiter is not None else PeerRateLimiter()
        #: Real time, for the drain's budget: it bounds real work, not a span of the table's clock.
        self.timer = time.perf_counter
        # Host events, each kind at most _HOST_EVENT_LINES lines a second (a process announces
        # up to 4096 hosts in a message, and a fleet starting at once is many such messages).
        self._joins, self._changes, self._departures = (
            RateLimitedLogger(LOG, logging.INFO, burst=_HOST_EVENT_LINES, clock=clock.monotonic) for _ in range(3))
        self._peer_curve = None if curve is None else LoadedCurveClientConfig(
            curve.public_key, curve.secret_key, peer_server_key or curve.public_key)
        self._authenticator = None
        self.stats = ServerStats()
        self.epoch = None
        self.synced_from = ""
        self.synced_at = None
        self._warming = False
        self._context = context
        self._owns_context = context is None
        self._socket = None
        self._feed = None
        self._wake_send = None
        self._wake_recv = None
        self._task = None
        self._bound = None
        self._drops = RateLimitedLogger(LOG)
        self._memo = {}  # heartbeat frame (bytes) -> its decoded Heartbeat, oldest first
        self._memo_bytes = 0

    @property
    def endpoint(self):
        """The bound endpoint (with the real port) once started, else the requested one."""
        return self._bound or self._requested

    @property
    def running(self):
        return self._task is not None and self._task.is_alive()

    @property
    def state(self):
        if self._warming:
            return State.WARMING
        return State.DEGRADED if self.guard.degraded else State.UP

    def start(self):
        """Bind and start serving; raises EndpointInUse if an endpoint cannot be bound."""
        if self._task is not None:
            raise LifecycleError("a RegistryServer starts once")
        if self._context is None:
            self._context = zmq.Context()
        try:
            if self.curve is not None and self._owns_context:
                # ZAP is per context: the handler must answer before the first handshake.
                self._authenticator = CurveAuthenticator(
                    self._context, self.curve.authorized_keys, runtime=self.runtime.native()).start()
            self._socket = self._bind(zmq.ROUTER, self._requested, send_queue=_REPLY_QUEUE)
            # Full queues and departed peers raise instead of dropping the reply unseen.
            self._socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
            self._bound = Endpoint(self._requested.host, self._port_of(self._socket))
            try:
                self._feed = self._bind(zmq.XPUB, Endpoint(self._requested.host, self.feed_port))
            except EndpointInUse as exc:
                raise EndpointInUse(exc.endpoint, f"{exc.reason} (the live feed's port)") from exc
            self._feed.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscriber gets its snapshot
            self.feed_port = self._port_of(self._feed)
            self.epoch = random.getrandbits(62) + 1
            self._warming = bool(self.peers)
            # A pipe to wake the loop on stop(): the loop owns the other sockets, nobody else does.
            address = f"inproc://rpcmm-registry-wake-{id(self):x}"
            self._wake_recv = self._context.socket(zmq.PAIR)
            self._wake_recv.setsockopt(zmq.LINGER, 0)
            self._wake_recv.bind(address)
            self._wake_send = self._context.socket(zmq.PAIR)
            self._wake_send.setsockopt(zmq.LINGER, 0)
            self._wake_send.connect(address)
            self._task = self.runtime.spawn_native(self._serve, name=f"rpcmm-registry-{self._bound.port}")
        except BaseException:
            # Nothing started (a bind, the wake-up pipe or the thread failed): release it all,
            # or the owner's context.term() would wait for ever on the sockets left open.
            self._task = None
            self._close_sockets()
            self._stop_authenticator()
            self._release_context()
            raise
        LOG.info("registry serving on %s (live feed on port %d, epoch %x)%s", self._bound, self.feed_port,
                 self.epoch, f"; warming up from {', '.join(map(str, self.peers))}" if self.peers else "")
        return self

    def _bind(self, kind, endpoint, send_queue=_HIGH_WATER_MARK):
        socket = self._context.socket(kind)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SNDHWM, send_queue)
        socket.setsockopt(zmq.RCVHWM, _HIGH_WATER_MARK)
        socket.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE_BYTES)
        if endpoint.is_ipv6:
            socket.setsockopt(zmq.IPV6, 1)
        if self.curve is not None:
            secure_server_socket(socket, self.curve)
        try:
            socket.bind(endpoint.zmq_address())
        except zmq.ZMQError as exc:
            socket.close()
            raise EndpointInUse(str(endpoint), exc.strerror) from exc
        return socket

    def _port_of(self, socket):
        return int(socket.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])

    def stop(self, timeout=5.0):
        """Stop serving and release the sockets; idempotent. Hosts are not told: they go on
        heartbeating to every registry, and this one has them back when it returns."""
        if self._task is None:
            return
        if self._task.is_alive():
            try:
                # Never blocks: a loop that died (and closed its end) must not hang stop().
                self._wake_send.send(b"stop", zmq.NOBLOCK)
            except zmq.ZMQError:  # the loop ended meanwhile
                LOG.debug("wake-up send failed", exc_info=True)
        self._task.join(timeout)
        stuck = self._task.is_alive()
        self._wake_send.close()
        self._task = None
        self._stop_authenticator()
        if stuck:
            # Its sockets are still open: terming the context would wait for them for ever.
            LOG.error("registry loop did not stop within %gs; leaving its sockets open", timeout)
            return
        self._release_context()
        LOG.info("registry on %s stopped", self._bound)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def _close_sockets(self):
        """After a failed start: close whatever it opened."""
        for socket in (self._socket, self._feed, self._wake_recv, self._wake_send):
            if socket is not None:
                socket.close()
        self._socket = self._feed = self._wake_recv = self._wake_send = None

    def _stop_authenticator(self):
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None

    def _release_context(self):
        if self._owns_context and self._context is not None:
            self._context.term()
            self._context = None

    # -- the loop (runs in the background task, which owns the sockets and the state) ---------

    def _serve(self):
        socket, feed, wake = self._socket, self._feed, self._wake_recv
        clock = self.clock
        warmup = _PeerWarmup(self) if self._warming else None
        now = clock.monotonic()
        next_sweep, next_tick = now + self.sweep_interval, now
        try:
            listening = [(socket, zmq.POLLIN), (feed, zmq.POLLIN), (wake, zmq.POLLIN)]
            # One poller for the steady state: building one per pass would cost every message.
            steady = zmq.Poller()
            for item, flags in listening:
                steady.register(item, flags)
            while True:
                wait = min(next_sweep, next_tick) - clock.monotonic()
                if warmup is None:
                    ready = dict(steady.poll(max(0.0, wait) * 1000))
                else:  # the first second or so: the warm-up's socket comes and goes
                    wait = min(wait, warmup.deadline - clock.monotonic())
                    ready = native_poll(listening + warmup.poll_items(), wait)
                if wake in ready:
                    return
                if warmup is not None and not warmup.step(ready, clock.monotonic()):
                    warmup = None
                    self._warming = False
                if socket in ready:
                    self._drain(socket)
                if feed in ready:
                    self._subscriptions(feed)
                now = clock.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + self.sweep_interval
                self._publish_changes(feed)
                if now >= next_tick:
                    self._publish(feed, protocol.TICK_KEY, self._tick(now))
                    next_tick = now + self.tick_interval
        except Exception:
            LOG.exception("registry loop crashed; the registry on %s stops", self._bound)
        finally:
            if warmup is not None:
                warmup.close()
            socket.close()
            feed.close()
            wake.close()

    def _tick(self, now):
        return protocol.Tick(self.epoch, self.table.seq, self.state, self._data_age(now), self.tick_interval)

    def _data_age(self, now):
        heard = self.table.last_heard
        return 0.0 if heard is None else max(0.0, now - heard)

    def _drain(self, socket):
        secured = self.curve is not None
        allow = self.limiter.allow
        now = self.clock.monotonic()
        timer = self.timer
        give_up = timer() + _DRAIN_SECONDS
        for count in range(1, _DRAIN_BATCH + 1):
            # Asking whether a message is there is cheaper than the Again a receive would raise.
            if not socket.getsockopt(_EVENTS) & _POLLIN:
                return
            if not count % _DRAIN_CHECK_EVERY and timer() > give_up:
                return
            try:
                if secured:
                    # Frames, not bytes: the message's frame carries its sender's CURVE key.
                    parts = socket.recv_multipart(_NOBLOCK, copy=False)
                    key = peer_key(parts[-1])
                    frames = [part.bytes for part in parts]
                else:
                    # Not recv_multipart: it reads RCVMORE through an enum conversion after every
                    # frame (9 % of the loop at one heartbeat per message). A ROUTER message has
                    # the sender's identity and at least one frame more, so two receives never
                    # wait; only a third frame (a malformed message) needs the RCVMORE check.
                    frames = [socket.recv(_NOBLOCK), socket.recv(_NOBLOCK)]
                    while socket.getsockopt(_RCVMORE):
                        frames.append(socket.recv(_NOBLOCK))
                    key = None
            except zmq.Again:
                return
            self.stats.received += 1
            if len(frames) != 2:
                self._drop(frames[0] if frames else b"", f"expected 2 frames, got {len(frames)}")
                continue
            identity, frame = frames
            peer = key or identity
            if not allow(peer, now):
                self.stats.rate_limited += 1
                self._drop(identity, f"over its rate limit (key {key})")
                continue
            try:
                message = self._decode(frame)
            except ProtocolError as exc:
                self._drop(identity, str(exc))
                continue
            except Exception:  # MemoryError and the like: one message, never the registry
                LOG.exception("registry %s: decoding a message failed; dropped it", self._bound)
                self.stats.dropped += 1
                continue
            try:
                reply = self._handle(message, identity, key, now)
            except Exception:  # a bug must cost one message, never the registry
                LOG.exception("registry %s: failed to handle a %s message; dropped it", self._bound,
                              type(message).__name__)
                self.stats.dropped += 1
                continue
            if reply is not None:
                answer = protocol.encode(reply)
                large = len(answer) > _FREE_REPLY_BYTES
                if large:
                    self.limiter.charge(peer, now, len(answer) / _REPLY_BYTES_PER_TOKEN)
                try:
                    # Two sends rather than send_multipart, which checks every frame in Python. A
                    # ROUTER never blocks or fails halfway: with ROUTER_MANDATORY the identity's
                    # send raises (a full queue, a peer gone) and nothing of the reply is sent.
                    socket.send(identity, _NOBLOCK | _SNDMORE)
                    socket.send(answer, _NOBLOCK)
                except zmq.Again:
                    self._drop(identity, f"{_REPLY_QUEUE} replies unread; reply dropped")
                except zmq.ZMQError as exc:  # one reply lost, never the registry
                    if exc.errno == zmq.EHOSTUNREACH:
                        self.stats.dropped += 1  # it left before its answer: nobody to tell
                    else:
                        self._drop(identity, f"reply not sent: {exc}")
                if large and timer() > give_up:  # costly requests: do not wait for the count
                    return

    def _decode(self, frame):
        """protocol.decode, remembered for HEARTBEAT frames.

        A host sends the same bytes every interval until its topics change, so most heartbeats
        repeat a frame seen one interval ago: a dict lookup then replaces unpacking and
        validating every name. decode() is a pure function of the bytes and its messages are
        immutable, so the remembered message is exactly what decoding again would give; and
        the table then compares the host's topics with the very tuple it stored (identical
        objects), not with fresh strings. The memo keeps the frames first seen most recently,
        up to _MEMO_BYTES of memory (a registry with more distinct frames than that decodes the
        rest).
        """
        message = self._memo.get(frame)
        if message is not None:
            return message
        message = protocol.decode(frame)
        if type(message) is protocol.Heartbeat and len(frame) <= _MEMO_MAX_FRAME:
            memo = self._memo
            memo[frame] = message
            self._memo_bytes += _memo_charge(frame, message)
            while self._memo_bytes > _MEMO_BYTES:
                oldest, forgotten = next(iter(memo.items()))
                del memo[oldest]
                self._memo_bytes -= _memo_charge(oldest, forgotten)
        return message

    def _clamped(self, state):
        """For a joining host's log line: the timing the bounds impose, if not what it declared
        (operators then see why a host sending 100 beats a second is kept as if at 20)."""
        applied = self.table.bounds.enforce(state.interval, state.ttl)
        if math.isclose(applied[0], state.interval) and math.isclose(applied[1], state.ttl):
            return ""
        return (f" (declared interval {state.interval:g}s and TTL {state.ttl:g}s; the registry's bounds "
                f"apply {applied[0]:g}s and {applied[1]:g}s)")

    def _handle(self, message, identity, key, now):
        """Apply one message from ``identity`` (its routing id) with CURVE ``key`` (or None),
        received at ``now`` (read once per batch of messages)."""
        kind = type(message)
        table = self.table
        if kind is protocol.Heartbeat:
            self.stats.heartbeats += 1
            suspicion = self.suspicion
            check = self.policy.check_heartbeat
            # Quotas (policy max_hosts): charge each new host to the key registering it. Only
            # keys with a quota are owners, so a registry without quotas counts nothing.
            quota = self.policy.max_hosts(key) if self.policy.has_quotas else None
            owner = UNOWNED if quota is None else key
            for state in message.states:
                topics = state.topics
                verdict = check(key, state.host, topics)
                if not verdict.allowed:
                    # Refused per record, and within a record per topic: a host that claims one
                    # topic it may not still serves the ones it may (else it would join with
                    # them topic by topic, then expire at its first full heartbeat).
                    self.stats.refused += 1
                    self._drops.log("registry %s: refused key %s: host %s%s", self._bound,
                                    self.policy.name_of(key), state.host,
                                    " (not its host)" if verdict.host_refused else
                                    f" for topics {', '.join(verdict.refused_topics)}")
                    if not verdict.permitted_topics:
                        continue
                    topics = verdict.permitted_topics
                change = table.heartbeat(state.host, topics, state.interval, state.ttl, now, owner, quota)
                if change is Change.REFRESHED:
                    suspicion.heard_from(state.host, now)
                    continue
                if change is Change.OVER_QUOTA:
                    self.stats.refused_quota += 1
                    self._drops.log("registry %s: key %s has its quota of %d hosts: refused host %s", self._bound,
                                    self.policy.name_of(key), quota, state.host)
                    continue
                if change is Change.REFUSED:
                    self.stats.refused_full += 1
                    self._drops.log("registry %s: full (%d registrations, the limit is %d): refused host %s "
                                    "serving %d topics", self._bound, table.registration_count,
                                    table.max_registrations, state.host, len(state.topics))
                    if state.host in table:  # it keeps its old topics
                        suspicion.heard_from(state.host, now)
                    else:  # it may have just lost all of them (see RegistryTable.heartbeat)
                        suspicion.forget(state.host)
                    continue
                suspicion.heard_from(state.host, now)
                if change is Change.JOINED:
                    self.stats.joined += 1
                    self._joins.log("host %s joined: %s%s", state.host, ", ".join(topics), self._clamped(state))
                elif change is Change.CHANGED:
                    self._changes.log("host %s now serves: %s", state.host, ", ".join(topics))
                elif change is Change.LEFT:
                    self.stats.left += 1
                    self._departures.log("host %s left (no topics)", state.host)
            return None
        if kind is protocol.Lookup:
            self.stats.lookups += 1
            topic = message.topic
            return protocol.Hosts(message.request_id, table.hosts_for(topic), self.epoch, table.version(topic),
                                  self.state, self._data_age(now))
        if kind is protocol.Unregister:
            for host in message.hosts:
                if not self.policy.may_unregister(key, host):
                    self.stats.refused += 1
                    self._drops.log("registry %s: refused key %s: unregister host %s", self._bound,
                                    self.policy.name_of(key), host)
                    continue
                if table.remove(host):
                    self.suspicion.forget(host)
                    self.stats.left += 1
                    self._departures.log("host %s unregistered", host)
            return None
        if kind is protocol.Suspect:
            if not self.policy.may_report(key):
                self.stats.refused += 1
                self._drops.log("registry %s: refused key %s: it may register nothing, so it may not report "
                                "hosts unreachable", self._bound, self.policy.name_of(key))
                return None
            for host in message.hosts:
                if host not in table:
                    continue
                self.stats.suspected += 1
                # Under CURVE a reporter is its key: opening more connections makes no second reporter.
                if self.suspicion.report(host, key or identity, now):
                    self._drop_suspect(host, "a second client could not reach it either")
                else:
                    LOG.info("host %s suspected: a client could not reach it", host)
            return None
        if kind is protocol.ListHosts:
            self.stats.lists += 1
            after = message.after
            rows, next_after = table.page(after or "", now, _WHOLE_LIST_BYTES if after is None else _LIST_PAGE_BYTES)
            return protocol.Table(message.request_id, rows, self.state, next_after)
        if kind is protocol.Status:
            return protocol.Health(
                message.request_id, self.state, self.epoch, table.seq, len(table), table.registration_count,
                self.feed_port, self._data_age(now), self.synced_from,
                -1.0 if self.synced_at is None else max(0.0, now - self.synced_at),
                table.max_registrations or 0, self.stats.refused_full + self.stats.refused_quota,
            )
        # A reply or feed kind sent to a server: well-formed but meaningless here.
        self.stats.dropped += 1
        self._drops.log("registry %s: dropped a %s message: not a request", self._bound, kind.__name__)
        return None

    def _drop_suspect(self, host, why):
        self.table.remove(host)
        self.suspicion.forget(host)
        self.stats.dropped_suspects += 1
        LOG.warning("host %s dropped before its TTL: %s", host, why)

    def _drop(self, identity, reason):
        self.stats.dropped += 1
        self._drops.log("registry %s: dropped a message from peer %s: %s", self._bound, identity.hex()[:16], reason)

    def _sweep(self, now):
        for host in self.suspicion.confirmed(self.table, now):
            self._drop_suspect(host, "a client could not reach it and it missed a heartbeat")
        expired = self.guard.sweep(self.table, now)
        if expired:
            for host in expired:
                self.suspicion.forget(host)
            self.stats.expired += len(expired)
            LOG.info("expired %d host(s) whose heartbeats stopped: %s", len(expired),
                     ", ".join(expired[:20]) + (" ..." if len(expired) > 20 else ""))

    # -- the live feed -------------------------------------------------------------------------

    def _publish(self, feed, key, message):
        try:
            feed.send_multipart([key, protocol.encode(message)], zmq.NOBLOCK)
            self.stats.published += 1
        except zmq.Again:  # a subscriber's queue is full; it will see a gap and reload
            pass

    def _publish_changes(self, feed):
        changes = self.table.drain_changes()
        if not changes:
            return
        hosts_for = self.table.hosts_for
        for topic, previous, version in changes:
            self._publish(feed, protocol.topic_key(topic),
                          protocol.Delta(self.epoch, version, previous, topic, hosts_for(topic)))

    def _subscriptions(self, feed):
        """Answer new subscriptions to a topic with that topic's snapshot (and to the tick with
        a tick): subscribing first and reading the state second is the Clone pattern's way of
        never missing a change in between.

        One snapshot per topic per batch of subscription events, however many of them name it:
        a snapshot goes to every subscriber of its topic, so one serves them all, and a peer
        subscribing to a large topic over and over (the feed has no per-peer rate limit: XPUB
        does not say who subscribed) costs one snapshot a loop pass, not one per event, while
        lookups are answered in between."""
        keys, tick = set(), False
        for _ in range(_DRAIN_BATCH):
            try:
                event = feed.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(event) < 2 or event[0] != 1:
                continue  # an unsubscription, or noise
            key = event[1:]
            if key == protocol.TICK_KEY:
                tick = True
            elif key.endswith(b"\x00"):
                keys.add(key)
        if tick:
            self._publish(feed, protocol.TICK_KEY, self._tick(self.clock.monotonic()))
        table = self.table
        for key in keys:
            try:
                topic = key[:-1].decode()
            except UnicodeDecodeError:
                continue
            self._publish(feed, key, protocol.Snapshot(self.epoch, table.version(topic), topic,
                                                       table.hosts_for(topic)))


class _PeerWarmup:
    """Loads a starting registry's table from the first peer that answers LIST, page by page.

    Driven by the server's loop: :meth:`poll_items` says what the loop should wait on for it and
    :meth:`step` advances it; each page of a peer's table must come within ``peer_timeout``
    seconds, else the next peer is tried (what was loaded stays). Peers that are warming
    themselves are skipped (two registries restarting together must not copy each other's
    empty tables).
    """

    def __init__(self, server):
        self.server = server
        self.queue = list(server.peers)
        self.socket = None
        self.peer = None
        self.sent = False
        self.after = ""  # the page cursor: the last host loaded from this peer
        self.added = 0
        self.listed = 0  # rows the current peer listed, loaded or not
        self.request_id = random.getrandbits(32)
        self.deadline = server.clock.monotonic()

    def poll_items(self):
        if self.socket is None:
            return []
        return [(self.socket, zmq.POLLIN if self.sent else zmq.POLLOUT)]

    def step(self, ready, now):
        """Advance; return False once warm-up is over (loaded, or every peer tried)."""
        if self.socket is not None and self.socket in ready:
            if not self.sent:
                return self._ask(now)
            page = self._receive()
            if page is not None:
                return self._load(page, now)
        if now < self.deadline and self.socket is not None:
            return True
        return self._next_peer(now)

    def _ask(self, now):
        """Send LIST for the page after ``self.after`` (the socket said it can take it)."""
        self.request_id += 1
        try:
            self.socket.send(protocol.encode(protocol.ListHosts(self.request_id, self.after)), zmq.NOBLOCK)
        except zmq.Again:  # the connection went between the poll and the send
            LOG.info("peer %s went away; trying the next", self.peer)
            return self._next_peer(now)
        self.sent = True
        self.deadline = now + self.server.peer_timeout
        return True

    def _receive(self):
        try:
            reply = protocol.decode(self.socket.recv(zmq.NOBLOCK))
        except (zmq.Again, ProtocolError):
            return None
        if type(reply) is not protocol.Table or reply.request_id != self.request_id:
            return None
        if reply.state is State.WARMING:
            LOG.info("peer %s is warming up too; trying the next", self.peer)
            self.deadline = 0.0
            return None
        try:
            protocol.check_page(reply, self.after)
        except ProtocolError as exc:
            LOG.warning("peer %s sent a bad page of its table (%s); trying the next", self.peer, exc)
            self.deadline = 0.0
            return None
        return reply

    def _load(self, page, now):
        server, table = self.server, self.server.table
        self.added += table.load(page.rows, now)
        self.listed += len(page.rows)
        full = table.max_registrations is not None and table.registration_count >= table.max_registrations
        if page.next_after and not full and self.listed >= (table.max_registrations or protocol.MAX_LISTED_HOSTS):
            # More hosts than any table holds (each has a topic at least), all well-formed and
            # in order, yet never full here (expired rows are not loaded): a peer that lists
            # without end, and the registry would stay WARMING for ever.
            LOG.warning("peer %s listed %d hosts and has more: more than a table holds; trying the next",
                        self.peer, self.listed)
            return self._next_peer(now)
        if page.next_after and not full:
            # The next page goes out when the socket can take it, as the first did: the peer
            # may have gone since it answered (then the deadline moves on to the next peer).
            self.after, self.sent = page.next_after, False
            self.deadline = now + server.peer_timeout
            return True
        server.synced_from, server.synced_at = str(self.peer), now
        server.stats.synced_hosts = self.added
        LOG.info("warmed up from peer %s: %d host(s) loaded%s", self.peer, self.added,
                 " (the table is full)" if full else "")
        self.close()
        return False

    def _next_peer(self, now):
        self.close()
        if not self.queue:
            if self.added:
                self.server.stats.synced_hosts = self.added
                LOG.warning("no peer listed its whole table; %d host(s) loaded, the rest comes with heartbeats",
                            self.added)
            else:
                LOG.warning("no peer answered; starting from heartbeats alone")
            return False
        self.peer = self.queue.pop(0)
        self.socket = self.server._context.socket(zmq.DEALER)
        try:
            self.socket.setsockopt(zmq.LINGER, 0)
            self.socket.setsockopt(zmq.IMMEDIATE, 1)
            if self.server._peer_curve is not None:
                secure_client_socket(self.socket, self.server._peer_curve)
            if self.peer.is_ipv6:
                self.socket.setsockopt(zmq.IPV6, 1)
            self.socket.connect(self.peer.zmq_address())
        except zmq.ZMQError as exc:  # e.g. a name zmq refuses: that peer, not the registry, is out
            LOG.warning("cannot connect to peer %s (%s); trying the next", self.peer, exc)
            return self._next_peer(now)
        self.sent = False
        self.after = ""
        self.listed = 0
        self.deadline = now + self.server.peer_timeout
        return True

    def close(self):
        if self.socket is not None:
            self.socket.close()
            self.socket = None
