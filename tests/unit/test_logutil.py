import logging

from rpcmm.logutil import RateLimitedLogger


def test_bursts_are_logged_then_summarised(caplog, clock):
    logger = RateLimitedLogger(logging.getLogger("t"), burst=3, period=1.0, clock=clock.monotonic)
    with caplog.at_level(logging.WARNING):
        for i in range(10):
            logger.log("bad %d", i)
        clock.advance(1.0)
        logger.log("later")
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:3] == ["bad 0", "bad 1", "bad 2"]
    assert "7 more like this" in messages[3]
    assert messages[4] == "later"


def test_rpcmm_loggers_check_their_level_without_loggings_lock_once_relayed():
    # Under eventlet logging's module lock is green: a native thread must not need it to ask
    # whether a level is enabled (a setLevel anywhere clears the cache that spares it).
    import logging
    import threading

    from rpcmm.runtime import _NativeLogRelay

    class NoEventlet:
        pass

    logger = logging.getLogger("rpcmm.test-relay")
    relay = _NativeLogRelay(NoEventlet(), threading)
    relay.attach()
    try:
        logger.setLevel(logging.WARNING)  # clears every logger's level cache
        answers = []
        logging._acquireLock()  # someone else holds it (a green thread, under eventlet)
        try:
            asking = threading.Thread(target=lambda: answers.append(
                (logger.isEnabledFor(logging.INFO), logger.isEnabledFor(logging.ERROR))))
            asking.start()
            asking.join(2)
            answered_while_held = not asking.is_alive()
        finally:
            logging._releaseLock()
        asking.join(2)
        assert answered_while_held, "the level check waited for logging's lock"
        assert answers == [(False, True)]
    finally:
        logger.removeFilter(relay)
        del logger.isEnabledFor
        logger.setLevel(logging.NOTSET)
