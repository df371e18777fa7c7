"""The Redis backend: hosts announce their topics to a Redis server, lookups ask it.

For deployments that already run Redis (or want Sentinel failover rather than rpcmm's own
registry servers). Install it with ``pip install rpcmm[redis]``; redis-py is imported by
:meth:`RedisMatchmaker.start`, never by importing rpcmm.

The data model is in :mod:`rpcmm.backends.redis_schema`: one TTL'd record per host (so one
heartbeat per host), a per-topic index, and Lua scripts so an announce is atomic and a lookup
is one round trip that returns only live hosts. A lookup goes:

1. the local cache, if its entry is younger than ``cache_max_age`` *and* the change channel is
   subscribed (pub/sub messages make the entries whose hosts changed stale);
2. Redis, one script call; the answer (the seed ring's static hosts first, then the live
   registered ones) is cached;
3. if Redis cannot answer: the cached entry whatever its age, else the static hosts, else
   :class:`~rpcmm.errors.RegistryUnavailable`.

That is the order and the fallbacks of :class:`~rpcmm.backends.registry.RegistryMatchmaker`.

A host that stops heartbeating expires in Redis after its TTL. Other clients drop it within
``ttl + cache_max_age``, or at once if the server publishes expiry events
(``notify-keyspace-events Ex``, off by default; rpcmm never changes server configuration).
Every other change reaches subscribed caches at once through the change channel, and a
client's own register/unregister drops the topic from its own cache synchronously.

Writes (register, unregister, heartbeat) that cannot reach Redis are logged, not raised, as
the in-band registry's casts: the registration is kept locally, so the next heartbeat
announces it again.
"""

import logging
import math

from rpcmm.addressing import validate_name
from rpcmm.backends.common import ring_of
from rpcmm.backends.redis_cache import InvalidatedCache
from rpcmm.backends.redis_listener import ChangeListener
from rpcmm.backends.redis_location import RedisLocation, parse_redis_url
from rpcmm.backends.redis_schema import (
    ANNOUNCE_SCRIPT,
    DEFAULT_NAMESPACE,
    LOOKUP_SCRIPT,
    WITHDRAW_SCRIPT,
    KeySchema,
)
from rpcmm.cache import DEFAULT_CACHE_MAX_AGE, DEFAULT_CACHE_MAX_ENTRIES
from rpcmm.client import DEFAULT_LOOKUP_TIMEOUT
from rpcmm.errors import ConfigurationError, RegistryUnavailable
from rpcmm.logutil import RateLimitedLogger
from rpcmm.matchmaker import Capability, Matchmaker

__all__ = ["RedisMatchmaker"]

LOG = logging.getLogger(__name__)

#: Seconds between two health checks of an idle pub/sub connection (detects a silent peer).
_HEALTH_CHECK_INTERVAL = 2


class RedisMatchmaker(Matchmaker):
    """A matchmaker whose registrations live in Redis.

    ``location`` is a :class:`~rpcmm.backends.redis_location.RedisLocation` or a URL string
    (``redis://host:port/db``, ``redis+sentinel://s1:26379,s2:26379/service``); ``seed`` an
    optional :class:`~rpcmm.seed.Seed` (or dict) whose ring lists static hosts; ``namespace``
    prefixes every key; ``lookup_timeout`` bounds each Redis command (lookups and writes) in
    seconds; ``cache_max_age`` is how long a cached answer is trusted (0: ask Redis every
    time) and ``cache_max_entries`` how many topics the cache keeps.

    Thread-safe once started: redis-py's connection pool serves concurrent callers.
    """

    capabilities = frozenset({
        Capability.SHARED_REGISTRATIONS,
        Capability.EXPIRY,
        Capability.REMOTE,
        Capability.STATIC_RING,
    })

    def __init__(self, location, seed=None, namespace=DEFAULT_NAMESPACE, lookup_timeout=DEFAULT_LOOKUP_TIMEOUT,
                 cache_max_age=DEFAULT_CACHE_MAX_AGE, cache_max_entries=DEFAULT_CACHE_MAX_ENTRIES, **kwargs):
        super().__init__(**kwargs)
        self.location = location if isinstance(location, RedisLocation) else parse_redis_url(location)
        self._ring = ring_of(seed) if seed is not None else {}
        self._keys = KeySchema(validate_name("namespace", namespace))
        if not lookup_timeout > 0:
            raise ConfigurationError(f"lookup_timeout must be positive, got {lookup_timeout!r}")
        self.lookup_timeout = lookup_timeout
        self.cache = InvalidatedCache(cache_max_age, cache_max_entries, self.clock, self.runtime.lock())
        self._stale_warnings = RateLimitedLogger(LOG, period=10.0)
        self._write_warnings = RateLimitedLogger(LOG, period=10.0)
        self._client = None
        self._clients = ()
        self._listener = None
        self._scripts = None

    # -- lifecycle -------------------------------------------------------------------------

    def _open(self):
        self._client, changes, self._clients = _connect(self.location, self.lookup_timeout)
        sources = {"announce": ANNOUNCE_SCRIPT, "withdraw": WITHDRAW_SCRIPT, "lookup": LOOKUP_SCRIPT}
        self._scripts = {name: self._client.register_script(source) for name, source in sources.items()}
        handlers = {
            self._keys.channel: self._on_change,
            _expired_channel(self.location.db): self._on_expired,
        }
        self._listener = ChangeListener(
            changes, handlers, on_reset=self.cache.age_all, runtime=self.runtime,
            retry_interval=self.lookup_timeout, name=f"rpcmm-redis-listener-{id(self):x}",
        )
        self._listener.start()

    def _close(self):
        # Also after an _open() that failed part-way: release whatever it got to.
        if self._listener is not None:
            self._listener.stop()
        for client in self._clients:
            client.close()
            client.connection_pool.disconnect()
        self._client = self._listener = self._scripts = None
        self._clients = ()

    def wait_subscribed(self, timeout):
        """Block until the change channel is subscribed (caching is on); return whether it is."""
        self._require_started()
        return self._listener.wait_subscribed(timeout)

    # -- what the base class asks of a backend ------------------------------------------------

    def _resolve(self, topic):
        """Static hosts first, then the live registered ones; see the module docstring."""
        self._require_started()
        if self._listener.subscribed:
            cached = self.cache.fresh(topic)
            if cached is not None:
                return cached
        static = self._ring.get(topic, ())
        generation = self.cache.generation
        try:
            registered = sorted(self._lookup(topic))
        except RegistryUnavailable:
            stale = self.cache.stale(topic)
            if stale is not None:
                self._stale_warnings.log("Redis did not answer for %r; serving a cached answer", topic)
                return stale
            if static:
                return static
            raise
        hosts = static + tuple(h for h in registered if h not in static)
        self.cache.put(topic, hosts, generation)
        return hosts

    def _announce(self, host, topics):
        self._announce_many([(host, topics)])

    def _announce_many(self, states):
        """Announce every (host, topics) pair in one round trip."""
        ttl_ms = max(1, math.ceil(self.timing.ttl * 1000))
        calls = [("announce", [host, ttl_ms, *sorted(topics)]) for host, topics in states]
        self._write(calls)

    def _withdraw(self, host):
        self._withdraw_many([host])

    def _withdraw_many(self, hosts):
        # One round trip for all: on stop, against a Redis that hangs, each would cost a timeout.
        self._write([("withdraw", [host]) for host in hosts])

    def _own_registrations_changed(self, topic):
        # Whether or not the write reached Redis, this client's next lookup must ask again, and
        # must not fall back on an answer from before its own change.
        self.cache.forget(topic)

    # -- Redis calls ---------------------------------------------------------------------------

    def _write(self, calls):
        """Run write scripts, ``calls`` of (script name, arguments after the key prefixes), in one
        pipelined round trip; make what they changed stale in this client's cache at once.

        A write that fails is logged, not raised, like the in-band registry's casts: the
        registration stays in this matchmaker, and the next heartbeat announces it again (this
        client's own register/unregister already dropped the topic from its cache).
        """
        from redis.exceptions import RedisError

        try:
            results = self._evalsha_pipelined(calls)
        except RedisError as exc:
            self._write_warnings.log("could not write to Redis at %s (%s); the next heartbeat retries",
                                     self.location, exc)
            return
        self.cache.make_stale(topic for changed in results for topic in changed)

    def _evalsha_pipelined(self, calls):
        """The results of ``calls`` sent as EVALSHA in one pipeline.

        Not redis-py's pipelined Script objects: those ask SCRIPT EXISTS before every pipeline,
        a second round trip per heartbeat. A server that lost its scripts (restart, failover)
        answers NOSCRIPT once; the scripts are loaded then and the pipeline sent again. The
        scripts are idempotent (they set state, never add to it), so a replay is harmless.
        """
        from redis.exceptions import NoScriptError

        try:
            return self._send_evalsha(calls)
        except NoScriptError:
            for name in {name for name, _ in calls}:
                self._client.script_load(self._scripts[name].script)
            return self._send_evalsha(calls)

    def _send_evalsha(self, calls):
        prefixes = [self._keys.host_prefix, self._keys.topic_prefix, self._keys.channel]
        with self._client.pipeline(transaction=False) as pipe:
            for name, tail in calls:
                pipe.evalsha(self._scripts[name].sha, 0, *prefixes, *tail)
            return pipe.execute()

    def _lookup(self, topic):
        """The live hosts of ``topic`` from Redis, in one round trip."""
        from redis.exceptions import RedisError

        try:
            return self._scripts["lookup"](
                keys=[self._keys.topic_key(topic)], args=[self._keys.host_prefix, self._keys.channel, topic]
            )
        except RedisError as exc:
            raise RegistryUnavailable(topic, self.location.endpoints, self.lookup_timeout) from exc

    def _on_change(self, topic):
        self.cache.make_stale((topic,))

    def _on_expired(self, key):
        # The expired record is gone with its topic list, so any topic may have lost a host.
        if key.startswith(self._keys.host_prefix):
            self.cache.age_all()


def _expired_channel(db):
    """Where Redis reports expired keys, if the server runs with notify-keyspace-events Ex."""
    return f"__keyevent@{db}__:expired"


def _connect(location, timeout):
    """redis-py clients for ``location``: ``(commands, changes, to_close)``.

    ``commands`` serves every command. ``changes`` is for pub/sub only and never retries:
    redis-py would otherwise reconnect and resubscribe inside a read, silently, and the
    messages published in between would be missed without the listener knowing. ``to_close``
    lists every client, the Sentinel ones included. Nothing is sent until the first command.
    """
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
        from redis.sentinel import Sentinel
    except ImportError as exc:
        raise ConfigurationError("the Redis backend needs redis-py: pip install 'rpcmm[redis]'") from exc
    options = dict(
        db=location.db,
        username=location.username,
        password=location.password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=_HEALTH_CHECK_INTERVAL,
        decode_responses=True,
        ssl=location.tls,
    )
    # One immediate retry for commands, on a broken connection only: a pooled connection that
    # a restarted server or a failover broke fails on first use, and the retry opens a new one.
    # Not on a timeout: a server that hangs would then cost each command two lookup timeouts.
    command_retry = Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,))
    change_retry = Retry(NoBackoff(), 0)
    if location.uses_sentinel:
        sentinel = Sentinel(
            [(e.host, e.port) for e in location.endpoints],
            sentinel_kwargs=dict(socket_timeout=timeout, socket_connect_timeout=timeout, ssl=location.tls),
            **options,
        )
        commands = sentinel.master_for(location.service, retry=command_retry)
        changes = sentinel.master_for(location.service, retry=change_retry)
        return commands, changes, (commands, changes, *sentinel.sentinels)
    endpoint = location.endpoints[0]
    commands = redis.Redis(host=endpoint.host, port=endpoint.port, retry=command_retry, **options)
    changes = redis.Redis(host=endpoint.host, port=endpoint.port, retry=change_retry, **options)
    return commands, changes, (commands, changes)
