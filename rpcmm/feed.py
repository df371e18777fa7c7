"""The client side of a registry's live feed: deltas into the cache as they happen.

A :class:`LiveFeed` subscribes, on the registry the client's lookups go to, to the topics the
client has looked up (at most as many as its cache holds, the least recently fetched from a
registry dropped first), and applies what arrives to the :class:`~rpcmm.cache.LookupCache`:

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

Lifecycle: :meth:`start` starts one loop, on a native thread with plain pyzmq and a context of
its own (see :mod:`rpcmm.runtime`), that owns the SUB socket and a DEALER for STATUS calls;
:meth:`follow` may be called from any thread (it only queues a command); :meth:`stop` wakes
the loop and joins it.
"""

import collections
import itertools
import logging
import random

import zmq

from rpcmm import protocol
from rpcmm.addressing import Endpoint
from rpcmm.cache import Applied
from rpcmm.cachefile import save_cache
from rpcmm.errors import ProtocolError
from rpcmm.runtime import native_poll
from rpcmm.security import secure_client_socket
from rpcmm.server import DEFAULT_TICK_INTERVAL

__all__ = ["LiveFeed"]

LOG = logging.getLogger(__name__)

#: Ticks missed before the feed counts as dead.
_MISSED_TICKS = 3
#: Seconds between attempts to reconnect a dead feed.
_RETRY = 1.0


class LiveFeed:
    """Keeps ``cache`` current from the feed of the registry a client asks (``follow`` says which).

    ``live_epoch`` is the epoch of the registry whose ticks are arriving (None while the feed is
    not live); a lookup answer of that epoch may be cached for the cache's ``live_max_age``.
    ``timeout`` bounds the STATUS call that finds a registry's feed port; ``curve`` secures the
    feed's sockets as :class:`~rpcmm.client.RegistryClient`'s.
    """

    def __init__(self, cache, runtime, clock, timeout=0.5, cache_file=None, save_interval=5.0, curve=None):
        self.cache = cache
        self.curve = curve
        self.timeout = timeout
        self.runtime = runtime
        self.clock = clock
        # Until a tick says how often the registry ticks, assume the default.
        self.tick_timeout = _MISSED_TICKS * DEFAULT_TICK_INTERVAL
        self.cache_file = cache_file
        self.save_interval = save_interval
        self.live_epoch = None
        self._source_up = True  # the last tick said UP (until a tick says otherwise)
        self.stats = {"deltas": 0, "snapshots": 0, "gaps": 0, "ticks": 0, "switches": 0}
        self._context = None
        # Filled by the application's threads, emptied by the native loop. A deque, not a
        # queue.SimpleQueue: eventlet's monkey_patch swaps SimpleQueue for one built on a green
        # lock, and a green thread and the native loop contending for it could hang either
        # side for good. deque's append and popleft are atomic and never patched.
        self._commands = collections.deque()
        self._wake_lock = runtime.native_lock()
        self._wake_send = None
        self._task = None
        self._request_ids = itertools.count(random.getrandbits(32))
        # topic -> endpoint last asked for (callers' side, for follow()), least recently
        # followed first. At most as many topics as the cache holds are followed: a process
        # that looked up many topics over its life (servers by name, hosts long gone) would
        # otherwise subscribe to all of them for ever, and after a registry restart take a
        # snapshot of each, crowding the topics in use out of its cache.
        self._following = collections.OrderedDict()
        self._following_source = None
        self.max_followed = cache.max_entries
        # follow() runs on any thread: its bookkeeping and the commands it queues change
        # together, so the loop's subscriptions always match _following. Native: held for
        # microseconds, and by green and native threads alike.
        self._follow_lock = runtime.native_lock()

    def start(self):
        self._context = zmq.Context()
        address = f"inproc://rpcmm-feed-wake-{id(self):x}"
        wake_recv = self._context.socket(zmq.PAIR)
        wake_recv.setsockopt(zmq.LINGER, 0)
        wake_recv.bind(address)
        self._wake_send = self._context.socket(zmq.PAIR)
        self._wake_send.setsockopt(zmq.LINGER, 0)
        self._wake_send.connect(address)
        self._task = self.runtime.spawn_native(lambda: self._run(wake_recv), name=f"rpcmm-feed-{id(self):x}")
        return self

    def stop(self, timeout=5.0):
        if self._task is None:
            return
        self._command(("stop",))
        task, self._task = self._task, None
        task.join(timeout)
        with self._wake_lock:  # a follow() racing this stop finds the pipe closed, not broken
            self._wake_send.close()
        if task.is_alive():
            # Its sockets are still open: term() would wait for them for ever. Leaking the
            # context of a stuck loop is the lesser harm.
            LOG.error("live feed loop did not stop within %gs; leaving its sockets", timeout)
            return
        self._context.term()

    def follow(self, endpoint, topic):
        """Keep ``topic`` current, from ``endpoint``'s feed (switching registries if needed).

        Cheap when nothing changes: what was already asked for is not asked again. Beyond
        :attr:`max_followed` topics the least recently followed one is dropped (its cached
        answer is then asked again at its next lookup, which follows it again)."""
        following = self._following
        with self._follow_lock:
            if following.get(topic) == endpoint and self._following_source == endpoint:
                following.move_to_end(topic)
                return
            following[topic] = endpoint
            following.move_to_end(topic)
            self._following_source = endpoint
            self._command(("follow", endpoint, topic))
            while len(following) > self.max_followed:
                oldest, _ = following.popitem(last=False)
                self._command(("unfollow", None, oldest))

    def _command(self, command):
        self._commands.append(command)
        with self._wake_lock:
            if self._wake_send is None or self._wake_send.closed:
                return  # not started, or stopped: a lookup that raced stop() has nothing left to follow
            try:
                self._wake_send.send(b"", zmq.NOBLOCK)
            except zmq.Again:  # already awake with a full pipe
                pass

    # -- the task (owns the SUB socket) ---------------------------------------------------------

    def _run(self, wake):
        self._sub = None
        self._status_socket = None
        self._source = None  # the Endpoint whose feed we are on
        self._topics = set()
        self._last_tick = None
        self._retry_at = None
        saved_generation, next_save = self.cache.generation, self.clock.monotonic() + self.save_interval
        try:
            while True:
                items = [(wake, zmq.POLLIN)]
                if self._sub is not None:
                    items.append((self._sub, zmq.POLLIN))
                ready = native_poll(items, min(self.tick_timeout / _MISSED_TICKS, 0.25))
                if wake in ready:
                    while True:
                        try:
                            wake.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                    if not self._run_commands():
                        return
                if self._sub is not None and self._sub in ready:
                    self._receive()
                now = self.clock.monotonic()
                self._check_liveness(now)
                if self.cache_file and now >= next_save and self.cache.generation != saved_generation:
                    saved_generation = self._save()
                    next_save = now + self.save_interval
        except Exception:
            LOG.exception("live feed crashed; the cache falls back to plain expiry")
            self.live_epoch = None
            # Entries kept fresh by the feed would stay so for live_max_age with nobody keeping
            # them right: from now on they are fresh for max_age at most, as plain answers.
            self.cache.cap(self.clock.monotonic())
        finally:
            for socket in (self._sub, self._status_socket, wake):
                if socket is not None:
                    socket.close()
            if self.cache_file:
                self._save()

    def _run_commands(self):
        while True:
            try:
                command = self._commands.popleft()
            except IndexError:
                return True
            if command[0] == "stop":
                return False
            kind, endpoint, topic = command
            if kind == "unfollow":
                self._unfollow(topic)
                continue
            if endpoint != self._source:
                self._switch(endpoint)
            if topic not in self._topics:
                self._topics.add(topic)
                if self._sub is not None:
                    self._sub.setsockopt(zmq.SUBSCRIBE, protocol.topic_key(topic))

    def _unfollow(self, topic):
        if topic not in self._topics:
            return
        self._topics.discard(topic)
        if self._sub is not None:
            self._sub.setsockopt(zmq.UNSUBSCRIBE, protocol.topic_key(topic))
        # No delta keeps it right any more: stale, so its next lookup asks again (and follows
        # it again); kept as the fallback for when no registry answers.
        self.cache.make_stale(topic)

    def _switch(self, endpoint):
        """Move to ``endpoint``'s feed: ask it for its feed port, subscribe to everything."""
        self.stats["switches"] += 1
        if self._sub is not None:
            self._sub.close()
            self._sub = None
        self._source, self._last_tick = endpoint, None
        if self.live_epoch is not None:
            self.live_epoch = None
            self.cache.demote(self.clock.monotonic())
        health = self._status(endpoint)
        if health is None or not health.feed_port:
            self._retry_at = self.clock.monotonic() + _RETRY
            return
        sub = self._context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_REPLY_BYTES)
        if self.curve is not None:
            secure_client_socket(sub, self.curve)
        if endpoint.is_ipv6:
            sub.setsockopt(zmq.IPV6, 1)
        sub.setsockopt(zmq.SUBSCRIBE, protocol.TICK_KEY)
        for topic in self._topics:
            sub.setsockopt(zmq.SUBSCRIBE, protocol.topic_key(topic))
        sub.connect(Endpoint(endpoint.host, health.feed_port).zmq_address())
        self._sub = sub
        self._retry_at = None
        self._last_tick = self.clock.monotonic()  # grace period for the first tick

    def _status(self, endpoint):
        """Ask ``endpoint`` for its HEALTH (None if it does not answer within the timeout)."""
        if self._status_socket is not None:
            self._status_socket.close()
        socket = self._status_socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:
            secure_client_socket(socket, self.curve)
        if endpoint.is_ipv6:
            socket.setsockopt(zmq.IPV6, 1)
        socket.connect(endpoint.zmq_address())
        request_id = next(self._request_ids)
        socket.send(protocol.encode(protocol.Status(request_id)))
        deadline = self.clock.monotonic() + self.timeout
        while True:
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0 or not native_poll([(socket, zmq.POLLIN)], remaining):
                return None
            try:
                reply = protocol.decode(socket.recv())
            except ProtocolError:
                continue
            if type(reply) is protocol.Health and reply.request_id == request_id:
                return reply

    def _receive(self):
        for _ in range(1024):
            try:
                frames = self._sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2:
                continue
            try:
                message = protocol.decode(frames[1], protocol.MAX_REPLY_BYTES)
            except ProtocolError as exc:
                LOG.debug("dropped a malformed feed message: %s", exc)
                continue
            try:
                self._apply(message)
            except Exception:  # a bug must cost one message, never the feed
                LOG.exception("failed to apply a %s from the live feed", type(message).__name__)

    def _apply(self, message):
        cache = self.cache
        now = self.clock.monotonic()
        kind = type(message)
        if kind is protocol.Delta:
            if self.live_epoch != message.epoch:
                return  # not trusted until this epoch's tick arrived
            outcome = cache.apply_delta(message, now, live=self._source_up)
            if outcome is Applied.APPLIED:
                self.stats["deltas"] += 1
            elif outcome is Applied.GAP:
                self.stats["gaps"] += 1
        elif kind is protocol.Snapshot:
            if self.live_epoch == message.epoch:
                cache.apply_snapshot(message, now, live=self._source_up)
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
            up = message.state is protocol.State.UP
            if self._source_up and not up:
                # A registry that is not UP (DEGRADED: holding hosts it no longer hears) keeps
                # sending what it holds: what it said, and says until it is UP again, is fresh
                # for max_age, not live_max_age (once, when it leaves UP: a scan of the cache).
                cache.cap(now)
            self._source_up = up

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
