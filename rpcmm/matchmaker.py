"""The matchmaker interface every backend implements.

A matchmaker answers "which hosts serve this topic?" and lets a process say which topics its
hosts serve. The concepts are the Grizzly blueprint's: register a topic for a host, unregister
it, heartbeat, look up. Backends differ in where the answers come from:

- :class:`rpcmm.backends.static.StaticMatchmaker`: the seed file's ring only;
- :class:`rpcmm.backends.localhost.LocalhostMatchmaker`: every topic on this host;
- :class:`rpcmm.backends.registry.RegistryMatchmaker`: the in-band registry servers (the main one).

Lifecycle: constructing a matchmaker does no I/O and starts nothing. :meth:`Matchmaker.start`
opens what it needs, :meth:`Matchmaker.stop` unregisters every host this matchmaker registered
(best effort), stops heartbeating and releases everything; both are idempotent and a
matchmaker is also a context manager. Every public method is thread-safe once started.

Lookups: :meth:`Matchmaker.lookup` takes a typed key (:class:`~rpcmm.addressing.Anycast`,
:class:`~rpcmm.addressing.Directed`, :class:`~rpcmm.addressing.Fanout`) and returns a tuple of
host names, empty when nobody serves the topic. Round robin for Anycast is strict and
per matchmaker: successive lookups of one topic walk its hosts in order.
"""

import abc
import contextlib
import itertools
import logging

from rpcmm import protocol
from rpcmm.addressing import Anycast, Directed, Fanout, validate_name
from rpcmm.clock import SYSTEM_CLOCK
from rpcmm.errors import ConfigurationError, LifecycleError
from rpcmm.runtime import default_runtime
from rpcmm.timing import HeartbeatTiming

__all__ = ["Matchmaker", "Capability", "MAX_ROTATIONS"]

LOG = logging.getLogger(__name__)
#: Anycast topics whose round-robin counters are kept at once (see :meth:`Matchmaker.lookup`).
MAX_ROTATIONS = 65_536

_KEY_TYPES = frozenset({Anycast, Directed, Fanout})


class Capability:
    """Names of what a backend can do; ``Matchmaker.capabilities`` holds those it supports."""

    #: Registrations made here are seen by other processes' lookups.
    SHARED_REGISTRATIONS = "shared-registrations"
    #: A host whose heartbeats stop disappears from lookups after its TTL.
    EXPIRY = "expiry"
    #: The backend can be out of reach, and lookups then raise RegistryUnavailable.
    REMOTE = "remote"
    #: Topics listed in the seed's static ring resolve to their hosts.
    STATIC_RING = "static-ring"
    #: Every topic resolves to this host, whatever was registered.
    EVERYTHING_LOCAL = "everything-local"


class Matchmaker(abc.ABC):
    """Base class of every backend; see the module docstring for the contract.

    Subclasses implement :meth:`_resolve` (all hosts serving a topic) and may override
    :meth:`_open`, :meth:`_close`, :meth:`_announce` and :meth:`_withdraw`.
    """

    #: What this backend supports (a frozenset of Capability names).
    capabilities = frozenset()

    def __init__(self, timing=None, clock=SYSTEM_CLOCK, runtime=None):
        self.timing = timing if timing is not None else HeartbeatTiming()
        self.clock = clock
        self.runtime = runtime if runtime is not None else default_runtime()
        self._state_lock = self.runtime.lock()
        # Held from reading a host's topic set to sending it (register, unregister, each beat):
        # every announcement carries a whole set, so they must leave in the order they were
        # read, or an older set sent last undoes a newer one until the next beat (or the TTL).
        self._announce_lock = self.runtime.lock()
        self._registrations = {}  # host -> frozenset of topics
        # host -> until when (monotonic) this process's own lookups leave it out: it withdrew
        # the host's last topic, and the registries may not have handled that yet.
        self._withdrawn = {}
        self._rotations = {}  # topic -> itertools.count, for strict round robin
        self._started = False
        self._heart = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self):
        """Open connections; idempotent. Returns self."""
        with self._state_lock:
            if self._started:
                return self
            try:
                self._open()
            except BaseException:
                # Whatever _open() made before it failed is released here: stop() does nothing
                # for a matchmaker that never started, and a context still holding sockets
                # would hang its owner's term().
                self._close()
                raise
            self._started = True
        return self

    def stop(self):
        """Unregister this matchmaker's hosts, stop heartbeating, close; idempotent."""
        self.stop_heartbeat()
        # Under the announce lock: a register() whose announcement is on its way finishes first,
        # so the withdrawals below are the last word (and later ones find it stopped).
        with self._announce_lock:
            with self._state_lock:
                if not self._started:
                    return
                hosts = list(self._registrations)
                self._registrations.clear()
                self._withdrawn = {}
                self._started = False
            if hosts:
                try:
                    self._withdraw_many(hosts)
                except Exception:  # best effort: the registry will expire them anyway
                    LOG.warning("could not unregister %s on stop", ", ".join(hosts), exc_info=True)
        self._close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def started(self):
        return self._started

    def _require_started(self):
        if not self._started:
            raise LifecycleError(f"{type(self).__name__} is not started; call start() first")

    # -- registration ------------------------------------------------------------------------

    def register(self, topic, host):
        """Declare that ``host`` serves ``topic``, visible to lookups at once. ConfigurationError
        if that makes the host's record larger than a registry takes (more than
        :data:`~rpcmm.protocol.MAX_TOPICS_PER_HOST` topics, or names adding up to more than
        :data:`~rpcmm.protocol.MAX_RECORD_BYTES`): every heartbeat would be refused, and the host
        would expire from every registry. The same limits hold on every backend."""
        validate_name("topic", topic)
        validate_name("host", host)
        with self._announce_lock:
            self._require_started()  # under the lock: stop() may have run since the call began
            with self._state_lock:
                topics = self._registrations.get(host, frozenset())
                if topic in topics:
                    return
                topics = topics | {topic}
                _check_record(host, topics)
                self._registrations[host] = topics
                self._withdrawn.pop(host, None)
            self._announce(host, topics)
        self._own_registrations_changed(topic)

    def unregister(self, topic, host):
        """Withdraw ``host`` from ``topic`` at once; unknown pairs are ignored."""
        validate_name("topic", topic)
        validate_name("host", host)
        with self._announce_lock:
            self._require_started()
            with self._state_lock:
                topics = self._registrations.get(host)
                if topics is None or topic not in topics:
                    return
                topics = topics - {topic}
                if topics:
                    self._registrations[host] = topics
                else:
                    del self._registrations[host]
                    now = self.clock.monotonic()
                    self._withdrawn = {h: t for h, t in self._withdrawn.items() if t > now}
                    self._withdrawn[host] = now + self.timing.ttl
            if topics:
                self._announce(host, topics)
            else:
                self._withdraw(host)
        self._own_registrations_changed(topic)

    def registrations(self):
        """This matchmaker's own registrations: a dict of host -> frozenset of topics."""
        with self._state_lock:
            return dict(self._registrations)

    # -- heartbeats --------------------------------------------------------------------------

    def start_heartbeat(self):
        """Re-announce every registered host every ``timing.interval`` seconds until stopped."""
        self._require_started()
        from rpcmm.heart import Heart

        with self._state_lock:
            if self._heart is not None:
                return
            self._heart = Heart(self._beat, self.timing.interval, self.runtime, name=f"rpcmm-heart-{id(self):x}")
        self._heart.start()

    def stop_heartbeat(self):
        """Stop heartbeating (hosts stay registered until their TTL passes); idempotent."""
        with self._state_lock:
            heart, self._heart = self._heart, None
        if heart is not None:
            heart.stop()

    @contextlib.contextmanager
    def heartbeat(self):
        """``with mm.heartbeat():`` heartbeats for the duration of the block."""
        self.start_heartbeat()
        try:
            yield self
        finally:
            self.stop_heartbeat()

    def _beat(self):
        """One heartbeat: announce every registered host's full topic set."""
        with self._announce_lock:
            with self._state_lock:
                states = list(self._registrations.items())
            if states:
                self._announce_many(states)

    # -- lookups -----------------------------------------------------------------------------

    def lookup(self, key):
        """Resolve a typed key to a tuple of hosts; empty when nobody serves the topic.

        May raise RegistryUnavailable (remote backends only) when nothing can answer.
        """
        kind = type(key)
        if kind not in _KEY_TYPES:
            raise TypeError(f"lookup takes Anycast, Directed or Fanout, not {kind.__name__}")
        hosts = self._resolve(key.topic)
        if kind is Anycast:
            if not hosts:
                return ()
            rotations = self._rotations
            rotation = rotations.get(key.topic)
            if rotation is None:
                if len(rotations) >= MAX_ROTATIONS:
                    # Every topic ever looked up keeps a counter: a process that looks up very
                    # many once would grow without end. Starting over only restarts round robins.
                    rotations.clear()
                rotation = rotations.setdefault(key.topic, itertools.count())
            return (hosts[next(rotation) % len(hosts)],)
        if kind is Fanout:
            return hosts
        return (key.host,) if key.host in hosts else ()  # Directed

    def confirmed(self, topic, host):
        """True once other processes' lookups of ``topic`` include ``host``. Backends whose
        registrations are casts ask their store directly (no cache, no local view); the
        default, for backends whose writes are synchronous or not shared at all, is True."""
        return True

    def report_unreachable(self, host):
        """Say that this process could not reach ``host``; backends that share registrations
        use it to drop dead hosts early. The default does nothing."""

    def hosts(self, topic):
        """Every host serving ``topic`` (the same as ``lookup(Fanout(topic))``)."""
        return self._resolve(validate_name("topic", topic))

    # -- what backends provide -----------------------------------------------------------------

    @abc.abstractmethod
    def _resolve(self, topic):
        """All hosts serving ``topic`` as a tuple, in a stable order."""

    def _open(self):
        """Acquire resources; called once by start() under the state lock."""

    def _close(self):
        """Release resources; called once by stop(), or by start() when _open() failed part-way
        (so it must cope with whatever _open() had not yet made)."""

    def _announce(self, host, topics):
        """Publish ``host``'s full topic set now (register and heartbeat)."""

    def _announce_many(self, states):
        """Publish several (host, topics) pairs; backends may batch them."""
        for host, topics in states:
            self._announce(host, topics)

    def _withdraw(self, host):
        """Remove ``host`` entirely now (unregister)."""

    def _withdraw_many(self, hosts):
        """Remove every host of ``hosts`` (on stop); backends with round trips do it in one.
        The default withdraws them one by one, each failure logged and the rest still tried."""
        for host in hosts:
            try:
                self._withdraw(host)
            except Exception:  # best effort: the registry will expire it anyway
                LOG.warning("could not unregister host %s on stop", host, exc_info=True)

    def _own_registrations_changed(self, topic):
        """This process registered or unregistered a host for ``topic``: a backend that caches
        answers makes sure its own next lookup of the topic reflects it."""

    def _with_own_registrations(self, topic, hosts):
        """``hosts`` corrected by what this process itself registered: its hosts that serve
        ``topic`` are in, its hosts that no longer do are out. A backend whose registrations
        travel as casts uses this so that a process sees its own changes at once, even before
        the registry has handled them. A host whose last topic it withdrew is left out of every
        answer for a TTL (by then the registries have dropped it anyway)."""
        if not self._registrations and not self._withdrawn:
            return hosts
        # Under the lock (register() and unregister() in other threads change both), without
        # copying: this runs on every lookup a process with registrations makes to a registry.
        with self._state_lock:
            registrations = self._registrations
            if self._withdrawn:
                now = self.clock.monotonic()
                self._withdrawn = {h: until for h, until in self._withdrawn.items() if until > now}
            withdrawn = self._withdrawn
            kept = tuple(h for h in hosts
                         if h not in withdrawn and (h not in registrations or topic in registrations[h]))
            added = tuple(h for h, topics in registrations.items() if topic in topics and h not in kept)
        return kept + added


def _check_record(host, topics):
    """Refuse a host record no registry would take (see :meth:`Matchmaker.register`)."""
    if len(topics) > protocol.MAX_TOPICS_PER_HOST:
        raise ConfigurationError(f"host {host!r} would serve {len(topics)} topics; a host serves at most "
                                 f"{protocol.MAX_TOPICS_PER_HOST}")
    size = protocol.record_bytes(host, topics)
    if size > protocol.MAX_RECORD_BYTES:
        raise ConfigurationError(f"host {host!r}: its name and topics would add up to {size} bytes; at most "
                                 f"{protocol.MAX_RECORD_BYTES}")
