"""A background beat: call a function every interval until stopped.

The wait is on an event, not a sleep, so :meth:`Heart.stop` returns at once instead of after
the rest of an interval, and a beat that raises is logged without stopping the heart. Each
wait is the interval shortened by a random up to ``jitter`` of it: hosts started together
drift apart instead of heartbeating in lockstep, and a wait never exceeds the declared interval.
"""

import logging
import random

__all__ = ["Heart"]

LOG = logging.getLogger(__name__)


class Heart:
    """Calls ``beat()`` now and then every ``interval`` seconds in a background task.

    Lifecycle: nothing runs until :meth:`start`; :meth:`stop` wakes the task, waits for the
    beat in progress (if any) and joins. Neither may be called from inside ``beat``.
    """

    def __init__(self, beat, interval, runtime, name="rpcmm-heart", jitter=0.2, rng=random.random):
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        self._beat = beat
        self._interval = interval
        self._jitter = jitter
        self._rng = rng
        self._runtime = runtime
        self._name = name
        self._stopping = runtime.event()
        self._task = None

    def start(self):
        if self._task is not None:
            raise RuntimeError("a Heart starts once")
        self._task = self._runtime.spawn(self._run, self._name)

    def stop(self, timeout=5.0):
        self._stopping.set()
        if self._task is not None:
            self._task.join(timeout)
            if self._task.is_alive():
                LOG.warning("%s did not stop within %gs", self._name, timeout)

    def _run(self):
        while True:
            try:
                self._beat()
            except Exception:
                LOG.exception("heartbeat failed; trying again in %gs", self._interval)
            if self._stopping.wait(self._interval * (1 - self._jitter * self._rng())):
                return
