"""Logging helpers: bounded logging for things a hostile peer can trigger at will."""

import logging
import time

__all__ = ["RateLimitedLogger"]


class RateLimitedLogger:
    """Logs at most ``burst`` records per ``period`` seconds, then one summary of what it held back.

    A flood of malformed messages must not turn into a flood of log lines (disk, CPU), but the
    operator must still learn that it happened and how much. Not thread-safe; one per loop.
    """

    def __init__(self, logger, level=logging.WARNING, burst=10, period=1.0, clock=time.monotonic):
        self._logger = logger
        self._level = level
        self._burst = burst
        self._period = period
        self._clock = clock
        self._window_start = float("-inf")
        self._in_window = 0
        self._suppressed = 0

    def log(self, msg, *args):
        now = self._clock()
        if now - self._window_start >= self._period:
            if self._suppressed:
                self._logger.log(self._level, "... %d more like this in the last %.1fs were not logged",
                                 self._suppressed, now - self._window_start)
            self._window_start, self._in_window, self._suppressed = now, 0, 0
        if self._in_window < self._burst:
            self._in_window += 1
            self._logger.log(self._level, msg, *args)
        else:
            self._suppressed += 1
