"""The one concurrency seam: plain threads, or eventlet when the process is monkey-patched.

Everything in rpcmm that blocks (zmq sockets, background loops, events, locks) gets its
primitives from a :class:`Runtime`, and only :func:`default_runtime` decides which one a process
uses. Under eventlet the threading primitives are already green once ``eventlet.monkey_patch()``
ran, so the only difference that matters is the zmq binding: eventlet's own
``eventlet.green.zmq`` (pyzmq's ``zmq.green`` is gevent's and does not work under eventlet).
"""

import sys
import threading

__all__ = ["Runtime", "THREADING", "default_runtime", "eventlet_runtime"]


class Runtime:
    """Concurrency primitives for one process.

    ``zmq`` is the zmq module to make contexts and sockets with; ``spawn(fn, name)`` starts
    ``fn`` in the background and returns an object with ``join(timeout)`` and ``is_alive()``.
    """

    def __init__(self, name, zmq_module):
        self.name = name
        self.zmq = zmq_module

    def spawn(self, fn, name):
        thread = threading.Thread(target=fn, name=name, daemon=True)
        thread.start()
        return thread

    def event(self):
        return threading.Event()

    def lock(self):
        return threading.Lock()

    def new_context(self):
        """A new zmq context of this runtime's binding; the caller owns and terms it."""
        return self.zmq.Context()

    def __repr__(self):
        return f"<Runtime {self.name}>"


def _threading_runtime():
    import zmq

    return Runtime("threading", zmq)


THREADING = _threading_runtime()
_eventlet = None


def eventlet_runtime():
    """The eventlet runtime; only meaningful after ``eventlet.monkey_patch()``."""
    global _eventlet
    if _eventlet is None:
        from eventlet.green import zmq as green_zmq

        _eventlet = Runtime("eventlet", green_zmq)
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
