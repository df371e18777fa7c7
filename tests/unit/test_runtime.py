"""The runtime seam's pieces that run without eventlet installed or patched."""

import logging
import threading

from rpcmm.runtime import _NativeLogRelay


class _NoEventlet:
    """The relay only uses eventlet to spawn its pump, which these tests never start."""


def test_rpcmm_loggers_check_their_level_without_loggings_lock_once_relayed():
    # Under eventlet logging's module lock is green: a native thread must not need it to ask
    # whether a level is enabled (any setLevel in the process clears the cache that spares it).
    logger = logging.getLogger("rpcmm.test-relay")
    relay = _NativeLogRelay(_NoEventlet(), threading)
    relay.attach()
    patched = [lg for lg in logging.Logger.manager.loggerDict.values() if relay in getattr(lg, "filters", ())]
    try:
        logger.setLevel(logging.WARNING)  # clears every logger's level cache
        answers = []
        with logging._lock:  # someone else holds it (a green thread, under eventlet)
            asking = threading.Thread(target=lambda: answers.append(
                (logger.isEnabledFor(logging.INFO), logger.isEnabledFor(logging.ERROR))))
            asking.start()
            asking.join(2)
            answered_while_held = not asking.is_alive()
        asking.join(2)
        assert answered_while_held, "the level check waited for logging's lock"
        assert answers == [(False, True)]
    finally:
        for each in patched:  # every rpcmm logger attach() touched, not only this one
            each.removeFilter(relay)
            del each.isEnabledFor
        logger.setLevel(logging.NOTSET)
