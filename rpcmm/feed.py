"""The client side of a registry's live feed: deltas into the cache as they happen.

A :class:`LiveFeed` subscribes, on the registry the client's lookups go to, to every topic the
client has looked up, and applies what arrives to the :class:`~rpcmm.cache.LookupCache`:

- a DELTA on top of the cached version replaces the entry at once (milliseconds after the
  change, not at the next cache expiry); any other DELTA reveals a gap and makes the entry stale
  so the next lookup reloads it;
- a SNAPSHOT (the registry sends one to each new subscription) sets the entry, which closes the
  race between a lookup's answer and the subscription that follows it;
- a TICK proves the feed alive; a new epoch (the registry restarted) makes every entry of the
  old epoch stale; three missed ticks make the feed dead, and every entry falls back to the
  plain cache age so lookups go back to asking registries.

The feed also writes the cache to disk now and then when ``cache_file`` is set (see
:mod:`rpcmm.cachefile`).

Lifecycle: :meth:`start` spawns one task that owns the SUB socket; :meth:`follow` may be called
from any thread (it only queues a command); :meth:`stop` wakes the task and joins it.
"""

import logging
import queue

from rpcmm import protocol
from rpcmm.addressing import Endpoint
from rpcmm.cache import Applied
from rpcmm.cachefile import save_cache
from rpcmm.errors import ProtocolError
from rpcmm.server import DEFAULT_TICK_INTERVAL

__all__ = ["LiveFeed"]

LOG = logging.getLogger(__name__)

#: Ticks missed before the feed counts as dead.
_MISSED_TICKS = 3
#: Seconds between attempts to reconnect a dead feed.
_RETRY = 1.0


class LiveFeed:
    """Keeps ``cache`` current from the feed of the registry ``client`` talks to.

    ``live_epoch`` is the epoch of the registry whose ticks are arriving (None while the feed is
    not live); a lookup answer of that epoch may be cached for the cache's ``live_max_age``.
    """

    def __init__(self, cache, client, context, runtime, clock, cache_file=None, save_interval=5.0):
        self.cache = cache
        self.client = client
        self.runtime = runtime
        self.clock = clock
        # Until a tick says how often the registry ticks, assume the default.
        self.tick_timeout = _MISSED_TICKS * DEFAULT_TICK_INTERVAL
        self.cache_file = cache_file
        self.save_interval = save_interval
        self.live_epoch = None
        self.stats = {"deltas": 0, "snapshots": 0, "gaps": 0, "ticks": 0, "switches": 0}
        self._context = context
        self._commands = queue.SimpleQueue()
        self._wake_lock = runtime.lock()
        self._wake_send = None
        self._task = None

    def start(self):
        zmq = self.runtime.zmq
        address = f"inproc://rpcmm-feed-wake-{id(self):x}"
        wake_recv = self._context.socket(zmq.PAIR)
        wake_recv.setsockopt(zmq.LINGER, 0)
        wake_recv.bind(address)
        self._wake_send = self._context.socket(zmq.PAIR)
        self._wake_send.setsockopt(zmq.LINGER, 0)
        self._wake_send.connect(address)
        self._task = self.runtime.spawn(lambda: self._run(wake_recv), name=f"rpcmm-feed-{id(self):x}")
        return self

    def stop(self, timeout=5.0):
        if self._task is None:
            return
        self._command(("stop",))
        self._task.join(timeout)
        self._task = None
        self._wake_send.close()

    def follow(self, endpoint, topic):
        """Keep ``topic`` current, from ``endpoint``'s feed (switching registries if needed)."""
        self._command(("follow", endpoint, topic))

    def _command(self, command):
        self._commands.put(command)
        with self._wake_lock:
            try:
                self._wake_send.send(b"", self.runtime.zmq.NOBLOCK)
            except self.runtime.zmq.Again:  # already awake with a full pipe
                pass

    # -- the task (owns the SUB socket) ---------------------------------------------------------

    def _run(self, wake):
        zmq = self.runtime.zmq
        self._sub = None
        self._source = None  # the Endpoint whose feed we are on
        self._topics = set()
        self._last_tick = None
        self._retry_at = None
        saved_generation, next_save = self.cache.generation, self.clock.monotonic() + self.save_interval
        try:
            while True:
                poller = zmq.Poller()
                poller.register(wake, zmq.POLLIN)
                if self._sub is not None:
                    poller.register(self._sub, zmq.POLLIN)
                ready = dict(poller.poll(min(self.tick_timeout / _MISSED_TICKS, 0.25) * 1000))
                if wake in ready:
                    while True:
                        try:
                            wake.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                    if not self._run_commands():
                        return
                if self._sub is not None and self._sub in ready:
                    self._receive(zmq)
                now = self.clock.monotonic()
                self._check_liveness(now)
                if self.cache_file and now >= next_save and self.cache.generation != saved_generation:
                    saved_generation = self._save()
                    next_save = now + self.save_interval
        except Exception:
            LOG.exception("live feed crashed; the cache falls back to plain expiry")
            self.live_epoch = None
        finally:
            if self._sub is not None:
                self._sub.close()
            wake.close()
            if self.cache_file:
                self._save()

    def _run_commands(self):
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return True
            if command[0] == "stop":
                return False
            _, endpoint, topic = command
            if endpoint != self._source:
                self._switch(endpoint)
            if topic not in self._topics:
                self._topics.add(topic)
                if self._sub is not None:
                    self._sub.setsockopt(self.runtime.zmq.SUBSCRIBE, protocol.topic_key(topic))

    def _switch(self, endpoint):
        """Move to ``endpoint``'s feed: ask it for its feed port, subscribe to everything."""
        zmq = self.runtime.zmq
        self.stats["switches"] += 1
        if self._sub is not None:
            self._sub.close()
            self._sub = None
        self._source, self._last_tick = endpoint, None
        if self.live_epoch is not None:
            self.live_epoch = None
            self.cache.demote(self.clock.monotonic())
        health = self.client.status(self.client.endpoints.index(endpoint))
        if health is None or not health.feed_port:
            self._retry_at = self.clock.monotonic() + _RETRY
            return
        sub = self._context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE_BYTES)
        if endpoint.is_ipv6:
            sub.setsockopt(zmq.IPV6, 1)
        sub.setsockopt(zmq.SUBSCRIBE, protocol.TICK_KEY)
        for topic in self._topics:
            sub.setsockopt(zmq.SUBSCRIBE, protocol.topic_key(topic))
        sub.connect(Endpoint(endpoint.host, health.feed_port).zmq_address())
        self._sub = sub
        self._retry_at = None
        self._last_tick = self.clock.monotonic()  # grace period for the first tick

    def _receive(self, zmq):
        cache = self.cache
        for _ in range(1024):
            try:
                frames = self._sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2:
                continue
            try:
                message = protocol.decode(frames[1])
            except ProtocolError as exc:
                LOG.debug("dropped a malformed feed message: %s", exc)
                continue
            now = self.clock.monotonic()
            kind = type(message)
            if kind is protocol.Delta:
                if self.live_epoch != message.epoch:
                    continue  # not trusted until this epoch's tick arrived
                outcome = cache.apply_delta(message, now)
                if outcome is Applied.APPLIED:
                    self.stats["deltas"] += 1
                elif outcome is Applied.GAP:
                    self.stats["gaps"] += 1
            elif kind is protocol.Snapshot:
                if self.live_epoch == message.epoch:
                    cache.apply_snapshot(message, now)
                    self.stats["snapshots"] += 1
            elif kind is protocol.Tick:
                self.stats["ticks"] += 1
                self._last_tick = now
                self.tick_timeout = _MISSED_TICKS * message.interval
                if message.epoch != self.live_epoch:
                    if self.live_epoch is not None:
                        LOG.info("registry %s restarted (new epoch); reloading cached answers", self._source)
                    cache.demote(now, keep_epoch=message.epoch)
                    self.live_epoch = message.epoch
                    # Ask again for every topic's snapshot in the new epoch.
                    for topic in self._topics:
                        key = protocol.topic_key(topic)
                        self._sub.setsockopt(zmq.UNSUBSCRIBE, key)
                        self._sub.setsockopt(zmq.SUBSCRIBE, key)

    def _check_liveness(self, now):
        if self._source is None:
            return
        if self._sub is None:
            if self._retry_at is not None and now >= self._retry_at:
                self._switch(self._source)
            return
        if self._last_tick is not None and now - self._last_tick > self.tick_timeout:
            if self.live_epoch is not None:
                LOG.warning("live feed from %s is silent; cached answers expire normally again", self._source)
                self.live_epoch = None
                self.cache.demote(now)
            if now - self._last_tick > self.tick_timeout + _RETRY:
                self._switch(self._source)

    def _save(self):
        generation = self.cache.generation
        try:
            save_cache(self.cache_file, self.cache.snapshot())
        except OSError as exc:
            LOG.warning("could not write the cache file %s: %s", self.cache_file, exc)
        return generation
