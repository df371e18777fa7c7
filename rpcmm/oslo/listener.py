"""What a server receives: the listener and the incoming messages it hands to oslo.messaging.

One :class:`ZmqListener` serves one ``listen()`` (RPC) or ``listen_for_notifications()`` call.
It binds its own socket (a :class:`~rpcmm.oslo.receiver.Receiver`), so its address is what it
registers with rpcmm, and each message it reads is decoded and checked against the rpcmm topics
it subscribed to (a message for another topic, e.g. sent to a reused port, is dropped). Then
one of two things happens to it:

- pushed: :class:`PushListener` (what the driver gives oslo.messaging when it asks for batches
  of one, as every RPC server and plain notification listener does) hands each message to
  oslo's ``on_incoming`` callback straight from the receiving task. oslo's callback only
  submits the message to its executor, so this is quick, and it saves a thread hand-off per
  message: profiles showed the hand-off to a polling thread costing more than decoding;
- polled: for batches of more than one, the message is queued for :meth:`ZmqListener.poll`,
  which oslo.messaging's ``PollStyleListenerAdapter`` calls from its own thread (batching
  needs a thread that can wait for the batch timeout).

Replies do not go back through the listener's socket (only its reading task may touch it):
they go through the driver's :class:`~rpcmm.oslo.peers.Outbox` to the caller's reply address.

Stopping drains. A peer that looked the topic up a moment ago still sends here after the
listener unregistered (until the registry's change reaches its cache, milliseconds over the
live feed), and nothing would bring those messages back once the socket closes: unlike a
broker's queue, the socket is the only copy. So :meth:`ZmqListener.stop` unregisters first,
and the receiving task goes on receiving and delivering until its socket has stayed empty for
:data:`DRAIN_QUIET` seconds (at most ``stop_drain_timeout``; see
:meth:`~rpcmm.oslo.receiver.Receiver.stop`), and only then closes it. oslo's ``stop()`` thus
returns once callers have moved on, and its ``wait()`` lets the executor finish what the
drain delivered: a rolling restart loses no call or cast sent to a server that stops cleanly.
"""

import collections
import logging
import threading
import time

from oslo_messaging._drivers import base
from oslo_messaging._drivers import common as rpc_common

from rpcmm.errors import LifecycleError, ProtocolError
from rpcmm.oslo import wire
from rpcmm.oslo.peers import MessageTooLarge, PeerBusy
from rpcmm.oslo.receiver import Receiver

__all__ = ["ZmqListener", "PushListener", "ZmqIncomingMessage"]

LOG = logging.getLogger(__name__)

#: Seconds poll() waits before returning nothing from a listener the transport cleaned up.
_STOPPED_POLL_PAUSE = 0.1
#: A stopping listener closes its socket once nothing arrived for this long after it
#: unregistered: long enough for the registry's change to reach peers' caches over the live
#: feed (milliseconds), and for the requests they sent just before to arrive.
DRAIN_QUIET = 0.25
#: How long a second stop or cleanup waits for one in progress in another thread (a stop's
#: drain comes on top: a cleanup cuts it short, another stop waits for it).
_TEARDOWN_WAIT = 10.0


class ZmqIncomingMessage(base.RpcIncomingMessage):
    """A received call, cast or notification.

    :meth:`reply` and :meth:`heartbeat` send to the caller's reply address through the
    driver's outbox (thread-safe, never blocking); for casts and notifications they do nothing.
    Neither raises: a reply that cannot be sent (a full queue, a peer gone) is logged, and the
    caller times out; one over ``max_message_bytes`` is replaced by an error saying so.
    :meth:`requeue` sends the message's own ``frames`` back to ``requeue_to`` (the address of
    the listener that received it), which delivers it again.
    """

    def __init__(self, request, outbox, requeue_to=None, frames=None):
        super().__init__(request.ctxt, request.message, msg_id=request.msg_id)
        self._reply_to = request.reply_to
        self._outbox = outbox
        self._requeue = (requeue_to, frames)
        self.client_timeout = request.monitor

    def reply(self, reply=None, failure=None):
        if self._reply_to is None:
            return
        if failure is not None:
            failure = rpc_common.serialize_remote_exception(failure)
        try:
            self._send(wire.Reply(self.msg_id, result=reply, failure=failure))
        except (TypeError, ValueError, MessageTooLarge) as exc:
            # The result is not serializable, or too large to send: the caller gets that error
            # instead of a timeout.
            LOG.warning("reply to %s cannot be sent (%s); sending the error instead", self.msg_id, exc)
            failure = rpc_common.serialize_remote_exception((type(exc), exc, exc.__traceback__))
            try:
                self._send(wire.Reply(self.msg_id, failure=failure))
            except MessageTooLarge:  # even the error, with its traceback, is over a tiny limit
                LOG.error("the error reply to %s is over max_message_bytes too; the caller will time out",
                          self.msg_id)

    def heartbeat(self):
        if self._reply_to is not None:
            self._send(wire.Beat(self.msg_id))

    def acknowledge(self):
        """Nothing to acknowledge: zmq delivered the message once and keeps no copy."""

    def requeue(self):
        """Deliver the message again, through this listener's own socket: what rabbit's requeue
        does for a consumer, except that it is this listener, not another member of its pool,
        that gets it back (and that it is lost if the listener stops first)."""
        address, frames = self._requeue
        if address is None:
            LOG.warning("message %s cannot be requeued: it came with no copy to send again", self.msg_id)
            return
        try:
            self._outbox.send(address, frames)
        except (PeerBusy, MessageTooLarge, LifecycleError) as exc:
            LOG.warning("message %s could not be requeued: %s", self.msg_id, exc)

    def _send(self, message):
        """Send to the caller; MessageTooLarge is the caller's (of this method) to handle."""
        frames = wire.encode(message)
        try:
            self._outbox.send(self._reply_to, frames)
        except MessageTooLarge:
            raise
        except PeerBusy as exc:
            LOG.warning("could not reply to %s: %s", self.msg_id, exc)
        except Exception:
            LOG.exception("could not reply to %s", self.msg_id)


class ZmqListener(base.PollStyleListener):
    """Receives the messages of a set of rpcmm topics and queues them for :meth:`poll`.

    ``topics`` are the rpcmm topics to register once the socket is bound, each for the host
    ``host_for(address)`` (the listener's own address, or a notification pool member's name).

    Lifecycle: :meth:`start` (the driver calls it) binds, registers, and waits (at most
    ``lookup_timeout``) until lookups see the registration. :meth:`stop` unregisters at once,
    drains (see the module docstring), stops the socket, and makes :meth:`poll` return what is
    queued without blocking; it takes ``min(DRAIN_QUIET, stop_drain_timeout)`` seconds when
    nothing arrives, at most ``stop_drain_timeout``, and no time with ``stop_drain_timeout``
    0. :meth:`cleanup` does the same without draining, and cuts short a drain in progress
    (the transport is going away). Thread-safe: poll runs in oslo's listener thread, stop in
    another.
    """

    def __init__(self, context, runtime, matchmaker, outbox, topics, host_for,
                 options, name, curve=None):
        super().__init__()
        self._matchmaker = matchmaker
        self._outbox = outbox
        self._topics = frozenset(topics)
        self._host_for = host_for
        self._backlog = options.listener_backlog
        self._drain_timeout = options.stop_drain_timeout
        self._confirm_timeout = options.lookup_timeout
        self._name = name
        # threading's Condition is green once eventlet has patched the process, like the lock.
        self._ready = threading.Condition(runtime.lock())
        self._queue = collections.deque()
        self._push = None  # set by push_to(): then messages skip the queue
        self._leaving = False  # a teardown began: unregistering, then draining
        self._torn_down = runtime.event()  # the teardown finished: the socket is closed
        self._stopped = False  # nothing more is delivered (after the drain)
        self._cleaned_up = False  # cleanup() ran: see poll()
        self._registered = []
        #: Messages received and dropped (malformed, not ours, backlog full); a plain counter.
        self.dropped = 0
        self._receiver = Receiver(
            context, runtime, self._accept, options.listen_host,
            options.advertise_host or options.listen_host, options.max_message_bytes,
            name=name, curve=curve, on_failure=self._receiver_failed,
        )

    @property
    def address(self):
        return self._receiver.address

    def start(self):
        self._receiver.start()
        host = self._host_for(self._receiver.address)
        try:
            for topic in sorted(self._topics):
                self._matchmaker.register(topic, host)
                self._registered.append((topic, host))
        except Exception:
            self._teardown(drain=False)  # it never served: nothing to drain
            raise
        self._await_visible(host)
        LOG.debug("%s listening on %s for %s", self._name, self.address, sorted(self._topics))
        return self

    def _await_visible(self, host):
        """Wait (at most ``lookup_timeout``) until lookups see this listener.

        Registering may be a cast, so without this a client that looks up right after the
        server started could get an answer without it (and a cast or notification sent then
        would be dropped). ``Matchmaker.confirmed`` asks the matchmaker's store itself, not its
        cache or its own view of what it registered. A lookup that fails or is slow only
        shortens the wait, which is best effort and logged.
        """
        deadline = time.monotonic() + self._confirm_timeout
        pause = 0.002
        pending = sorted(self._topics)
        while pending:
            try:
                pending = [t for t in pending if not self._matchmaker.confirmed(t, host)]
            except Exception as exc:  # e.g. RegistryUnavailable: heartbeats will get it there
                LOG.debug("%s: cannot confirm the registration of %s: %s", self._name, host, exc)
                return
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                break
            with self._ready:  # an interruptible pause: stop() wakes it
                if self._leaving:
                    return
                self._ready.wait(min(pause, remaining))
            pause = min(pause * 2, 0.05)
        if pending:
            LOG.debug("%s: registration of %s not yet visible for %s", self._name, host, pending)

    # -- the receiver's task -----------------------------------------------------------------

    def _receiver_failed(self):
        """The receiving task ended on an error: nothing more arrives here, so callers must be
        sent to other servers. Unregister and stop, as a stop without a drain does."""
        LOG.error("%s on %s stopped receiving; unregistering it so that callers go elsewhere",
                  self._name, self.address)
        self._teardown(drain=False)

    def _accept(self, frames):
        try:
            request = wire.decode(frames)
        except ProtocolError:
            self.dropped += 1
            raise  # the receiver logs it, rate-limited
        # Refusals are raised as ProtocolError: the receiver logs them, with one rate limit.
        if not isinstance(request, wire.Request):
            self.dropped += 1
            raise ProtocolError(f"a {type(request).__name__} sent to a listener")
        if request.to not in self._topics:
            self.dropped += 1
            raise ProtocolError(f"for {request.to!r}, which this listener does not serve")
        message = ZmqIncomingMessage(request, self._outbox, self.address, frames)
        push = self._push  # without the lock first: it is set once, and then every message pushes
        if push is None:
            with self._ready:
                if self._stopped:
                    return
                push = self._push  # push_to() may have run since
                if push is None:
                    if len(self._queue) >= self._backlog:
                        self.dropped += 1
                        raise ProtocolError(f"backlog of {self._backlog} messages full; dropped {request.msg_id}")
                    self._queue.append(message)
                    self._ready.notify()
                    return
        if not self._stopped:
            push(message)

    def push_to(self, deliver):
        """From now on hand every message to ``deliver(message)`` in the receiving task instead
        of queueing it for :meth:`poll`; what is queued already is delivered first, here.

        ``deliver`` must be quick (it holds up every later message) and is never called once
        :meth:`stop` has returned.
        """
        # Drain the queue until it is empty under the lock, and only then switch to pushing:
        # a message that arrives while the queued ones are delivered is queued behind them,
        # so messages reach ``deliver`` in the order they were received.
        while True:
            with self._ready:
                queued, self._queue = list(self._queue), collections.deque()
                if not queued:
                    self._push = deliver
                    return
            for message in queued:
                deliver(message)

    # -- oslo.messaging's side ---------------------------------------------------------------

    def poll(self, timeout=None, batch_size=1, batch_timeout=None):
        """Up to ``batch_size`` messages (None: no limit): blocks until one is there (or
        ``timeout`` passes, or the listener stops), then gathers more for at most
        ``batch_timeout`` seconds after the first.

        Once the listener is stopped with nothing left, it returns an empty batch, after a
        short pause if the transport was cleaned up under a polling thread that goes on
        polling (oslo's adapter loops until its own stop): a pause, not a busy loop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        batch = []
        with self._ready:
            if not self._wait(deadline):
                if self._stopped and self._cleaned_up:
                    pause = _STOPPED_POLL_PAUSE if timeout is None else min(timeout, _STOPPED_POLL_PAUSE)
                    self._ready.wait(pause)
                return batch
            batch_deadline = time.monotonic() + (batch_timeout or 0)
            while batch_size is None or len(batch) < batch_size:
                if self._queue:
                    batch.append(self._queue.popleft())
                    continue
                if not self._wait(batch_deadline):
                    break
        return batch

    def _wait(self, deadline):
        """Under the condition: wait until something is queued; False if the deadline passed or
        the listener stopped with nothing queued."""
        while not self._queue:
            if self._stopped:
                return False
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._ready.wait(remaining)
        return True

    def stop(self):
        self._teardown(drain=True)

    def cleanup(self):
        self._cleaned_up = True
        self._teardown(drain=False)

    def _teardown(self, drain):
        """Unregister, drain if asked, stop delivering, close the socket, whatever is raised
        meanwhile (a second SIGINT during the drain, say). One thread does it; another that
        comes meanwhile waits for it to finish, and a cleanup first cuts its drain short."""
        inside = self._receiver.in_reading_task()
        with self._ready:
            first = not self._leaving
            self._leaving = True
            self._ready.notify_all()  # ends _await_visible's pause
        if not first:
            if not drain:
                self._receiver.stop()  # the task reads the stop token and ends the drain
            wait = _TEARDOWN_WAIT + (self._drain_timeout if drain else 0.0)
            if not inside and not self._torn_down.wait(wait):
                LOG.error("%s: the stop in progress did not finish within %gs", self._name, wait)
            return
        try:
            registered, self._registered = self._registered, []
            for topic, host in registered:
                try:
                    self._matchmaker.unregister(topic, host)
                except Exception:  # best effort: the registry expires it within its TTL anyway
                    LOG.warning("%s: could not unregister %s", self._name, topic, exc_info=True)
            if drain and self._drain_timeout > 0:
                # Messages go on being delivered (from the receiving task) until it returns.
                self._receiver.stop(quiet=DRAIN_QUIET, timeout=self._drain_timeout)
        finally:
            try:
                with self._ready:
                    self._stopped = True
                    self._ready.notify_all()
                self._receiver.stop()  # no-op after a drain; else ends the task now
            finally:
                self._torn_down.set()


class PushListener(base.Listener):
    """The oslo.messaging Listener for batches of one: each message goes to oslo's callback
    from the receiving task (see the module docstring). Wraps a started :class:`ZmqListener`;
    after :meth:`stop` returns, the callback is not called again.
    """

    def __init__(self, listener):
        super().__init__(batch_size=1, batch_timeout=None)
        self._listener = listener

    def start(self, on_incoming_callback):
        super().start(on_incoming_callback)
        self._listener.push_to(lambda message: on_incoming_callback([message]))

    def stop(self):
        self._listener.stop()
        super().stop()

    def cleanup(self):
        self._listener.cleanup()
