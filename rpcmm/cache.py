"""The client's lookup cache: recent answers, their age, and stale answers as a fallback.

A fresh entry (younger than ``max_age``) answers a lookup without asking a registry; an
older one is refetched, and served anyway (stale) if no registry answers. The cache holds at
most ``max_entries`` topics, dropping the least recently stored first.

Pure logic: time is passed in. Thread-safe for concurrent ``get``/``put`` under CPython (each
is a few atomic dict operations; a lost race only costs a redundant fetch).
"""

__all__ = ["LookupCache", "DEFAULT_CACHE_MAX_AGE", "DEFAULT_CACHE_MAX_ENTRIES"]

#: Seconds a cached answer is served without asking a registry again.
DEFAULT_CACHE_MAX_AGE = 1.0
#: Topics kept at most.
DEFAULT_CACHE_MAX_ENTRIES = 65536


class LookupCache:
    """topic -> (hosts, stored_at); see the module docstring."""

    def __init__(self, max_age=DEFAULT_CACHE_MAX_AGE, max_entries=DEFAULT_CACHE_MAX_ENTRIES):
        if max_age < 0:
            raise ValueError("cache max_age must be >= 0")
        if max_entries < 1:
            raise ValueError("cache max_entries must be >= 1")
        self.max_age = max_age
        self.max_entries = max_entries
        self._entries = {}  # topic -> (hosts, stored_at); dict order is storage order

    def __len__(self):
        return len(self._entries)

    def fresh(self, topic, now):
        """The cached hosts if younger than max_age, else None."""
        entry = self._entries.get(topic)
        if entry is not None and now - entry[1] < self.max_age:
            return entry[0]
        return None

    def stale(self, topic):
        """The cached hosts whatever their age, or None; for when no registry answers."""
        entry = self._entries.get(topic)
        return None if entry is None else entry[0]

    def age(self, topic, now):
        """Seconds since ``topic`` was stored, or None."""
        entry = self._entries.get(topic)
        return None if entry is None else now - entry[1]

    def put(self, topic, hosts, now):
        """Store ``hosts`` (a tuple) for ``topic`` as of ``now``."""
        entries = self._entries
        entries.pop(topic, None)  # re-insert at the end: dict order is then storage order
        entries[topic] = (hosts, now)
        while len(entries) > self.max_entries:
            try:
                del entries[next(iter(entries))]
            except (StopIteration, KeyError, RuntimeError):  # raced with another put
                break

    def invalidate(self, topic=None):
        """Forget ``topic``, or everything."""
        if topic is None:
            self._entries.clear()
        else:
            self._entries.pop(topic, None)
