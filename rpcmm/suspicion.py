"""Failures seen by clients: suspect a host on one report, drop it on confirmation.

A client that cannot reach a host it was given reports it (SUSPECT). One report only makes the
host *suspected*: a misbehaving or partitioned client must not be able to evict a healthy host
on its own. The registry drops a suspected host early, before its TTL, when

- a second, different reporter reports it too, or
- the host misses a heartbeat after the first report (nothing heard for 1.5 of its intervals).

A heartbeat from the host after the report clears the suspicion. Memory is bounded: at most
``max_suspects`` hosts and ``max_reporters`` reporters each are remembered.

Pure logic; time is passed in.
"""

__all__ = ["SuspicionBoard"]

#: How many heartbeat intervals of silence, after a report, confirm it.
_MISSED = 1.5


class SuspicionBoard:
    """Reports against hosts, and the decision to drop them; see the module docstring."""

    def __init__(self, max_suspects=10_000, max_reporters=8):
        self.max_suspects = max_suspects
        self.max_reporters = max_reporters
        self._suspects = {}  # host -> (first report time, set of reporter ids)

    def __len__(self):
        return len(self._suspects)

    def report(self, host, reporter, now):
        """Record that ``reporter`` (an opaque id) could not reach ``host``; return True if the
        host should be dropped now (a second reporter confirmed)."""
        entry = self._suspects.get(host)
        if entry is None:
            if len(self._suspects) >= self.max_suspects:
                return False  # bounded: a flood of reports about unknown hosts is ignored
            self._suspects[host] = (now, {reporter})
            return False
        reporters = entry[1]
        if reporter not in reporters and len(reporters) < self.max_reporters:
            reporters.add(reporter)
        return len(reporters) >= 2

    def heard_from(self, host, now):
        """The host heartbeated: whatever clients said before, the registry hears it."""
        if self._suspects:
            entry = self._suspects.get(host)
            if entry is not None and entry[0] < now:
                del self._suspects[host]

    def forget(self, host):
        self._suspects.pop(host, None)

    def confirmed(self, table, now):
        """Suspected hosts that missed a heartbeat since their first report (or left the table)."""
        drop = []
        for host, (reported_at, _) in list(self._suspects.items()):
            silent = table.silent_for(host, now)
            if silent is None:
                del self._suspects[host]
                continue
            interval = table.interval_of(host)
            if now - reported_at >= _MISSED * interval and silent >= _MISSED * interval:
                drop.append(host)
                del self._suspects[host]
        return drop
