"""The Redis backend's cache: :class:`~rpcmm.cache.LookupCache` plus invalidation by messages.

The lookup cache bounds each answer's age and the number of topics. On top of it, this adds
what pub/sub makes possible:

- a change message for a topic makes its entry stale (:meth:`InvalidatedCache.make_stale`);
- losing (or re-establishing) the change channel makes every entry stale at once
  (:meth:`InvalidatedCache.age_all`): messages may have been missed meanwhile.

Stale entries stay in both cases, because when Redis cannot be reached an old answer is better
than none: after a Redis restart every host's heartbeat re-announces its topics, and dropping
the entries then would leave every client without a fallback just while Redis flaps.

A lookup that races with an invalidation must not serve the answer it fetched before the
change as fresh. Callers read :attr:`InvalidatedCache.generation` before querying Redis and pass
it to :meth:`InvalidatedCache.put`, which stores the answer as stale only (a fallback, never a
fresh hit) if any invalidation happened in between.

Pure logic driven by a clock (no Redis, no threads). Thread-safe.
"""

from rpcmm.cache import LookupCache

__all__ = ["InvalidatedCache"]

#: The generation recorded for an answer that raced with an invalidation: below any trusted one.
_NEVER_FRESH = -1


class InvalidatedCache:
    """topic -> tuple of hosts; fresh for ``max_age`` seconds unless invalidated before."""

    def __init__(self, max_age, max_entries, clock, lock):
        self._entries = LookupCache(max_age, max_entries)  # topic -> (hosts, generation stored at)
        self._clock = clock
        self._lock = lock
        self._generation = 0
        self._trusted_from = 0  # entries stored at an older generation are stale

    @property
    def generation(self):
        """A counter that every invalidation increments; pass it back to put()."""
        return self._generation

    def fresh(self, topic):
        """The cached hosts of ``topic`` if younger than max_age and not aged since, else None."""
        with self._lock:
            entry = self._entries.fresh(topic, self._clock.monotonic())
            if entry is None or entry[1] < self._trusted_from:
                return None
            return entry[0]

    def stale(self, topic):
        """The cached hosts of ``topic`` whatever their age, else None."""
        with self._lock:
            entry = self._entries.stale(topic)
        return None if entry is None else entry[0]

    def put(self, topic, hosts, generation):
        """Store ``hosts`` fetched at ``generation``; return whether it is fresh. If an
        invalidation came since, it is stored stale: good enough for a fallback only."""
        with self._lock:
            fresh = generation == self._generation
            stored_at = generation if fresh else _NEVER_FRESH
            self._entries.put(topic, (tuple(hosts), stored_at), self._clock.monotonic())
            return fresh

    def make_stale(self, topics):
        """Make the entries of ``topics`` stale (their hosts changed); they stay as fallbacks."""
        with self._lock:
            self._generation += 1
            for topic in topics:
                self._entries.make_stale(topic)

    def forget(self, topic):
        """Forget ``topic`` entirely: this process changed its own registration of it, and must
        neither serve the old answer fresh nor fall back on it (a host it just unregistered)."""
        with self._lock:
            self._generation += 1
            self._entries.invalidate(topic)

    def age_all(self):
        """Make every entry stale, but keep them for fallback answers."""
        with self._lock:
            self._generation += 1
            self._trusted_from = self._generation

    def __len__(self):
        return len(self._entries)
