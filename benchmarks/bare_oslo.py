"""oslo.messaging over the thinnest zmq transport there can be: what oslo itself costs.

A driver's call cannot be cheaper than oslo.messaging's own work around it: the RPC client
(preparing the message, its tracing and metrics hooks), the server's executor hand-off and its
dispatcher. This module measures that bound side by side with ``zmq://`` and ``rabbit://``: an
oslo RPC client and server (the same ``echo``/``count`` endpoints, the same threading executor)
joined by a transport that does nothing but move bytes, with the socket pattern of ``zmq://``:

- the client sends msgpack'd ``[id, ctxt, message, wants_reply]`` on a DEALER to the server's
  ROUTER and, for a call, reads ``[id, result]`` from a ROUTER of its own in the calling
  thread (like a lone ``zmq://`` call, which reads its own reply);
- the server's reading thread hands each request to oslo's ``on_incoming`` (so to its
  executor), and the worker sends the reply through one DEALER, under a lock.

Nothing else: no matchmaker lookup, no validation of what arrives, no request ids worth the
name, one calling thread only, no monitoring, no failures sent back. It is a measuring device,
not a driver: :class:`BareSide` (this process) and :func:`server_main` (the ``bare_oslo_server``
role) only work with each other. Both wire oslo's ``fake://`` transport to these sockets by
replacing its driver's ``send`` and ``listen``, as :class:`benchmarks.oslo_rpc.DispatchCeiling`
does.
"""

import itertools
import threading

import msgpack

from benchmarks import oslo_rpc, servers

__all__ = ["BareSide", "server_main"]

#: How long either end waits for a message before giving up (the server: before it checks
#: whether it was stopped).
_RECEIVE_TIMEOUT_MS = 10_000
_POLL_STOP_MS = 200


class BareSide(oslo_rpc.Side):
    """The client end and its ``bare_oslo_server`` child; the interface of :class:`Side`."""

    def __init__(self, name="bare", call_timeout=10):
        import oslo_messaging as om
        import zmq
        from oslo_config import cfg
        self.name = name
        self.transport = self.server = None
        self._context = zmq.Context()
        self._out = self._context.socket(zmq.DEALER)
        self._replies = self._context.socket(zmq.ROUTER)
        try:
            for socket in (self._out, self._replies):
                socket.setsockopt(zmq.LINGER, 0)
            self._replies.RCVTIMEO = _RECEIVE_TIMEOUT_MS
            reply_port = self._replies.bind_to_random_port("tcp://127.0.0.1")
            port = servers.free_port()
            self.server = servers.start_role("bare_oslo_server", port, reply_port, name=f"{name}-server",
                                             stdin=True, timeout=60)
            self._out.connect(f"tcp://127.0.0.1:{port}")
            self.transport = om.get_rpc_transport(cfg.CONF, url="fake:///")
            self.transport._driver.send = self._send
            self.client = om.get_rpc_client(self.transport, om.Target(topic=oslo_rpc.TOPIC), timeout=call_timeout)
        except BaseException:
            self.close()
            raise
        self._ids = itertools.count()

    def _send(self, target, ctxt, message, wait_for_reply=None, timeout=None, call_monitor_timeout=None,
              retry=None, transport_options=None):
        """The driver's ``send``, with nothing in it but the bytes."""
        msg_id = next(self._ids)
        self._out.send(msgpack.packb([msg_id, ctxt, message, bool(wait_for_reply)]))
        if not wait_for_reply:
            return None
        while True:  # a reply to an earlier call that timed out is skipped
            _identity, frame = self._replies.recv_multipart()
            reply_id, result = msgpack.unpackb(frame)
            if reply_id == msg_id:
                return result

    def close(self):
        try:
            if self.server is not None:
                super().close()
        finally:
            for socket in (self._out, self._replies):
                socket.close()
            self._context.term()


def server_main(port, reply_port):
    """The ``bare_oslo_server`` role: :func:`benchmarks.oslo_rpc.serve` over a fake transport
    whose listener reads 127.0.0.1:``port`` and replies to 127.0.0.1:``reply_port``."""
    import oslo_messaging as om
    from oslo_config import cfg
    oslo_rpc.configure()
    transport = om.get_rpc_transport(cfg.CONF, url="fake:///")
    listener = _listener_class()(int(port), int(reply_port))
    transport._driver.listen = lambda *args, **kwargs: listener
    try:
        oslo_rpc.serve(transport)
    finally:
        listener.cleanup()


def _listener_class():
    """The server's listener class (oslo.messaging is imported only when a server is made)."""
    import zmq
    from oslo_messaging._drivers import base

    Message = oslo_rpc.incoming_message_class()

    class Listener(base.Listener):
        """Reads requests in its own thread from the moment oslo starts it until it is stopped."""

        def __init__(self, port, reply_port):
            super().__init__(1, None)
            self._context = zmq.Context()
            self._socket = self._context.socket(zmq.ROUTER)
            self._out = self._context.socket(zmq.DEALER)
            for socket in (self._socket, self._out):
                socket.setsockopt(zmq.LINGER, 0)
            self._socket.RCVTIMEO = _POLL_STOP_MS
            self._socket.bind(f"tcp://127.0.0.1:{port}")
            self._out.connect(f"tcp://127.0.0.1:{reply_port}")
            self._out_lock = threading.Lock()  # the executor's workers share it, as zmq://'s outbox
            self._stopped = threading.Event()
            self._thread = None

        def start(self, on_incoming_callback):
            super().start(on_incoming_callback)
            self._thread = threading.Thread(target=self._read, args=(on_incoming_callback,), daemon=True)
            self._thread.start()

        def _read(self, on_incoming):
            unpackb, reply = msgpack.unpackb, self._reply
            while not self._stopped.is_set():
                try:
                    _identity, frame = self._socket.recv_multipart()
                except zmq.Again:
                    continue
                msg_id, ctxt, body, wants_reply = unpackb(frame)
                on_incoming([Message(ctxt, body, msg_id, reply if wants_reply else None)])

        def _reply(self, msg_id, result):
            frame = msgpack.packb([msg_id, result])
            with self._out_lock:
                self._out.send(frame)

        def stop(self):
            self._stopped.set()
            if self._thread is not None:
                self._thread.join(_POLL_STOP_MS / 1000 * 10)

        def cleanup(self):
            self.stop()
            if self._context is not None:
                self._socket.close()
                self._out.close()
                self._context.term()
                self._context = None

    return Listener
