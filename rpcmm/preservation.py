"""Self-preservation: refuse to believe a mass expiry, but never for long.

When a registry stops hearing from most of its hosts at once, the likeliest cause is that the
registry was cut off, not that the hosts all died; expiring them would empty the answers of
every client that can still reach it. :class:`ExpiryGuard` decides, at every sweep, whether the
overdue hosts may be expired or whether the registry should hold them and say it is degraded.

Eureka's version of this could get stuck: its threshold came from an expected renewal count
computed once and rarely updated, so after a real mass departure it refused to expire anything
for good. Here nothing is remembered between sweeps except when the hold began:

- the threshold is recomputed at every sweep from the table as it is (``fraction`` of the hosts
  expired or overdue within the last TTL window, or no heartbeat at all from anyone for two
  of the shortest heartbeat intervals and for twice the gap the hosts not overdue leave
  between their heartbeats, all together);
- the state clears by itself as soon as heartbeats return, since overdue hosts then refresh;
- a hold never lasts longer than ``max_hold`` seconds: then the overdue hosts expire anyway
  (loudly), so real deaths are never hidden for more than that.

Pure logic; time is passed in.
"""

import collections
import logging

__all__ = ["ExpiryGuard", "DEFAULT_FRACTION", "DEFAULT_MIN_HOSTS", "DEFAULT_MAX_HOLD"]

LOG = logging.getLogger(__name__)

#: Share of the table that may expire within one TTL window before the registry holds off.
DEFAULT_FRACTION = 0.5
#: Below this many hosts, expiry is never held (a small table's losses are believable).
DEFAULT_MIN_HOSTS = 5
#: Longest hold, in seconds.
DEFAULT_MAX_HOLD = 30.0


class ExpiryGuard:
    """Decides each sweep which overdue hosts expire; see the module docstring.

    Not thread-safe: it belongs to a registry's loop.
    """

    def __init__(self, fraction=DEFAULT_FRACTION, min_hosts=DEFAULT_MIN_HOSTS, max_hold=DEFAULT_MAX_HOLD):
        if not 0 < fraction <= 1:
            raise ValueError("fraction must be in (0, 1]")
        self.fraction = fraction
        self.min_hosts = min_hosts
        self.max_hold = max_hold
        self.holding_since = None
        self._recent = collections.deque()  # (time, count) of recent expiries

    @property
    def degraded(self):
        return self.holding_since is not None

    def sweep(self, table, now):
        """Expire what may be expired from ``table`` at ``now``; return the expired hosts."""
        overdue = table.overdue(now)
        window = max(table.max_ttl(), 1e-9)
        recent = self._recent
        while recent and recent[0][0] < now - window:
            recent.popleft()
        recently_expired = sum(count for _, count in recent)
        if overdue and self._suspicious(table, now, overdue, recently_expired):
            if self.holding_since is None:
                self.holding_since = now
                LOG.warning("%d of %d hosts went silent at once (%d more expired in the last %.1fs): "
                            "holding them and reporting degraded; is this registry cut off?",
                            len(overdue), len(table), recently_expired, window)
            if now - self.holding_since < self.max_hold:
                return []
            LOG.error("held %d silent hosts for %.0fs; expiring them now", len(overdue), now - self.holding_since)
        elif self.holding_since is not None:
            LOG.warning("heartbeats are back; no longer degraded after %.1fs", now - self.holding_since)
        self.holding_since = None
        for host in overdue:
            table.remove(host)
        if overdue:
            recent.append((now, len(overdue)))
        return overdue

    def _suspicious(self, table, now, overdue, recently_expired):
        population = len(table) + recently_expired
        if population < self.min_hosts:
            return False
        if len(overdue) + recently_expired > self.fraction * population:
            return True
        # Nobody at all was heard for two heartbeat intervals, while normally some host speaks
        # every fraction of an interval: it is the registry that is cut off.
        silence = None if table.last_heard is None else now - table.last_heard
        if silence is None or silence <= 2 * table.min_interval():
            return False
        # The shortest interval may be that of a host now overdue (a lone fast host that died
        # among slow ones, whose quiet stretches are then normal): the silence must also be
        # long for the hosts still expected to speak, all of them together (a thousand slow
        # hosts speak often between them; five do not).
        rate = table.heartbeat_rate_excluding(set(overdue))
        return rate > 0 and silence > 2 / rate
