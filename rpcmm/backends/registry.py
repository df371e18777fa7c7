"""The in-band registry backend: the main one.

Two tiers answer a lookup, with a cache in front:

1. the seed file (read once, no network) says where the registry servers are, and which
   hosts serve topics statically;
2. one registry server answers with the hosts registered for the topic (with failover to the
   next registry on timeout).

The answer (static hosts first, then registered ones) is cached for ``cache_max_age`` seconds.
With ``live`` (the default), the client also subscribes to the answering registry's live feed
for every topic it looked up (:mod:`rpcmm.feed`): changes then reach the cache within
milliseconds, and answers so maintained stay fresh for ``live_max_age`` seconds. When no
registry answers, a cached answer of any age is served (with a warning); failing that, the
static ring's hosts; failing that, :class:`~rpcmm.errors.RegistryUnavailable` is raised. With
``cache_file``, the cache is also kept on disk and a cold start with no registry begins from it.

Registries that are WARMING (loading their table from a peer) or DEGRADED (holding off a mass
expiry) are asked only when no registry that is UP answers.

Registrations and heartbeats are cast to every registry in the seed. Each heartbeat carries
the host's full topic set, so a registry that restarted or expired a host has it back within
one heartbeat interval.
"""

import logging
import math

from rpcmm import protocol
from rpcmm.cache import DEFAULT_CACHE_MAX_AGE, DEFAULT_CACHE_MAX_ENTRIES, DEFAULT_LIVE_MAX_AGE, LookupCache
from rpcmm.cachefile import load_cache
from rpcmm.client import DEFAULT_LOOKUP_TIMEOUT, RegistryClient
from rpcmm.feed import LiveFeed
from rpcmm.errors import ConfigurationError, RegistryUnavailable
from rpcmm.logutil import RateLimitedLogger
from rpcmm.matchmaker import Capability, Matchmaker

__all__ = ["RegistryMatchmaker"]

LOG = logging.getLogger(__name__)


class RegistryMatchmaker(Matchmaker):
    """A matchmaker backed by the registry servers a :class:`~rpcmm.seed.Seed` lists.

    ``timing`` (a :class:`~rpcmm.timing.HeartbeatTiming`) is what this process declares for
    its hosts. ``lookup_timeout`` is per registry, in seconds. ``live`` subscribes to live feeds;
    ``cache_file`` keeps a last-known-good copy of the cache on disk. ``curve`` (a
    :class:`~rpcmm.security.LoadedCurveClientConfig`) talks to the registries over CURVE.
    ``context`` is a zmq context to share (else the matchmaker makes and terms its own).
    """

    capabilities = frozenset({
        Capability.SHARED_REGISTRATIONS, Capability.EXPIRY, Capability.REMOTE, Capability.STATIC_RING,
    })

    def __init__(self, seed, timing=None, lookup_timeout=DEFAULT_LOOKUP_TIMEOUT,
                 cache_max_age=DEFAULT_CACHE_MAX_AGE, cache_max_entries=DEFAULT_CACHE_MAX_ENTRIES,
                 live=True, live_max_age=DEFAULT_LIVE_MAX_AGE, cache_file=None, context=None, curve=None,
                 **kwargs):
        super().__init__(timing=timing, **kwargs)
        if not seed.registries:
            raise ConfigurationError(
                f"{seed.source} lists no registries under 'rpcmm-registry'; use StaticMatchmaker for a plain ring"
            )
        if not lookup_timeout > 0:
            raise ConfigurationError(f"lookup_timeout must be positive, got {lookup_timeout!r}")
        self.seed = seed
        self.lookup_timeout = lookup_timeout
        # The live feed's native thread writes to the cache too: a lock both kinds of thread share.
        self.cache = LookupCache(cache_max_age, cache_max_entries, live_max_age, lock=self.runtime.native_lock())
        self.live = live
        self.cache_file = cache_file
        self.curve = curve
        self._context = context
        self._owns_context = context is None
        self._client = None
        self._feed = None
        self._stale_warnings = RateLimitedLogger(LOG, period=10.0)

    def _open(self):
        if self._context is None:
            self._context = self.runtime.new_context()
        self._client = self._make_client()
        if self.cache_file:
            answers, age = load_cache(self.cache_file)
            if answers:
                if age is None:  # of unknown age: as old as can be, not as new
                    self.cache.load(answers)
                else:
                    self.cache.load(answers, stored_at=self.clock.monotonic() - age)
                LOG.info("loaded %d cached answers (%s old) from %s", len(answers),
                         "?" if age is None else f"{age:.0f}s", self.cache_file)
        if self.live or self.cache_file:
            self._feed = LiveFeed(self.cache, self.runtime, self.clock, timeout=self.lookup_timeout,
                                  cache_file=self.cache_file, curve=self.curve).start()

    def _make_client(self):
        return RegistryClient(self.seed.registries, self._context, self.runtime, self.lookup_timeout,
                              curve=self.curve).start()

    def _close(self):
        feed, self._feed = self._feed, None
        if feed is not None:
            feed.stop()
        client, self._client = self._client, None
        if client is not None:
            client.close()
        if self._owns_context and self._context is not None:
            self._context.term()
            self._context = None

    # -- registration ------------------------------------------------------------------------

    def _state(self, host, topics):
        return protocol.HostState(host, self.timing.interval, self.timing.ttl, tuple(sorted(topics)))

    def _announce(self, host, topics):
        self._client.cast(protocol.Heartbeat((self._state(host, topics),)))

    def _announce_many(self, states):
        for message in protocol.heartbeats(self._state(host, topics) for host, topics in states):
            self._client.cast(message)

    def _withdraw(self, host):
        self._client.cast(protocol.Unregister((host,)))

    def _own_registrations_changed(self, topic):
        self.cache.invalidate(topic)

    # -- lookups -----------------------------------------------------------------------------

    def _resolve(self, topic):
        now = self.clock.monotonic()
        hosts = self.cache.fresh(topic, now)
        if hosts is not None:
            return hosts
        self._require_started()
        static = self.seed.static_hosts(topic)
        try:
            answer, endpoint = self._client.lookup(topic)
        except RegistryUnavailable:
            stale = self.cache.stale(topic)
            if stale is not None:
                self._stale_warnings.log("no registry answered for %r; serving the cached answer from %s",
                                         topic, _age_text(self.cache.age(topic, now)))
                return stale
            if static:
                return static
            raise
        registered = self._with_own_registrations(topic, answer.hosts)
        hosts = static + tuple(h for h in registered if h not in static) if static else registered
        feed = self._feed
        healthy = answer.state is protocol.State.UP
        if static:
            # A merged answer is not what the feed's deltas describe: cache it plainly.
            self.cache.put(topic, hosts, now)
        else:
            live = healthy and feed is not None and self.live and feed.live_epoch == answer.epoch
            self.cache.put(topic, hosts, now, answer.epoch, answer.version, live)
            if self.live and feed is not None and healthy:
                feed.follow(endpoint, topic)
        return hosts

    def confirmed(self, topic, host):
        """Ask a registry (the preferred one) whether it has ``host`` for ``topic`` yet: the
        registration is a cast to every registry, so this says it has landed, at least there.
        May raise RegistryUnavailable."""
        self._require_started()
        answer, _ = self._client.lookup(topic)
        return host in answer.hosts

    def report_unreachable(self, host):
        """This process could not reach ``host``: tell the registries (which drop it early once a
        second reporter or a missed heartbeat confirms) and stop trusting cached answers naming it."""
        self._require_started()
        self.cache.stale_host(host)
        self._client.suspect((host,))

    def table(self):
        """The whole table of the first registry that answers: ``(rows, endpoint)``; rows are
        :class:`~rpcmm.protocol.TableRow`, sorted by host, read page by page from that one
        registry (:meth:`~rpcmm.client.RegistryClient.list_hosts`). Raises RegistryUnavailable
        if none answers or the one listing stops midway, ProtocolError if its pages are bad."""
        self._require_started()
        reply, endpoint = self._client.list_hosts()
        return reply.rows, endpoint

    @property
    def preferred_registry(self):
        """The registry this matchmaker asks first: the last one that answered as UP."""
        self._require_started()
        return self._client.preferred_endpoint

    def status(self):
        """Every registry's :class:`~rpcmm.protocol.Health`, or None where it did not answer:
        a list of ``(endpoint, health)`` in seed order."""
        self._require_started()
        return [(e, self._client.status(i)) for i, e in enumerate(self._client.endpoints)]


def _age_text(seconds):
    """``12.3s ago``, or what an answer of unknown age (from a cache file without one) is."""
    return "an unknown time ago" if math.isinf(seconds) else f"{seconds:.1f}s ago"
