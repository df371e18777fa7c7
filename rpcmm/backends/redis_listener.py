"""Listens on Redis pub/sub channels in the background and reports what changed.

A :class:`ChangeListener` owns one pub/sub connection and one background task. It calls
``handlers[channel](data)`` for each message and ``on_reset()`` whenever it may have missed
messages: when the subscription is (re)established and when the connection is lost. :attr:`subscribed`
tells whether messages are being received right now; a cache may trust its entries only then.

After a lost connection it subscribes again every ``retry_interval`` seconds, through the same
client, so a Sentinel-managed client follows a failover to the new master.
"""

import logging

from rpcmm.heart import Heart
from rpcmm.logutil import RateLimitedLogger

__all__ = ["ChangeListener"]

LOG = logging.getLogger(__name__)


class ChangeListener:
    """Background subscriber to the channels of ``handlers`` through the redis-py ``client``,
    which should not retry (so a lost connection ends the session instead of being hidden).

    Lifecycle: nothing runs until :meth:`start`; :meth:`stop` returns within about
    ``poll_interval`` seconds, closes the connection and joins the task. The callbacks run in
    the listener's task and must not block; an exception they raise is logged.
    """

    def __init__(self, client, handlers, on_reset, runtime,
                 poll_interval=0.1, retry_interval=0.5, name="rpcmm-redis-listener"):
        self._client = client
        self._handlers = dict(handlers)
        self._on_reset = on_reset
        self._runtime = runtime
        self._poll_interval = poll_interval
        self._retry_interval = retry_interval
        self._name = name
        self._stopping = runtime.event()
        self._subscribed = runtime.event()
        self._heart = None
        self._warnings = RateLimitedLogger(LOG, period=10.0)  # one task logs: no flood while Redis is down

    @property
    def subscribed(self):
        """True while the subscription is confirmed and the connection has not failed since."""
        return self._subscribed.is_set()

    def wait_subscribed(self, timeout):
        """Block until subscribed or ``timeout`` seconds pass; return whether subscribed."""
        return self._subscribed.wait(timeout)

    def start(self):
        if self._heart is not None:
            raise RuntimeError("a ChangeListener starts once")
        # A Heart calls _session again retry_interval after each one ends (a lost connection).
        self._heart = Heart(self._session, self._retry_interval, self._runtime, name=self._name)
        self._heart.start()

    def stop(self, timeout=5.0):
        self._stopping.set()
        if self._heart is not None:
            self._heart.stop(timeout)

    def _session(self):
        """Subscribe and dispatch messages until stopped or the connection fails."""
        from redis.exceptions import RedisError

        if self._stopping.is_set():
            return
        pubsub = self._client.pubsub()
        try:
            pubsub.subscribe(*self._handlers)
            self._receive(pubsub)
        except RedisError as exc:
            self._warnings.log("lost the Redis change channel (%s); retrying every %gs",
                               exc, self._retry_interval)
        finally:
            if self._subscribed.is_set():
                self._subscribed.clear()
                self._notify(self._on_reset)
            pubsub.close()

    def _receive(self, pubsub):
        pending = set(self._handlers)
        while not self._stopping.is_set():
            message = pubsub.get_message(timeout=self._poll_interval)
            if message is None:
                continue
            if message["type"] == "subscribe":
                # Each confirmation completing the set, first or after a reconnection the client
                # made by itself, may follow missed messages: start from a clean slate.
                pending.discard(message["channel"])
                if not pending:
                    self._notify(self._on_reset)
                    self._subscribed.set()
            elif message["type"] == "message":
                self._notify(self._handlers[message["channel"]], message["data"])

    def _notify(self, callback, *args):
        try:
            callback(*args)
        except Exception:
            LOG.exception("a Redis change callback failed")
