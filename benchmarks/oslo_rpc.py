"""oslo.messaging RPC call and cast over rabbit:// (the anchor) and rpcmm's zmq://, side by side.

Both transports are measured by the same code, the shape of ``05_rabbit_oslo.py``: per
transport an RPC server (``executor='threading'``) in a child process and a client here
(:class:`Side`). The machine is a shared VM whose speed drifts by up to 2x over tens of
seconds, so the transports are not measured one after the other: every server is started
first (RabbitMQ, the zmq registry, one oslo server child per transport), both clients are
warmed up, and then the section alternates between them (see ``oslo_section`` in
:mod:`benchmarks.main`):

- calls: blocks of ``echo`` round trips, rabbit then zmq then rabbit ... (via
  :func:`benchmarks.measure.interleaved`), until each has its count of samples; each side's
  percentiles are taken over its pooled samples (each block starts with one untimed call,
  see :meth:`Side.take`);
- casts: bursts in turn (rabbit, zmq, dispatch ceiling, rabbit, ...). A burst is a ``reset``
  call announcing ``n``, ``n`` ``cast()`` and the server's ``CASTS_DONE <time>`` line once it
  processed the last one; its throughput is ``n`` over the time from the first cast to that
  line (:meth:`Side.cast_burst`). The median burst is quoted. A burst is thousands of casts
  (half a second over zmq://, a few seconds over RabbitMQ): 300 casts took under 0.1 s, which
  measured mostly noise.

:class:`DispatchCeiling` is the most messages per second oslo.messaging's own threading
executor dispatches on this machine with no driver at all: a fake transport whose listener
hands pre-built messages straight to the server's ``on_incoming`` callback. No driver's cast
throughput can exceed it, so it says at once how far above RabbitMQ a driver can get. Its
counterpart for calls, the call floor, is :class:`benchmarks.anchors.HandoffRoundTrip` (a raw
zmq round trip with the executor's hand-off), sized by :func:`call_frame_sizes`.

oslo.messaging 18.3 registers its tracing options on the global ``cfg.CONF`` only, so a
private ``cfg.ConfigOpts()`` fails at call time (``NoSuchOptError``): every process parses
``cfg.CONF`` once (:func:`configure`), here with the zmq config file; the rabbit driver
ignores its ``[rpcmm]`` group, so both transports live in this one process.
"""

import contextlib
import importlib
import os
import subprocess
import sys
import threading
import time

from benchmarks import servers

__all__ = ["TOPIC", "DispatchCeiling", "EventletCeiling", "Side", "call_frame_sizes", "configure", "driver_status",
           "eventlet_ceiling_main", "incoming_message_class", "serve", "server_main", "write_zmq_config"]

TOPIC = "rpcmmbench"


def driver_status():
    """None if ``transport_url = zmq://`` can be used, else why not."""
    try:
        importlib.import_module("oslo_messaging")
    except ImportError:
        return "oslo.messaging not installed (pip install oslo.messaging)"
    try:
        importlib.import_module("rpcmm.oslo.driver")
    except ImportError as exc:
        return f"not available yet (rpcmm.oslo.driver does not import: {exc})"
    return None


def write_zmq_config(endpoint, name):
    """Write a seed naming the registry at ``endpoint`` and an oslo config file pointing
    ``[rpcmm] seed_file`` at it, both in the benchmark's log directory; the config's path."""
    conf_path = os.path.join(servers.LOG_DIR, f"{name}.conf")
    seed_path = os.path.join(servers.LOG_DIR, f"{name}-seed.json")
    with open(seed_path, "w") as f:
        f.write(f'{{"rpcmm-registry": ["{endpoint}"]}}\n')
    with open(conf_path, "w") as f:
        f.write(f"[rpcmm]\nseed_file = {seed_path}\n")
    return conf_path


def configure(config_file=None):
    """Parse the global ``cfg.CONF`` (see the module docstring); returns it."""
    from oslo_config import cfg
    conf = cfg.CONF
    conf(["--config-file", config_file] if config_file else [], project="rpcmm-bench")
    return conf


def server_main(url, config_file=None):
    """The child process: an RPC server on ``url`` (see :func:`serve`)."""
    import oslo_messaging as om
    conf = configure(config_file)
    serve(om.get_rpc_transport(conf, url=url))


def serve(transport):
    """Run an RPC server on ``transport`` with ``echo`` (calls) and ``count`` (casts) endpoints.

    It prints READY, ``CASTS_DONE <time>`` when the announced number of casts arrived, and stops
    (and cleans the transport up) when its stdin closes or says anything.
    """
    import oslo_messaging as om
    lock = threading.Lock()
    state = {"casts": 0, "target": None}

    class Endpoint:
        def echo(self, ctxt, x):
            return x

        def reset(self, ctxt, n):
            with lock:
                state["casts"], state["target"] = 0, n
            return True

        def count(self, ctxt, x):
            with lock:
                state["casts"] += 1
                if state["casts"] == state["target"]:
                    print(f"CASTS_DONE {time.time():.6f}", flush=True)

    server = om.get_rpc_server(transport, om.Target(topic=TOPIC, server="s1"), [Endpoint()],
                               executor="threading", access_policy=om.DefaultRPCAccessPolicy)
    server.start()
    print("READY", flush=True)
    try:
        sys.stdin.readline()
    finally:
        server.stop()
        server.wait()
        transport.cleanup()


def _read_done(server, timeout):
    """The time the server reported its last cast, within ``timeout`` seconds."""
    line = servers.read_line(server.popen, timeout, "the oslo server, waiting for its casts,")
    if not line.startswith("CASTS_DONE"):
        raise RuntimeError(f"oslo server said {line!r}")
    return float(line.split()[1])


class Side:
    """One transport under test: its RPC server child and an RPC client in this process.

    ``cfg.CONF`` must be parsed (:func:`configure`) before. :meth:`close` stops both.
    """

    def __init__(self, name, url, config_file=None, call_timeout=10):
        import oslo_messaging as om
        from oslo_config import cfg
        self.name = name
        self.transport = None
        self.server = servers.start_role("oslo_server", url, *([config_file] if config_file else []),
                                         name=f"{name}-server", stdin=True, timeout=60)
        try:
            self.transport = om.get_rpc_transport(cfg.CONF, url=url)
            self.client = om.get_rpc_client(self.transport, om.Target(topic=TOPIC), timeout=call_timeout)
        except BaseException:
            self.close()
            raise

    def warm_up(self, n):
        """One call (the first, returned in seconds: connection and lookup), then ``n`` more."""
        t = time.perf_counter()
        self.client.call({}, "echo", x=0)
        first = time.perf_counter() - t
        self.take(n)
        return first

    def take(self, k):
        """Nanoseconds of ``k`` ``echo`` call round trips, one after the other.

        One untimed call goes first: in alternating blocks, the first call after the other
        transport's block pays for the switch (caches, sleeping threads, RabbitMQ's schedulers),
        1.3-2x a call's median here, which is the benchmark's doing, not the transport's.
        """
        pc, call = time.perf_counter_ns, self.client.call
        if k:
            call({}, "echo", x=-1)
        lat = [0] * k
        for i in range(k):
            t0 = pc()
            if call({}, "echo", x=i) != i:
                raise RuntimeError(f"{self.name}: echo returned a wrong value")
            lat[i] = pc() - t0
        return lat

    def cast_burst(self, n, timeout):
        """``{"cast_per_s", "cast_sent_per_s"}`` of ``n`` casts: processed by the server (from
        the first cast to its CASTS_DONE line) and sent by this client's loop."""
        self.client.call({}, "reset", n=n)
        cast = self.client.cast
        t0 = time.time()
        for i in range(n):
            cast({}, "count", x=i)
        sent = time.time()
        done = _read_done(self.server, timeout)
        return {"cast_per_s": n / (done - t0), "cast_sent_per_s": n / (sent - t0)}

    def close(self):
        try:
            if self.transport is not None:
                self.transport.cleanup()
                self.transport = None
        finally:
            with contextlib.suppress(OSError, ValueError, subprocess.TimeoutExpired):
                self.server.popen.stdin.write("stop\n")  # a clean stop: it unregisters
                self.server.popen.stdin.flush()
                self.server.popen.wait(timeout=30)
            self.server.stop()


class EventletCeiling:
    """:class:`DispatchCeiling` with oslo's ``eventlet`` executor, in a child process that
    eventlet monkey-patched first (the ``eventlet_ceiling`` role, :func:`eventlet_ceiling_main`).
    :meth:`take` asks it for one burst; :meth:`close` stops it."""

    def __init__(self):
        self.server = servers.start_role("eventlet_ceiling", name="eventlet-ceiling", stdin=True, timeout=60)

    def take(self, n, timeout):
        """Messages per second dispatched, ``n`` of them, within ``timeout`` seconds."""
        self.server.popen.stdin.write(f"{int(n)} {timeout:g}\n")
        self.server.popen.stdin.flush()
        line = servers.read_line(self.server.popen, timeout + 10, "eventlet_ceiling")
        if not line.startswith("RATE "):
            raise RuntimeError(f"eventlet_ceiling said {line!r}")
        return float(line.split()[1])

    def close(self):
        with contextlib.suppress(OSError, ValueError):
            self.server.popen.stdin.close()  # it stops at the end of its input
        self.server.stop()


def eventlet_ceiling_main():
    """The ``eventlet_ceiling`` role: READY, then for each ``N TIMEOUT`` line on stdin one
    :meth:`DispatchCeiling.take` with the eventlet executor, answered ``RATE <messages/s>``."""
    import eventlet
    eventlet.monkey_patch()
    configure()
    ceiling = DispatchCeiling(executor="eventlet")
    try:
        print("READY", flush=True)
        for line in sys.stdin:
            n, timeout = line.split()
            print(f"RATE {ceiling.take(int(n), float(timeout)):.1f}", flush=True)
    finally:
        ceiling.close()


def call_frame_sizes(side):
    """Bytes of an ``echo`` call's request and of its reply as the zmq:// ``side`` sends them:
    the request taken from the driver's outbox during one call, the reply encoded for its id."""
    from rpcmm.oslo import wire
    outbox = side.transport._driver._outbox
    sent = []
    send = outbox.send

    def recording(address, frames):
        sent.append(frames)
        return send(address, frames)

    outbox.send = recording
    try:
        side.client.call({}, "echo", x=12345)
    finally:
        del outbox.send  # the class's method again
    (frame,) = sent[-1]
    request = wire.decode([frame])
    (reply,) = wire.encode(wire.Reply(request.msg_id, result=12345))
    return len(frame), len(reply)


def incoming_message_class():
    """An incoming message class for a server with no real driver: acknowledging, requeueing
    and beating do nothing; ``reply`` passes ``(msg_id, result)`` to the ``reply`` callable the
    message was made with, if any (``Message(ctxt, message, msg_id=None, reply=None)``)."""
    from oslo_messaging._drivers import base

    class Message(base.RpcIncomingMessage):
        def __init__(self, ctxt, message, msg_id=None, reply=None):
            super().__init__(ctxt, message, msg_id=msg_id)
            self._reply = reply

        def reply(self, reply=None, failure=None):
            if self._reply is not None:
                self._reply(self.msg_id, reply)

        def acknowledge(self):
            pass

        def requeue(self):
            pass

        def heartbeat(self):
            pass

    return Message


class DispatchCeiling:
    """oslo.messaging's server dispatch with no transport: messages/s of its executor.

    A fake transport (``fake:///``) whose driver's ``listen`` returns a trivial listener, so
    the RPC server (``executor='threading'`` by default, the same as the measured servers;
    ``'eventlet'`` only in a monkey-patched process, see :class:`EventletCeiling`) hands us its
    ``on_incoming`` callback; :meth:`take` feeds it ``n`` pre-built cast messages, one per
    call, and times them until the endpoint (a ``count`` behind a lock, like the servers')
    counted the last. ``cfg.CONF`` must be parsed; :meth:`close` stops the server.
    """

    def __init__(self, topic=TOPIC + "-ceiling", executor="threading"):
        import oslo_messaging as om
        from oslo_config import cfg
        from oslo_messaging._drivers import base

        Message = incoming_message_class()

        class Listener(base.Listener):
            def __init__(self):
                super().__init__(1, None)

            def cleanup(self):
                pass

        lock = threading.Lock()
        self._state = state = {"count": 0, "target": None, "done": threading.Event()}

        class Endpoint:
            def count(self, ctxt, x):
                with lock:
                    state["count"] += 1
                    if state["count"] == state["target"]:
                        state["done"].set()

        self._message = Message
        self._lock = lock
        self.server = None
        self.transport = om.get_rpc_transport(cfg.CONF, url="fake:///")
        try:
            listener = Listener()
            self.transport._driver.listen = lambda *args, **kwargs: listener
            self.server = om.get_rpc_server(self.transport, om.Target(topic=topic, server="c1"), [Endpoint()],
                                            executor=executor, access_policy=om.DefaultRPCAccessPolicy)
            self.server.start()
            self._feed = listener.on_incoming_callback
            if self._feed is None:
                raise RuntimeError("the RPC server did not start its listener")
        except BaseException:
            self.close()
            raise

    def take(self, n, timeout):
        """Messages per second dispatched, ``n`` of them, within ``timeout`` seconds."""
        msgs = [self._message({}, {"method": "count", "args": {"x": i}}) for i in range(n)]
        done = threading.Event()
        with self._lock:
            self._state.update(count=0, target=n, done=done)
        feed = self._feed
        t0 = time.perf_counter()
        for m in msgs:
            feed([m])
        if not done.wait(timeout):
            raise TimeoutError(f"dispatch ceiling: {self._state['count']} of {n} dispatched in {timeout:g}s")
        return n / (time.perf_counter() - t0)

    def close(self):
        try:
            if self.server is not None:
                self.server.stop()
                self.server.wait()
                self.server = None
        finally:
            self.transport.cleanup()
