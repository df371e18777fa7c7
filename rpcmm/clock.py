"""Time as a parameter.

Every TTL, heartbeat, cache age and timeout in rpcmm reads a clock object rather than the
``time`` module, so unit tests move time by hand (:class:`ManualClock`) instead of sleeping.
All times are float seconds on a monotonic scale; only differences are meaningful.
"""

import threading
import time

__all__ = ["Clock", "SystemClock", "ManualClock", "SYSTEM_CLOCK"]


class Clock:
    """What rpcmm needs from a clock: a monotonic reading in float seconds."""

    def monotonic(self):  # pragma: no cover - interface
        raise NotImplementedError


class SystemClock(Clock):
    """The real monotonic clock."""

    monotonic = staticmethod(time.monotonic)


class ManualClock(Clock):
    """A clock that moves only when told to; thread-safe.

    ``advance(s)`` moves it forward; it never goes backwards.
    """

    def __init__(self, start=1000.0):
        self._now = float(start)
        self._lock = threading.Lock()

    def monotonic(self):
        return self._now

    def advance(self, seconds):
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go backwards")
        with self._lock:
            self._now += seconds
        return self._now


SYSTEM_CLOCK = SystemClock()
