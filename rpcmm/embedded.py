"""The per-machine registry that ``zmq://`` (no host) shares: served by whoever can bind it.

Every process on a machine that uses the zero-configuration form agrees on one loopback
endpoint (``127.0.0.1:<embedded port>``) and uses it as its only registry. Each process also
runs an :class:`EmbeddedRegistry`: it tries to bind that endpoint with an in-process
:class:`~rpcmm.server.RegistryServer` at start, and again every ``retry_interval`` seconds
while it does not serve. Binding succeeds for exactly one process at a time (the port is
the lock), so:

- the first process to need the registry serves it, the others use it;
- when that process exits (even with kill -9, which frees the port), the next one to retry
  binds it within ``retry_interval`` seconds and serves an empty table, and every process's
  next heartbeat (they carry full topic sets) re-announces all of its registrations. Nobody's
  registrations are lost; lookups in the gap fall back to the matchmaker's cached answers.

Lifecycle: the constructor does nothing; :meth:`start` makes one attempt at once (so the
first process serves before its first lookup) and starts the retry task; :meth:`stop` stops
the task and the server, if this process served it. Thread-safe.
"""

import logging

from rpcmm.addressing import Endpoint
from rpcmm.errors import EndpointInUse, LifecycleError
from rpcmm.runtime import default_runtime
from rpcmm.server import RegistryServer

__all__ = ["EmbeddedRegistry", "DEFAULT_RETRY_INTERVAL"]

LOG = logging.getLogger(__name__)

#: Seconds between two attempts to take the registry over; with the default heartbeat
#: interval (1 s) a takeover and the re-announcements that follow take about two seconds.
DEFAULT_RETRY_INTERVAL = 0.5


class EmbeddedRegistry:
    """Serve ``endpoint`` (an :class:`~rpcmm.addressing.Endpoint` or ``"host:port"`` on
    loopback) from this process whenever no other process does.

    ``curve`` (a :class:`~rpcmm.security.LoadedCurveServerConfig`) secures the server.
    ``server_factory`` makes the server (a test seam; RegistryServer by default). Each server
    makes and terms its own zmq context: it runs on a native thread with plain pyzmq (see
    :mod:`rpcmm.runtime`), so it must not share a caller's context, which may be green.
    """

    def __init__(self, endpoint, runtime=None, retry_interval=DEFAULT_RETRY_INTERVAL,
                 server_factory=RegistryServer, curve=None):
        self.endpoint = endpoint if isinstance(endpoint, Endpoint) else Endpoint.parse(endpoint)
        if self.endpoint.port == 0:
            raise ValueError("the embedded registry needs a fixed port every process agrees on")
        self.runtime = runtime if runtime is not None else default_runtime()
        self._retry_interval = retry_interval
        self._server_factory = server_factory
        self._curve = curve
        self._lock = self.runtime.lock()
        self._stopping = self.runtime.event()
        self._server = None
        self._task = None
        self.takeovers = 0  # how many times this process started serving

    @property
    def serving(self):
        """True while this process serves the registry."""
        return self._server is not None

    def start(self):
        if self._task is not None:
            raise LifecycleError("an EmbeddedRegistry starts once")
        self.try_serve()
        self._task = self.runtime.spawn(self._retry, name=f"rpcmm-embedded-{self.endpoint.port}")
        return self

    def stop(self, timeout=5.0):
        """Stop retrying and stop serving; idempotent. Other processes take over."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            task.join(timeout)
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.stop()
            LOG.info("stopped serving the embedded registry on %s", self.endpoint)

    def try_serve(self):
        """One attempt to bind the endpoint; True if this process serves it (now or already)."""
        with self._lock:
            if self._server is not None:
                return True
            if self._stopping.is_set():
                return False
            kwargs = {} if self._curve is None else {"curve": self._curve}
            server = self._server_factory(self.endpoint, runtime=self.runtime, **kwargs)
            try:
                server.start()
            except EndpointInUse:
                return False  # someone else serves it: the normal case
            self._server = server
            self.takeovers += 1
        LOG.info("serving the embedded registry on %s", self.endpoint)
        return True

    def _retry(self):
        while not self._stopping.wait(self._retry_interval):
            try:
                self.try_serve()
            except Exception:  # e.g. an unexpected bind error: keep using whoever serves
                LOG.exception("could not try to serve the embedded registry on %s", self.endpoint)
