"""Heartbeat timing: what a host declares and what a registry accepts.

A registering host declares its heartbeat ``interval`` and ``ttl`` (how long the registry keeps
it after the last heartbeat). A registry clamps both into its :class:`TimingBounds`, so a
misconfigured or hostile host can neither flood it nor pin itself in the table for ever.
"""

import dataclasses

from rpcmm.errors import ConfigurationError

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_TTL",
    "DEFAULT_SWEEP_INTERVAL",
    "HeartbeatTiming",
    "TimingBounds",
]

#: Seconds between two heartbeats of a host.
DEFAULT_INTERVAL = 1.0
#: Seconds a registry keeps a host after its last heartbeat: three missed heartbeats.
DEFAULT_TTL = 3.0
#: Seconds between two expiry sweeps of a registry.
DEFAULT_SWEEP_INTERVAL = 0.25


@dataclasses.dataclass(frozen=True, slots=True)
class HeartbeatTiming:
    """A host's declared heartbeat interval and TTL, in seconds; ``ttl`` must exceed ``interval``."""

    interval: float = DEFAULT_INTERVAL
    ttl: float = DEFAULT_TTL

    def __post_init__(self):
        for name in ("interval", "ttl"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ConfigurationError(f"heartbeat {name} must be a positive number of seconds, got {value!r}")
        if self.ttl <= self.interval:
            raise ConfigurationError(
                f"heartbeat ttl ({self.ttl:g}s) must be longer than the interval ({self.interval:g}s),"
                " or the host would expire between two heartbeats"
            )


@dataclasses.dataclass(frozen=True, slots=True)
class TimingBounds:
    """What a registry accepts from hosts.

    A declared interval is clamped to [min_interval, max_interval] and a TTL to
    [min_ttl, max_ttl]; the TTL is then raised to at least ``min_ttl_intervals`` times the
    interval so one late heartbeat never expires a host.
    """

    min_interval: float = 0.05
    max_interval: float = 60.0
    min_ttl: float = 0.2
    max_ttl: float = 600.0
    min_ttl_intervals: float = 1.5

    def __post_init__(self):
        if not 0 < self.min_interval <= self.max_interval:
            raise ConfigurationError("timing bounds need 0 < min_interval <= max_interval")
        if not 0 < self.min_ttl <= self.max_ttl:
            raise ConfigurationError("timing bounds need 0 < min_ttl <= max_ttl")
        if self.min_ttl_intervals < 1:
            raise ConfigurationError("min_ttl_intervals must be at least 1")

    def enforce(self, interval, ttl):
        """Return the (interval, ttl) the registry applies to a host that declared these."""
        interval = min(max(interval, self.min_interval), self.max_interval)
        ttl = min(max(ttl, self.min_ttl, interval * self.min_ttl_intervals), self.max_ttl)
        return interval, ttl
