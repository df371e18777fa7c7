"""The ``zmq`` oslo.messaging driver: brokerless RPC and notifications, peers found by rpcmm.

Select it with ``transport_url = zmq://`` (see :mod:`rpcmm.oslo.discovery` for the URL forms
and ``doc/oslo-driver.rst`` for the whole story). How a message travels:

1. The sender turns the oslo Target into a typed rpcmm lookup (:mod:`rpcmm.oslo.names`):
   ``Anycast`` of the topic for a call or cast (strict round robin over the topic's servers),
   ``Anycast`` of the (topic, server) name for a named server, ``Fanout`` of the topic for a
   fanout cast, ``Fanout`` of the notification topic (then one member of each pool).
2. It sends the request (:mod:`rpcmm.oslo.wire`) from its :class:`~rpcmm.oslo.peers.Outbox`
   to the listener's own socket, whose ``host:port`` is the registered host name.
3. A call carries the caller's reply address; the server replies there, and the caller's
   :class:`~rpcmm.oslo.calls.PendingCalls` matches the reply to its call (waiting callers
   read the reply socket themselves, one at a time).

Lifecycle: building the driver (oslo does it in ``get_transport``) registers the options and
does nothing else. The first ``send``/``listen`` starts it: a zmq context, the matchmaker and
its heartbeat, the embedded registry for ``zmq://``, the outbox. :meth:`ZmqDriver.cleanup`
stops every listener still running (unregistering it), the matchmaker (unregistering the
rest), the embedded registry and the sockets, and terms the context. Every public method is
thread-safe; under eventlet the same code runs on green threads (:mod:`rpcmm.runtime`).
"""

import collections
import functools
import itertools
import logging
import time
import uuid
import weakref

import oslo_messaging
from oslo_messaging._drivers import base
from oslo_messaging._drivers import common as rpc_common

from rpcmm.addressing import Anycast, Fanout
from rpcmm.embedded import EmbeddedRegistry
from rpcmm.errors import (
    ConfigurationError,
    LifecycleError,
    ProtocolError,
    RegistryUnavailable,
)
from rpcmm.factory import matchmaker_for_seed
from rpcmm.matchmaker import MAX_ROTATIONS
from rpcmm.logutil import RateLimitedLogger
from rpcmm.oslo import wire
from rpcmm.oslo.calls import CallCancelled, CallTimedOut, PendingCalls
from rpcmm.oslo.discovery import plan_for
from rpcmm.oslo.keys import load_transport_keys
from rpcmm.oslo.listener import PushListener, ZmqListener
from rpcmm.oslo.names import NotifyTopic, PoolMember, RpcServer, RpcTopic
from rpcmm.oslo.options import register_opts
from rpcmm.oslo.peers import MessageTooLarge, Outbox, PeerBusy
from rpcmm.runtime import default_runtime
from rpcmm.security import CurveAuthenticator
from rpcmm.timing import HeartbeatTiming

__all__ = ["ZmqDriver"]

LOG = logging.getLogger(__name__)

#: Bind addresses that mean "every interface", which peers cannot connect to.
_WILDCARDS = frozenset({"0.0.0.0", "::", "*"})
#: First and longest pause between two lookups while a call waits for a server to appear.
_FIRST_RETRY = 0.01
_LONGEST_RETRY = 0.25


class TransportCleanedUp(oslo_messaging.MessagingException, LifecycleError):
    """Listening on a transport that was cleaned up: an oslo.messaging error, so oslo callers
    catch it as they catch every other. (Not TransportDriverError, which oslo's server would
    turn into ServerListenError: oslo.messaging 18.3 fails doing so, with an AttributeError.)"""


class ZmqDriver(base.BaseDriver):
    """oslo.messaging's ``zmq`` driver; see the module docstring.

    ``matchmaker_factory(seed, **kwargs)`` makes the matchmaker (a test seam; by default the
    registry backend for a seed that lists registries, else the static ring).
    """

    def __init__(self, conf, url, default_exchange=None, allowed_remote_exmods=None,
                 matchmaker_factory=matchmaker_for_seed):
        super().__init__(conf, url, default_exchange, allowed_remote_exmods)
        self._options = register_opts(conf)
        self._matchmaker_factory = matchmaker_factory
        self._runtime = default_runtime()
        self._lock = self._runtime.lock()
        self._closing = self._runtime.event()
        self._started = False
        self._context = None
        self._embedded = None
        self._keys = None
        self._authenticator = None
        self._matchmaker = None
        self._outbox = None
        self._calls = None
        self._listeners = weakref.WeakSet()
        self._rotations = collections.defaultdict(itertools.count)  # (topic, pool) -> counter
        # Request ids: unique per driver is enough (replies come back to this driver's own
        # socket), and a counter is much cheaper than a uuid per message.
        self._id_prefix = uuid.uuid4().hex[:12]
        self._ids = itertools.count()
        # Senders log through it from any thread; the logger itself is not thread-safe.
        self._undelivered = RateLimitedLogger(LOG, period=5.0)
        self._undelivered_lock = self._runtime.lock()

    # -- lifecycle -----------------------------------------------------------------------------

    def _start(self):
        """Start everything on first use; returns the matchmaker. Raises LifecycleError after
        cleanup, ConfigurationError/SeedError for bad options."""
        matchmaker = self._matchmaker
        if self._started and matchmaker is not None and not self._closing.is_set():
            # Every send comes here: once started, no lock (the fields are written once, under
            # the lock, before _started; a cleanup racing this send fails it in the outbox).
            return matchmaker
        with self._lock:
            if self._closing.is_set():
                raise LifecycleError("this zmq transport has been cleaned up")
            if self._started:
                return self._matchmaker
            options = self._options
            if options.listen_host in _WILDCARDS and not options.advertise_host:
                raise ConfigurationError(
                    f"[rpcmm] listen_host = {options.listen_host} needs advertise_host: peers "
                    "must be told an address they can reach")
            plan = plan_for(self._url, options)
            timing = HeartbeatTiming(options.heartbeat_interval, options.heartbeat_ttl)
            keys = self._keys = load_transport_keys(options, embedded=plan.embedded is not None)
            self._context = self._runtime.new_context()
            try:
                if keys is not None:
                    # ZAP is per context: one handler admits callers to every listening socket.
                    self._authenticator = CurveAuthenticator(
                        self._context, keys.listen.authorized_keys, runtime=self._runtime).start()
                if plan.embedded is not None:
                    self._embedded = EmbeddedRegistry(
                        plan.embedded, runtime=self._runtime, curve=keys and keys.listen).start()
                curve = {} if keys is None else {"curve": keys.registry}
                self._matchmaker = self._matchmaker_factory(
                    plan.seed, timing=timing, lookup_timeout=options.lookup_timeout,
                    cache_max_age=options.cache_max_age, runtime=self._runtime,
                    context=self._context, **curve)
                self._matchmaker.start()
                self._matchmaker.start_heartbeat()
                self._outbox = Outbox(self._context, self._runtime, options.max_peers,
                                      curve=keys and keys.connect, max_message_bytes=options.max_message_bytes)
            except BaseException:
                self._release()
                raise
            self._started = True
            return self._matchmaker

    def _pending_calls(self):
        """The reply socket and its waiting calls, started on the first call."""
        calls = self._calls
        if calls is not None:
            return calls
        with self._lock:
            if self._calls is None:
                if self._closing.is_set():
                    raise LifecycleError("this zmq transport has been cleaned up")
                options = self._options
                self._calls = PendingCalls(
                    self._context, self._runtime, options.listen_host,
                    options.advertise_host or options.listen_host, options.max_message_bytes,
                    curve=self._keys and self._keys.listen,
                ).start()
            return self._calls

    def cleanup(self):
        """Unregister and close everything; idempotent. Calls still waiting fail at once."""
        with self._lock:
            if self._closing.is_set():
                return
            self._closing.set()
            listeners = list(self._listeners)
        for listener in listeners:
            listener.cleanup()
        with self._lock:
            self._release()

    def _release(self):
        """Under the lock: stop what was started, in dependency order, then term the context."""
        for attribute, release in (("_calls", "stop"), ("_outbox", "close"),
                                   ("_matchmaker", "stop"), ("_embedded", "stop"),
                                   ("_authenticator", "stop"), ("_context", "term")):
            part = getattr(self, attribute)
            if attribute != "_outbox":
                # The closed outbox stays, so a send racing cleanup gets its LifecycleError.
                setattr(self, attribute, None)
            if part is not None:
                getattr(part, release)()

    def require_features(self, requeue=False):
        """Every feature is there: a requeued message is sent back to the listener that got it."""

    # -- sending -------------------------------------------------------------------------------

    def _warn_undelivered(self, message, *args):
        with self._undelivered_lock:
            self._undelivered.log(message, *args)

    def _new_id(self):
        return f"{self._id_prefix}.{next(self._ids):x}"

    def _exchange(self, target):
        return target.exchange or self._default_exchange or "openstack"

    def send(self, target, ctxt, message, wait_for_reply=None, timeout=None,
             call_monitor_timeout=None, retry=None, transport_options=None):
        """A call (``wait_for_reply``) returns the result or raises the remote exception,
        MessagingTimeout when no reply came within ``timeout`` (also when nobody serves the
        topic), or MessageDeliveryFailure when the request could not be handed to zmq. A cast
        returns once the request is queued for every chosen peer. ``retry`` is not needed: a
        request is handed to zmq once and never resent, so it is never duplicated."""
        try:
            return self._send(target, ctxt, message, wait_for_reply, timeout, call_monitor_timeout)
        except LifecycleError as exc:  # cleaned up: fail as every other undeliverable send does
            raise oslo_messaging.MessageDeliveryFailure(str(exc)) from None

    def _send(self, target, ctxt, message, wait_for_reply, timeout, call_monitor_timeout):
        ctxt = _context_dict(ctxt)
        matchmaker = self._start()
        key = self._key_for(self._exchange(target), target.topic, target.server, target.fanout)
        if wait_for_reply:
            # As oslo's other drivers read it: no (or a zero) monitor timeout means no monitoring;
            # one beyond what the envelope carries is clamped to it.
            if not call_monitor_timeout or call_monitor_timeout <= 0:
                call_monitor_timeout = None
            else:
                call_monitor_timeout = min(call_monitor_timeout, wire.MAX_MONITOR_SECONDS)
            return self._call(matchmaker, key, target, ctxt, message, timeout, call_monitor_timeout)
        self._cast(matchmaker, key, target, ctxt, message)
        return None

    @staticmethod
    @functools.lru_cache(maxsize=4096)  # senders address the same few targets over and over
    def _key_for(exchange, topic, server, fanout):
        """The rpcmm lookup key of an oslo target."""
        if fanout:
            return Fanout(RpcTopic(exchange, topic).name)
        if server:
            return Anycast(RpcServer(exchange, topic, server).name)
        return Anycast(RpcTopic(exchange, topic).name)

    def _call(self, matchmaker, key, target, ctxt, message, timeout, monitor_timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        host = self._await_host(matchmaker, key, target, deadline, timeout)
        calls = self._pending_calls()
        msg_id = self._new_id()
        frames = wire.encode(wire.Request(msg_id, key.topic, ctxt, message, calls.address,
                                          monitor_timeout))
        try:
            slot = calls.expect(msg_id)
            self._outbox.send(host, frames)
        except (PeerBusy, MessageTooLarge, CallCancelled, LifecycleError) as exc:  # a full peer, or cleanup racing
            calls.forget(msg_id)
            raise oslo_messaging.MessageDeliveryFailure(str(exc)) from None
        except BaseException:
            calls.forget(msg_id)  # never leave a slot behind
            raise
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            reply = calls.wait(msg_id, slot, remaining, monitor_timeout)
        except CallTimedOut:
            raise oslo_messaging.MessagingTimeout(
                f"no reply from {host} for {message.get('method')!r} on topic {target.topic!r} "
                f"within {timeout:g}s" if timeout is not None else
                f"{host} stopped answering the monitored call {message.get('method')!r}"
            ) from None
        except CallCancelled as exc:
            raise oslo_messaging.MessageDeliveryFailure(str(exc)) from None
        if reply.failure is not None:
            raise rpc_common.deserialize_remote_exception(reply.failure, self._allowed_remote_exmods)
        return reply.result

    def _await_host(self, matchmaker, key, target, deadline, timeout):
        """One host for a call, looking up again (with growing pauses) until one serves the
        topic; MessagingTimeout at the deadline. A registry outage is waited out the same way
        (the matchmaker already falls back on cached answers)."""
        pause = _FIRST_RETRY
        while True:
            try:
                hosts = matchmaker.lookup(key)
            except RegistryUnavailable as exc:
                LOG.debug("lookup of %s failed: %s", key, exc)
                hosts = ()
            if hosts:
                return hosts[0]
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise oslo_messaging.MessagingTimeout(
                    f"nobody served topic {target.topic!r} (server {target.server!r}, exchange "
                    f"{self._exchange(target)!r}) within {timeout:g}s")
            if self._closing.wait(pause if remaining is None else min(pause, remaining)):
                raise oslo_messaging.MessageDeliveryFailure("the transport was cleaned up")
            pause = min(pause * 2, _LONGEST_RETRY)

    def _lookup_once(self, matchmaker, key):
        try:
            return matchmaker.lookup(key)
        except RegistryUnavailable as exc:
            raise oslo_messaging.MessageDeliveryFailure(str(exc)) from None

    def _cast(self, matchmaker, key, target, ctxt, message):
        hosts = self._lookup_once(matchmaker, key)
        if not hosts:
            self._warn_undelivered("cast %r to topic %r (server %r): nobody serves it; dropped",
                                  message.get("method"), target.topic, target.server)
            return
        frames = wire.encode(wire.Request(self._new_id(), key.topic, ctxt, message))
        self._deliver([(host,) for host in hosts], frames, what=f"cast {message.get('method')!r}",
                      must_deliver=not target.fanout)

    def _deliver(self, destinations, frames, what, must_deliver):
        """Hand ``frames`` to each destination: a sequence of addresses, of which the first
        that takes them gets them (a pool's other members stand in for a busy one). A
        destination none of whose addresses takes them fails the send if ``must_deliver``, else
        is logged."""
        for addresses in destinations:
            busy = None
            for address in addresses:
                try:
                    self._outbox.send(address, frames)
                    break
                except LifecycleError as exc:  # cleanup raced this send
                    raise oslo_messaging.MessageDeliveryFailure(str(exc)) from None
                except MessageTooLarge as exc:  # too large for every peer alike
                    raise oslo_messaging.MessageDeliveryFailure(f"{what}: {exc}") from None
                except PeerBusy as exc:
                    busy = exc
            else:
                if must_deliver:
                    raise oslo_messaging.MessageDeliveryFailure(str(busy)) from None
                self._warn_undelivered("%s not delivered to %s: %s", what, " or ".join(addresses), busy)

    def send_notification(self, target, ctxt, message, version, retry=None):
        """Send one copy to one listener of each pool of the topic (round robin in a pool).
        The message goes as it is, whatever ``version``: the envelope is this driver's own."""
        try:
            self._notify(target, _context_dict(ctxt), message)
        except LifecycleError as exc:
            raise oslo_messaging.MessageDeliveryFailure(str(exc)) from None

    def _notify(self, target, ctxt, message):
        matchmaker = self._start()
        topic = NotifyTopic(self._exchange(target), target.topic).name
        members = collections.defaultdict(list)
        for host in sorted(self._lookup_once(matchmaker, Fanout(topic))):
            try:
                pool, address = PoolMember.split(host)
            except ProtocolError as exc:
                self._warn_undelivered("ignoring registered host %r: %s", host, exc)
                continue
            members[pool].append(address)
        if not members:
            self._warn_undelivered("notification %r on %r: no listener; dropped",
                                  message.get("event_type"), target.topic)
            return
        rotations = self._rotations
        if len(rotations) >= MAX_ROTATIONS:  # one per (topic, pool) ever notified: keep it bounded
            rotations.clear()
        pools = []
        for pool, addresses in sorted(members.items()):
            first = next(rotations[(topic, pool)]) % len(addresses)
            pools.append(addresses[first:] + addresses[:first])  # the one in turn, then the rest
        frames = wire.encode(wire.Request(self._new_id(), topic, ctxt, message))
        self._deliver(pools, frames, what=f"notification {message.get('event_type')!r}",
                      must_deliver=False)

    # -- listening -----------------------------------------------------------------------------

    def listen(self, target, batch_size, batch_timeout):
        """Serve the target's topic (calls, casts, fanout) and, when it names a server, calls
        to that server; registered at once, unregistered when the listener stops."""
        exchange = self._exchange(target)
        topics = [RpcTopic(exchange, target.topic).name]
        if target.server:
            topics.append(RpcServer(exchange, target.topic, target.server).name)
        listener = self._listener(topics, lambda address: address,
                                  f"rpcmm-oslo-rpc-{target.topic}")
        return _oslo_listener(listener, batch_size, batch_timeout)

    def listen_for_notifications(self, targets_and_priorities, pool, batch_size, batch_timeout):
        """Receive ``<topic>.<priority>`` notifications as a member of ``pool`` (None or "": the
        default pool, as the rabbit driver reads it); each pool gets every message once."""
        topics = sorted({
            NotifyTopic(self._exchange(target), f"{target.topic}.{priority}").name
            for target, priority in targets_and_priorities
        })
        pool = pool or None
        listener = self._listener(topics, lambda address: PoolMember(pool, address).host,
                                  "rpcmm-oslo-notify")
        return _oslo_listener(listener, batch_size, batch_timeout)

    def _listener(self, topics, host_for, name):
        """A started ZmqListener; TransportCleanedUp after cleanup."""
        try:
            matchmaker = self._start()
            listener = ZmqListener(self._context, self._runtime, matchmaker, self._outbox, topics,
                                   host_for, self._options, name, curve=self._keys and self._keys.listen)
            with self._lock:
                if self._closing.is_set():
                    raise LifecycleError("this zmq transport has been cleaned up")
                self._listeners.add(listener)
        except LifecycleError as exc:
            raise TransportCleanedUp(str(exc)) from None
        return listener.start()


def _context_dict(ctxt):
    """The request context as the envelope carries it: a dict (``None`` is an empty one, as
    oslo's notifier reads it; an object with ``to_dict()`` is asked for one, as the rabbit
    driver does). Anything else is the caller's error, raised here rather than found by every
    receiver, which would drop the message."""
    if type(ctxt) is dict:
        return ctxt
    if ctxt is None:
        return {}
    to_dict = getattr(ctxt, "to_dict", None)
    if to_dict is not None:
        ctxt = to_dict()
    if not isinstance(ctxt, dict):
        raise TypeError(f"a request context must be a dict, not {type(ctxt).__name__}")
    return ctxt


def _oslo_listener(listener, batch_size, batch_timeout):
    """What oslo.messaging gets for a started ZmqListener: messages pushed from the receiving
    task for batches of one (no thread hand-off), else a polling thread that gathers batches."""
    if batch_size == 1:
        return PushListener(listener)
    return base.PollStyleListenerAdapter(listener, batch_size, batch_timeout)
