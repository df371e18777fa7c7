"""The registry's table of live hosts: pure logic, no sockets, no threads, time passed in.

The table maps each host to the topics it serves and the deadline after which it is forgotten,
and keeps an index from topic to hosts so a lookup costs one dict access. A heartbeat carries
the host's full topic set and replaces what the table held, so the table converges to what the
hosts say after one heartbeat interval, whatever it held before.

Every change to a topic's hosts takes the next number of the table's sequence as the topic's
*version*; :meth:`RegistryTable.drain_changes` lists the topics changed since the last call
(coalesced: one entry per topic, with the version it had before), which is what the live feed
publishes.

Not thread-safe: a registry server owns one table and touches it from its one loop.
"""

import bisect
import enum
import logging
import math

from rpcmm.protocol import TableRow
from rpcmm.timing import TimingBounds

__all__ = ["RegistryTable", "Change", "UNOWNED"]

LOG = logging.getLogger(__name__)


#: Bytes a table row takes on the wire besides its names: array headers, three floats.
_ROW_OVERHEAD = 40


def _utf8_length(name):
    # Names are mostly ASCII: then the length in characters is the length in bytes.
    return len(name) if name.isascii() else len(name.encode())


#: Emptied topics whose last version a table keeps (see RegistryTable.drain_changes).
_EMPTIED_KEPT = 65_536


class Change(enum.Enum):
    """What a heartbeat did to the table."""

    JOINED = "joined"  # the host was not in the table
    CHANGED = "changed"  # the host's topics changed
    REFRESHED = "refreshed"  # same topics, new deadline
    #: The table is full: the host is new, or its new topics would add registrations, beyond
    #: ``max_registrations``. A new host is not added; a host already in the table keeps, with
    #: a new deadline, those of its old topics it still declares, and leaves the ones it
    #: dropped (it is alive, and serves the former only; with none left it is removed). Its
    #: new topics wait for room.
    REFUSED = "refused"
    #: The host is new and the key registering it already has its quota of hosts in the
    #: table (``quota`` in :meth:`RegistryTable.heartbeat`): nothing changed.
    OVER_QUOTA = "over quota"
    #: The heartbeat had no topics and the host was in the table: it is gone.
    LEFT = "left"


#: The owner of a host no key is charged for (loaded from a peer, or no quotas in force).
UNOWNED = object()
#: Joins and departures applied to the kept sorted host names one by one (an insert or delete
#: that moves up to n pointers) before the names are dropped, to be sorted afresh by the next
#: listing (n log n): a host coming or going between two pages costs microseconds, and a mass
#: join at most this many inserts and one sort.
_SORTED_EDITS = 256


class _Entry:
    # ``declared`` is the (interval, ttl) the host sent, ``interval``/``ttl`` what the bounds
    # made of them: a heartbeat is compared with the former, so a host declaring out-of-bounds
    # timing is not clamped again at every heartbeat.
    __slots__ = ("topics", "declared", "interval", "ttl", "last_seen", "deadline", "owner")

    def __init__(self, topics, declared, interval, ttl, now, owner):
        self.owner = owner  # the key the host counts against (UNOWNED: none)
        self.topics = topics
        self.declared = declared
        self.interval = interval
        self.ttl = ttl
        self.last_seen = now
        self.deadline = now + ttl


class RegistryTable:
    """Hosts, their topics and their deadlines.

    ``bounds`` (a :class:`~rpcmm.timing.TimingBounds`) clamps each host's declared interval and
    TTL. ``max_registrations`` (None: no limit) caps the (topic, host) pairs held, which is
    what the table's memory grows with: a heartbeat that would go beyond it is refused
    (:attr:`Change.REFUSED`), while hosts already held keep refreshing. Every method takes
    ``now``, a monotonic time in seconds, instead of reading a clock.
    """

    def __init__(self, bounds=None, max_registrations=None):
        if max_registrations is not None and max_registrations < 1:
            raise ValueError("max_registrations must be at least 1 (or None: no limit)")
        self.bounds = bounds if bounds is not None else TimingBounds()
        self.max_registrations = max_registrations
        self._registrations = 0  # (topic, host) pairs held, kept by _index
        self._sorted = None  # every host name, sorted, kept for page() (None: sort when asked)
        self._sorted_edits = 0  # joins and departures applied to _sorted since it was sorted
        self._owned = {}  # owner -> how many hosts it has in the table (see heartbeat's quota)
        self._hosts = {}  # host -> _Entry
        self._by_topic = {}  # topic -> {host: None}, insertion-ordered
        self._answers = {}  # topic -> tuple of hosts, rebuilt lazily after a change
        self._versions = {}  # topic -> sequence number of its last change
        # topic -> the last version of a topic left with no hosts, the most recent _EMPTIED_KEPT:
        # when it gets hosts again, its DELTA follows that version, and a client that applied
        # the emptying one applies it in turn instead of seeing a gap and looking it up (every
        # follower of a singleton service's topic, at each of its restarts).
        self._emptied = {}
        self._changed = {}  # topic -> its version before the first change since drain_changes()
        #: The sequence number of the last change to any topic.
        self.seq = 0
        #: When the table last heard any heartbeat (None: never).
        self.last_heard = None
        self._timing = None  # (max ttl, min interval) of all hosts, until a host's timing changes
        self._earliest = 0.0  # no deadline is earlier than this (a lower bound; see overdue())

    def __len__(self):
        return len(self._hosts)

    def __contains__(self, host):
        return host in self._hosts

    @property
    def registration_count(self):
        """How many (topic, host) registrations the table holds."""
        return self._registrations

    def heartbeat(self, host, topics, interval, ttl, now, owner=UNOWNED, quota=None):
        """Record that ``host`` serves exactly ``topics`` (a tuple) as of ``now``; return a Change.

        An empty ``topics`` removes the host, the same as :meth:`remove`: Change.LEFT, or None
        if it was not there.
        Beyond ``max_registrations`` the heartbeat is refused: see :attr:`Change.REFUSED`.
        A host that joins counts against ``owner`` (a key) until it leaves; if ``owner``
        already has ``quota`` hosts (None: no limit) it is refused (:attr:`Change.OVER_QUOTA`).
        """
        self.last_heard = now
        entry = self._hosts.get(host)
        if owner is not UNOWNED and entry is not None and entry.owner is UNOWNED:
            # Loaded from a peer at warm-up (or held before quotas applied): the first key
            # that refreshes it takes it on, else a restart would reset every key's count.
            entry.owner = owner
            self._owned[owner] = self._owned.get(owner, 0) + 1
        if entry is not None and entry.topics == topics:
            # The hot path: one comparison and a deadline. Timing may change without a new set.
            if entry.declared != (interval, ttl):
                entry.declared = (interval, ttl)
                entry.interval, entry.ttl = self.bounds.enforce(interval, ttl)
                self._timing = None
                self._earliest = min(self._earliest, now + entry.ttl)
            entry.last_seen = now
            entry.deadline = now + entry.ttl
            return Change.REFRESHED
        if not topics:
            return Change.LEFT if self.remove(host) else None
        if entry is None and quota is not None and self._owned.get(owner, 0) >= quota:
            return Change.OVER_QUOTA
        if self.max_registrations is not None and self._would_overflow(entry, topics):
            if entry is not None and self._keep_what_remains(host, entry, topics):
                entry.last_seen, entry.deadline = now, now + entry.ttl
            return Change.REFUSED
        declared = (interval, ttl)
        interval, ttl = self.bounds.enforce(interval, ttl)
        self._timing = None
        self._earliest = min(self._earliest, now + ttl)
        if entry is None:
            self._hosts[host] = _Entry(topics, declared, interval, ttl, now, owner)
            if owner is not UNOWNED:
                self._owned[owner] = self._owned.get(owner, 0) + 1
            self._sorted_edit(host, joined=True)
            self._index(host, (), topics)
            return Change.JOINED
        old = entry.topics
        entry.topics, entry.declared, entry.interval, entry.ttl = topics, declared, interval, ttl
        entry.last_seen, entry.deadline = now, now + ttl
        self._index(host, old, topics)
        return Change.CHANGED

    def _keep_what_remains(self, host, entry, topics):
        """A refused change still takes the host off the topics it dropped: lookups must not
        go on naming it for them. The topics it added wait for room. False if nothing is left
        (it dropped every topic it had): the host is removed, and joins once there is room."""
        declared = set(topics)
        kept = tuple(topic for topic in entry.topics if topic in declared)
        if not kept:
            self.remove(host)
            return False
        if kept != entry.topics:
            old, entry.topics = entry.topics, kept
            self._index(host, old, kept)
        return True

    def hosts_owned_by(self, owner):
        """How many hosts in the table count against ``owner``."""
        return self._owned.get(owner, 0)

    def _would_overflow(self, entry, topics):
        added = len(set(topics)) - (0 if entry is None else len(set(entry.topics)))
        return added > 0 and self._registrations + added > self.max_registrations

    def remove(self, host):
        """Forget ``host``; return True if it was in the table."""
        entry = self._hosts.pop(host, None)
        if entry is None:
            return False
        if entry.owner is not UNOWNED:
            left = self._owned[entry.owner] - 1
            if left:
                self._owned[entry.owner] = left
            else:
                del self._owned[entry.owner]  # keys that come and go leave nothing behind
        self._timing = None
        self._sorted_edit(host, joined=False)
        self._index(host, entry.topics, ())
        return True

    def expire(self, now):
        """Forget every host whose deadline has passed; return their names."""
        expired = self.overdue(now)
        for host in expired:
            self.remove(host)
        return expired

    def overdue(self, now):
        """The hosts whose deadline has passed, without forgetting them.

        Sweeps ask several times a second, and a scan of 100k hosts costs milliseconds, so a
        scan also records the earliest deadline: until then nobody can be overdue. Heartbeats only
        push a deadline later; whatever could bring one earlier (a join, a topic change, a shorter
        TTL) lowers the bound.
        """
        if now < self._earliest:
            return []
        overdue, earliest = [], math.inf
        for host, entry in self._hosts.items():
            deadline = entry.deadline
            if deadline <= now:
                overdue.append(host)
            if deadline < earliest:
                earliest = deadline
        self._earliest = earliest
        return overdue

    def silent_for(self, host, now):
        """Seconds since ``host``'s last heartbeat, or None if it is not in the table."""
        entry = self._hosts.get(host)
        return None if entry is None else now - entry.last_seen

    def interval_of(self, host):
        """The heartbeat interval ``host`` keeps (None if unknown): the one it declared, or the
        one the bounds make it if that is longer. A host may declare one longer than the bounds
        allow (its TTL is what the registry shortens); it still heartbeats only that often."""
        entry = self._hosts.get(host)
        return None if entry is None else max(entry.interval, entry.declared[0])

    def max_ttl(self):
        """The longest TTL of any host (0.0 for an empty table)."""
        return self._timing_extremes()[0]

    def min_interval(self):
        """The shortest heartbeat interval of any host (0.0 for an empty table)."""
        return self._timing_extremes()[1]

    def heartbeat_rate_excluding(self, hosts):
        """Heartbeats a second the hosts not in ``hosts`` (a set) send between them (the sum
        of 1/interval). A scan: for the rare sweep that needs it, not for every one."""
        return sum(1.0 / e.interval for h, e in self._hosts.items() if h not in hosts)

    def _timing_extremes(self):
        """(max ttl, min interval), scanned once and kept until a host joins, leaves or changes
        its timing: every sweep asks, and a scan of 100k hosts costs milliseconds."""
        if self._timing is None:
            entries = self._hosts.values()
            self._timing = (max((e.ttl for e in entries), default=0.0),
                            min((e.interval for e in entries), default=0.0))
        return self._timing

    def version(self, topic):
        """The sequence number of ``topic``'s last change (0 if it never had hosts, or lost them
        long enough ago: see drain_changes)."""
        return self._versions.get(topic) or self._emptied.get(topic, 0)

    def drain_changes(self):
        """The topics changed since the last call: a list of ``(topic, previous, version)``."""
        changed, self._changed = self._changed, {}
        versions = self._versions
        changes = [(topic, previous, versions[topic]) for topic, previous in changed.items()]
        # A topic left with no hosts moves its version to _emptied, of bounded size (then it
        # reads 0 again), so topics that come and go cannot grow the table without bound.
        # Versions are drawn from one sequence, so a topic that comes back still gets a version
        # above any it had.
        emptied = self._emptied
        for topic, _, _ in changes:
            if topic not in self._by_topic:
                emptied[topic] = versions.pop(topic)
                if len(emptied) > _EMPTIED_KEPT:
                    del emptied[next(iter(emptied))]  # the longest emptied
        return changes

    def hosts_for(self, topic):
        """The hosts serving ``topic``, in registration order, as a tuple (cached until a change)."""
        answer = self._answers.get(topic)
        if answer is None:
            answer = tuple(self._by_topic.get(topic, ()))
            if topic in self._by_topic:
                self._answers[topic] = answer
        return answer

    def load(self, rows, now):
        """Take a peer's table (TableRows), each host as if its last heartbeat was ``age`` ago.

        Hosts already in the table are kept as they are: what they said here is newer; so are
        hosts beyond ``max_registrations``. Returns how many hosts were added.
        """
        heard, added = self.last_heard, 0
        for row in rows:
            if row.host not in self._hosts and row.age < row.ttl:
                if self.heartbeat(row.host, row.topics, row.interval, row.ttl, now - row.age) is Change.JOINED:
                    added += 1
        self.last_heard = heard
        return added

    def rows(self, now):
        """Every host as a :class:`~rpcmm.protocol.TableRow`, sorted by host name."""
        return tuple(self._row(host, now) for host in self._sorted_hosts())

    def page(self, after, now, max_bytes):
        """The rows of the hosts whose names sort after ``after`` ('' from the first), in name
        order, as many as fit in ``max_bytes`` as encoded (at least one); returns
        ``(rows, next_after)``, ``next_after`` being '' when no host is left after them.

        A registry lists its table this way, one message per page, however large the table.
        The sorted names are kept between calls and joins and departures are applied to them
        (up to _SORTED_EDITS, then they are sorted afresh), so listing 100k hosts page by page
        sorts them once, not once a page, even while hosts come and go. A host that joins or
        leaves between two pages is listed or not depending on where its name sorts: each
        host is listed at most once.
        """
        order = self._sorted_hosts()
        end = bisect.bisect_right(order, after) if after else 0
        rows, used = [], 0
        while end < len(order):
            row = self._row(order[end], now)
            size = _ROW_OVERHEAD + _utf8_length(row.host) + sum(_utf8_length(t) + 3 for t in row.topics)
            if rows and used + size > max_bytes:
                break
            rows.append(row)
            used += size
            end += 1
        return tuple(rows), (rows[-1].host if end < len(order) else "")

    def _sorted_hosts(self):
        if self._sorted is None:
            self._sorted, self._sorted_edits = sorted(self._hosts), 0
        return self._sorted

    def _sorted_edit(self, host, joined):
        order = self._sorted
        if order is None:
            return
        if self._sorted_edits >= _SORTED_EDITS:
            self._sorted = None
            return
        self._sorted_edits += 1
        if joined:
            bisect.insort(order, host)
        else:
            del order[bisect.bisect_left(order, host)]

    def _row(self, host, now):
        e = self._hosts[host]
        return TableRow(host, max(0.0, now - e.last_seen), e.interval, e.ttl, tuple(sorted(e.topics)))

    def topics(self):
        """Every topic with at least one host."""
        return tuple(self._by_topic)

    def _index(self, host, old, new):
        old_set, new_set = set(old), set(new)
        self._registrations += len(new_set) - len(old_set)
        for topic in old_set - new_set:
            hosts = self._by_topic[topic]
            del hosts[host]
            if not hosts:
                del self._by_topic[topic]
            self._touch(topic)
        for topic in new_set - old_set:
            self._by_topic.setdefault(topic, {})[host] = None
            self._touch(topic)

    def _touch(self, topic):
        self._answers.pop(topic, None)
        versions = self._versions
        previous = versions.get(topic)
        if previous is None:
            previous = self._emptied.pop(topic, 0)
        if topic not in self._changed:
            self._changed[topic] = previous
        self.seq += 1
        versions[topic] = self.seq
