"""The one concurrency seam: plain threads, or eventlet when the process is monkey-patched.

rpcmm has two kinds of code that block:

- **background loops** that own their sockets outright (a registry server, a client's live
  feed). They always run on a native OS thread with plain pyzmq, whatever the process uses:
  a native thread blocked in libzmq holds no GIL, so under eventlet the hub keeps running.
  They get :meth:`Runtime.spawn_native`, :meth:`Runtime.native_lock` and :func:`native_poll`.
- **calls made by the application's own threads** (heartbeats, lookups). They use the
  runtime's zmq binding (:attr:`Runtime.zmq`), :meth:`Runtime.spawn`, :meth:`Runtime.event`,
  :meth:`Runtime.lock` and :meth:`Runtime.poll`, which are green under eventlet.

Logging from the native loops under eventlet: monkey_patch makes every logging handler's
lock green, and a native thread that takes a green lock another green thread holds (or the
other way round) can hang both for good. So records that rpcmm's own loggers make on those
native threads are handed over (:class:`_NativeLogRelay`) to a green task in the hub's
thread, which passes them to the handlers there; their time, thread and content are kept.

Only :func:`default_runtime` decides which runtime a process gets. Under eventlet the zmq binding
is eventlet's own ``eventlet.green.zmq`` (pyzmq's ``zmq.green`` is gevent's and does not work
under eventlet); it greens ``send`` and ``recv`` (honouring ``RCVTIMEO``/``SNDTIMEO``) but not
``zmq.Poller``, so rpcmm waits on one socket with those timeouts and on several with
:meth:`Runtime.poll`.
"""

import collections
import logging
import sys
import threading
import time

import zmq as plain_zmq

__all__ = ["Runtime", "THREADING", "default_runtime", "eventlet_runtime", "native_poll", "send_wake_token"]


def native_poll(items, timeout):
    """Wait on plain pyzmq sockets: ``items`` are (socket, POLLIN/POLLOUT) pairs, ``timeout``
    seconds (None: forever); return ``{socket: ready flags}``."""
    poller = plain_zmq.Poller()
    for socket, flags in items:
        poller.register(socket, flags)
    return dict(poller.poll(None if timeout is None else max(0.0, timeout) * 1000))


def send_wake_token(context, zmq_module, socket_type, address, token):
    """Wake a task blocked in a receive on a socket only it owns: send ``token`` to the
    ``inproc://`` ``address`` that socket also binds, from a short-lived ``socket_type`` socket
    (a DEALER for a ROUTER, a REQ for a REP). The task returns when it reads the token; a
    random token per task means no peer can stop it. A blocking receive is then the task's only
    wait, with no poll loop or timeout, and it is green under eventlet. Returns once the token
    is handed over (or after 1 s if nobody reads it): closing never hangs."""
    waker = context.socket(socket_type)
    try:
        waker.setsockopt(zmq_module.LINGER, 1000)
        waker.connect(address)
        waker.send(token)
    finally:
        waker.close()


class Runtime:
    """Concurrency primitives for one process; see the module docstring.

    ``spawn`` and ``spawn_native`` start ``fn`` in the background and return an object with
    ``join(timeout)`` and ``is_alive()``.
    """

    def __init__(self, name, zmq_module):
        self.name = name
        self.zmq = zmq_module

    def spawn(self, fn, name):
        thread = threading.Thread(target=fn, name=name, daemon=True)
        thread.start()
        return thread

    def spawn_native(self, fn, name):
        return self.spawn(fn, name)

    def event(self):
        return threading.Event()

    def lock(self):
        return threading.Lock()

    def native_lock(self):
        """A lock that native threads and the application's threads may share (held briefly)."""
        return threading.Lock()

    def native(self):
        """A runtime whose ``spawn`` starts native threads and whose zmq is plain pyzmq: for
        helpers (such as the ZAP handler) that serve a background loop's plain context."""
        return self

    def new_context(self):
        """A new zmq context of this runtime's binding; the caller owns and terms it."""
        return self.zmq.Context()

    def poll(self, items, timeout):
        """Wait on sockets of this runtime's binding, like :func:`native_poll`."""
        return native_poll(items, timeout)

    def __repr__(self):
        return f"<Runtime {self.name}>"


class _EventletRuntime(Runtime):
    #: Longest pause between two looks at the sockets while waiting on several (rare: a client
    #: waiting for its first connection); a single socket is waited on with green recv/send.
    _LONGEST_PAUSE = 0.02

    def __init__(self, zmq_module, eventlet_module, original_threading, original_thread):
        super().__init__("eventlet", zmq_module)
        self._eventlet = eventlet_module
        self._threading = original_threading
        self._thread = original_thread
        self._log_relay = None

    def spawn_native(self, fn, name):
        relay = self._relay()
        relay.attach()
        ready = self._thread.allocate_lock()
        ready.acquire()

        def run():
            relay.enter()  # before fn logs anything
            ready.release()
            try:
                fn()
            finally:
                relay.leave()

        thread = self._threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        ready.acquire()  # a native lock: the hub waits the thread's start (microseconds), no more
        relay.ensure_pump()
        return _RelayedThread(thread, relay)

    def _relay(self):
        if self._log_relay is None:
            self._log_relay = _NativeLogRelay(self._eventlet, self._thread)
        return self._log_relay

    def native_lock(self):
        return self._thread.allocate_lock()

    def native(self):
        native = Runtime("native", plain_zmq)
        native.spawn = self.spawn_native
        native.lock = self.native_lock
        native.spawn_native = self.spawn_native
        native.native_lock = self.native_lock
        return native

    def poll(self, items, timeout):
        zmq = self.zmq
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        pause = 0.001
        while True:
            ready = {}
            for socket, flags in items:
                events = socket.getsockopt(zmq.EVENTS) & flags
                if events:
                    ready[socket] = events
            if ready:
                return ready
            wait = pause if deadline is None else min(pause, deadline - time.monotonic())
            if wait <= 0:
                return {}
            self._eventlet.sleep(wait)
            pause = min(2 * pause, self._LONGEST_PAUSE)


class _RelayedThread:
    """A native thread under eventlet; joining it also hands over the records it logged last
    (a process that exits right after a stop would otherwise lose them)."""

    def __init__(self, thread, relay):
        self._thread = thread
        self._relay = relay

    def join(self, timeout=None):
        self._thread.join(timeout)
        self._relay.flush()

    def is_alive(self):
        return self._thread.is_alive()

    @property
    def ident(self):
        return self._thread.ident

    @property
    def name(self):
        return self._thread.name


class _NativeLogRelay(logging.Filter):
    """Hands log records made on rpcmm's native threads (under eventlet) to the hub's thread.

    A filter on every ``rpcmm`` logger: a record made on a registered native thread is queued
    and dropped from direct handling; a green task (the pump, started by the green thread that
    spawns a native one) hands the queue to ``logger.handle`` every :data:`_PUMP_EVERY`
    seconds, where the filter lets it through, :data:`_PUMP_BATCH` at a time with a yield
    between batches (a registry logging a join storm must not hold the hub). At most
    :data:`_MAX_QUEUED` records wait; beyond that they are counted, and the count logged. The
    pump ends once no native thread is left and nothing is queued, and starts again with the
    next native thread.
    """

    _PUMP_EVERY = 0.05
    _PUMP_BATCH = 256
    _MAX_QUEUED = 100_000

    def __init__(self, eventlet_module, original_thread):
        super().__init__()
        self._eventlet = eventlet_module
        self._os_ident = original_thread.get_ident  # the OS thread's id, whatever greenlet runs
        self._natives = set()  # OS ids of the live native threads rpcmm started
        self._records = collections.deque()  # appended on native threads, emptied by the pump
        self._dropped = 0  # records not queued because the queue was full (native side only)
        self._pump = None

    def enter(self):
        """On a native thread, first thing: its records go to the relay from now on."""
        self._natives.add(self._os_ident())

    def leave(self):
        self._natives.discard(self._os_ident())

    def filter(self, record):
        if self._natives and self._os_ident() in self._natives:
            if len(self._records) < self._MAX_QUEUED:
                self._records.append(record)
            else:
                self._dropped += 1
            return False
        return True

    def flush(self):
        """Hand over what is queued now, from the calling green thread (not from a native one)."""
        if self._os_ident() not in self._natives:
            self._drain(limit=None)

    def attach(self):
        """Put the filter on every ``rpcmm`` logger that exists (each module makes its own at
        import; filters are not inherited by child loggers), and make their level checks
        lockless: ``Logger.isEnabledFor`` takes logging's module lock (green once patched)
        whenever its cache was cleared, by any ``setLevel`` in the process."""
        manager = logging.Logger.manager
        for name, logger in list(manager.loggerDict.items()):
            if (name == "rpcmm" or name.startswith("rpcmm.")) and isinstance(logger, logging.Logger) \
                    and self not in logger.filters:
                logger.addFilter(self)
                logger.isEnabledFor = _lockless_level_check(logger)

    def ensure_pump(self):
        """From a green thread: make sure the pump runs."""
        if self._os_ident() in self._natives:
            return  # a native thread started another: the pump already runs (it is alive)
        if self._pump is None or self._pump.dead:
            self._pump = self._eventlet.spawn(self._run_pump)

    def _run_pump(self):
        while True:
            while self._drain(limit=self._PUMP_BATCH):
                self._eventlet.sleep(0)  # more queued: let the other green threads run first
            if not self._natives and not self._records:
                return
            self._eventlet.sleep(self._PUMP_EVERY)

    def _drain(self, limit):
        """Hand over up to ``limit`` records (None: all); True if some are left."""
        records = self._records
        handed = 0
        while records and (limit is None or handed < limit):
            record = records.popleft()
            handed += 1
            try:
                logging.getLogger(record.name).handle(record)
            except Exception:  # a handler's failure must not end the relay
                logging.getLogger(__name__).exception("could not hand over a log record")
        dropped, self._dropped = self._dropped, 0  # a few may be lost from the count: it is a hint
        if dropped:
            logging.getLogger(__name__).warning(
                "%d log records from rpcmm's native threads were dropped: more than %d waited for "
                "the hub (a green thread holding it for long?)", dropped, self._MAX_QUEUED)
        return bool(records)


def _lockless_level_check(logger):
    """``logger.isEnabledFor`` without the cache and its lock: the same answer, read from the
    logger tree (a few attribute reads; the tree changes under the lock, and a read that sees
    it a moment early or late is as good as the cache would have been)."""
    def is_enabled_for(level):
        if logger.disabled or logger.manager.disable >= level:
            return False
        return level >= logger.getEffectiveLevel()
    return is_enabled_for


def _threading_runtime():
    return Runtime("threading", plain_zmq)


THREADING = _threading_runtime()
_eventlet = None


def eventlet_runtime():
    """The eventlet runtime; only meaningful after ``eventlet.monkey_patch()``."""
    global _eventlet
    if _eventlet is None:
        import eventlet
        from eventlet import patcher
        from eventlet.green import zmq as green_zmq

        _eventlet = _EventletRuntime(green_zmq, eventlet, patcher.original("threading"),
                                     patcher.original("_thread"))
    return _eventlet


def default_runtime():
    """Eventlet's runtime if this process has monkey-patched threads, else plain threads.

    Decided here and nowhere else. Importing rpcmm never imports eventlet: it is only
    consulted when the process already loaded it.
    """
    eventlet_patcher = sys.modules.get("eventlet.patcher")
    if eventlet_patcher is not None and eventlet_patcher.is_monkey_patched("thread"):
        return eventlet_runtime()
    return THREADING
