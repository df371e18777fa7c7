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

