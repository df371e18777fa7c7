"""The client's lookup cache: answers, how long they stay fresh, and stale answers as a fallback.

A fresh entry answers a lookup without asking a registry. An entry is fresh for ``max_age``
seconds, or for the longer ``live_max_age`` when it was stored from, or kept up to date by, a
registry's live feed (each change then arrives as a delta within milliseconds, so age is no
longer what keeps it right). An entry past its freshness is refetched, and served anyway
(stale) if no registry answers. At most ``max_entries`` topics are kept, the least recently
stored dropped first.

Every entry carries the registry ``epoch`` and topic ``version`` it reflects, so a delta is
applied only on top of the version it follows; any other delta means something was missed,
and the entry is made stale so the next lookup reloads it (the Clone pattern's resync).

Reads take no lock (one dict access); writes take one, because a lookup answer and a live
delta for the same topic may race and the newer version must win. Pure logic: time is passed in.
"""

import enum
import threading

__all__ = ["LookupCache", "Applied", "DEFAULT_CACHE_MAX_AGE", "DEFAULT_LIVE_MAX_AGE",
           "DEFAULT_CACHE_MAX_ENTRIES"]

#: Seconds an answer is served without asking a registry again.
DEFAULT_CACHE_MAX_AGE = 1.0
#: Seconds an answer kept up to date by a live feed is served without asking again.
DEFAULT_LIVE_MAX_AGE = 10.0
#: Topics kept at most.
DEFAULT_CACHE_MAX_ENTRIES = 65536

_NEVER = float("-inf")


class Applied(enum.Enum):
    """What a live-feed message did to the cache."""

    APPLIED = "applied"
    IGNORED = "ignored"  # old news, or a topic this cache does not hold
    GAP = "gap"  # a version was missed: the entry is stale until the next lookup reloads it


class LookupCache:
    """topic -> (hosts, fresh_until, stored_at, epoch, version); see the module docstring."""

    def __init__(self, max_age=DEFAULT_CACHE_MAX_AGE, max_entries=DEFAULT_CACHE_MAX_ENTRIES,
                 live_max_age=DEFAULT_LIVE_MAX_AGE, lock=None):
        if max_age < 0 or live_max_age < 0:
            raise ValueError("cache ages must be >= 0")
        if max_entries < 1:
            raise ValueError("cache max_entries must be >= 1")
        self.max_age = max_age
        self.live_max_age = live_max_age
        self.max_entries = max_entries
        #: Incremented on every write, so a writer to disk knows whether anything changed.
        self.generation = 0
        self._entries = {}  # dict order is storage order
        # topic -> (epoch, version) of the last delta for a topic held by no entry (evicted, or
        # invalidated by this process's own registration, while its feed still follows it); a
        # lookup answer older than that, stored just after, must not be taken as live.
        self._unheld = {}
        self._lock = lock if lock is not None else threading.Lock()

    def __len__(self):
        return len(self._entries)

    # -- reads (no lock) -------------------------------------------------------------------------

    def fresh(self, topic, now):
        """The cached hosts if still fresh, else None."""
        entry = self._entries.get(topic)
        if entry is not None and now < entry[1]:
            return entry[0]
        return None

    def stale(self, topic):
        """The cached hosts whatever their age, or None; for when no registry answers."""
        entry = self._entries.get(topic)
        return None if entry is None else entry[0]

    def age(self, topic, now):
        """Seconds since ``topic`` was stored, or None (infinite for entries loaded from disk)."""
        entry = self._entries.get(topic)
        return None if entry is None else now - entry[2]

    def snapshot(self):
        """Every topic's hosts, as a plain dict (for writing to disk)."""
        return {topic: list(entry[0]) for topic, entry in list(self._entries.items())}

    # -- writes --------------------------------------------------------------------------------

    def put(self, topic, hosts, now, epoch=0, version=0, live=False):
        """Store a lookup answer, unless the cache already holds a newer version of it.

        A registry forgets the version of a topic left with no hosts (it answers version 0)
        once many other topics have emptied since (see RegistryTable.drain_changes),
        so an empty answer at version 0 is taken when the cache's newer entry is empty too (the
        same answer) or no longer fresh (the topic emptied since, and the change was missed, or
        this cache does not follow the feed): refusing it would leave the topic uncached, and its
        stale fallback naming departed hosts, for good. A fresh entry is newer than such an
        answer: a change after it has been applied."""
        with self._lock:
            entry = self._entries.get(topic)
            if entry is not None and epoch and entry[3] == epoch and entry[4] > version:
                if version or hosts or (entry[0] and now < entry[1]):
                    return
                version = entry[4]  # the topic emptied since: keep the version the entry had
            if live and self._unheld:
                seen = self._unheld.pop(topic, None)
                if seen is not None and seen[0] == epoch and seen[1] > version:
                    live = False  # a change came after this answer: fresh for max_age only
            self._store(topic, hosts, now, epoch, version, live)

    def apply_delta(self, delta, now, live=True):
        """Apply a live-feed DELTA; see :class:`Applied`. ``live=False`` (the source is not UP)
        stores the change fresh for ``max_age`` only."""
        with self._lock:
            entry = self._entries.get(delta.topic)
            if entry is None or delta.version <= delta.previous:  # unknown topic, or nonsense
                if entry is None and delta.version > delta.previous:
                    self._remember_unheld(delta.topic, delta.epoch, delta.version)
                return Applied.IGNORED
            if entry[3] != delta.epoch or delta.previous != entry[4]:
                if entry[3] == delta.epoch and delta.version <= entry[4]:
                    return Applied.IGNORED
                self._entries[delta.topic] = (entry[0], _NEVER, entry[2], entry[3], entry[4])
                return Applied.GAP
            self._store(delta.topic, delta.hosts, now, delta.epoch, delta.version, live)
            return Applied.APPLIED

    def apply_snapshot(self, snapshot, now, live=True):
        """Apply a live-feed SNAPSHOT (a topic's whole state, sent on subscription); ``live`` as
        for :meth:`apply_delta`."""
        with self._lock:
            entry = self._entries.get(snapshot.topic)
            if entry is not None and entry[3] == snapshot.epoch and entry[4] > snapshot.version:
                return Applied.IGNORED
            self._store(snapshot.topic, snapshot.hosts, now, snapshot.epoch, snapshot.version, live)
            return Applied.APPLIED

    def demote(self, now, keep_epoch=None):
        """The live feed is lost (or restarted): no entry stays fresh longer than ``max_age``,
        and entries of any epoch but ``keep_epoch`` stop being fresh at all."""
        with self._lock:
            limit = now + self.max_age
            for topic, entry in list(self._entries.items()):
                until = entry[1] if keep_epoch is not None and entry[3] == keep_epoch else _NEVER
                self._entries[topic] = (entry[0], min(until, limit), entry[2], entry[3], entry[4])

    def cap(self, now):
        """Nothing stays fresh longer than ``max_age`` from ``now``: what the live feed kept
        fresh is from now on only as good as a plain answer (the feed stopped, or its registry
        is no longer UP). Unlike :meth:`demote`, nothing becomes stale at once."""
        with self._lock:
            limit = now + self.max_age
            for topic, entry in list(self._entries.items()):
                if entry[1] > limit:
                    self._entries[topic] = (entry[0], limit, entry[2], entry[3], entry[4])

    def load(self, answers, stored_at=_NEVER):
        """Fill the cache with stale answers (a dict of topic -> hosts), e.g. read from disk at
        start; they are never fresh, only a fallback when no registry answers. Only as many as
        there is room for under ``max_entries`` are taken (a file written by a process with a
        larger cache, or edited, must not grow this one past its bound)."""
        with self._lock:
            entries = self._entries
            for topic, hosts in answers.items():
                if len(entries) >= self.max_entries:
                    break
                if topic not in entries:
                    entries[topic] = (tuple(hosts), _NEVER, stored_at, 0, 0)
            self.generation += 1

    def _remember_unheld(self, topic, epoch, version):
        unheld = self._unheld
        unheld.pop(topic, None)
        unheld[topic] = (epoch, version)
        while len(unheld) > self.max_entries:  # bounded like the entries (oldest forgotten first)
            del unheld[next(iter(unheld))]

    def invalidate(self, topic=None):
        """Forget ``topic``, or everything."""
        with self._lock:
            if topic is None:
                self._entries.clear()
            else:
                self._entries.pop(topic, None)
            self.generation += 1

    def make_stale(self, topic):
        """Make ``topic``'s entry stale (the next lookup asks again), keeping its hosts as the
        fallback for when nobody answers."""
        with self._lock:
            entry = self._entries.get(topic)
            if entry is not None:
                self._entries[topic] = (entry[0], _NEVER, entry[2], entry[3], entry[4])
                self.generation += 1

    def stale_host(self, host):
        """Make every entry that names ``host`` stale, so the next lookup asks again."""
        with self._lock:
            for topic, entry in list(self._entries.items()):
                if host in entry[0]:
                    self._entries[topic] = (entry[0], _NEVER, entry[2], entry[3], entry[4])

    def _store(self, topic, hosts, now, epoch, version, live):
        entries = self._entries
        entries.pop(topic, None)  # re-insert at the end: dict order is then storage order
        entries[topic] = (hosts, now + (self.live_max_age if live else self.max_age), now, epoch, version)
        self.generation += 1
        while len(entries) > self.max_entries:
            del entries[next(iter(entries))]
