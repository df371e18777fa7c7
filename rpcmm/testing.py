"""Helpers for tests and the demo: waiting on conditions, and rpcmm processes to start and kill.

Shipped in the package (as nameko does) so that projects using rpcmm can write end-to-end
tests the same way. Nothing here sleeps to synchronise: :func:`wait_for` polls a condition
until it holds or a deadline passes, and process helpers wait for the line a process prints
once it is ready.
"""

import json
import os
import signal
import subprocess
import sys
import time

from rpcmm.addressing import Endpoint

__all__ = ["wait_for", "TimedOut", "RpcmmProcess", "start_registry", "start_register", "write_seed"]


class TimedOut(AssertionError):
    """A condition did not hold before its deadline."""


def wait_for(condition, timeout=5.0, poll=0.005, what=None):
    """Call ``condition()`` until it returns a true value and return that value.

    Raises TimedOut after ``timeout`` seconds. ``poll`` is the pause between two calls: this
    waits for a state to be reached, it is not a sleep standing in for synchronisation.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimedOut(f"{what or getattr(condition, '__name__', 'condition')} did not hold within {timeout:g}s")
        time.sleep(poll)


def write_seed(path, registries=(), ring=None):
    """Write a seed file listing ``registries`` (Endpoints or strings) and a static ``ring``."""
    document = {"rpcmm-registry": [str(e) for e in registries]} if registries else {}
    document.update(ring or {})
    with open(path, "w") as f:
        json.dump(document, f, indent=2)
    return path


class RpcmmProcess:
    """An ``rpcmm`` command running in a child process, with its ready line.

    The child runs ``python -m rpcmm ARGS`` (after ``prefix``, such as ``ip netns exec NS``)
    with stdout piped; :meth:`wait_ready` reads lines
    until one starts with ``ready_prefix``. Always :meth:`stop` or :meth:`kill` it (or use it
    as a context manager): nothing is left running.
    """

    def __init__(self, args, ready_prefix, env=None, stderr=None, prefix=()):
        self.args = list(args)
        self.ready_prefix = ready_prefix
        self.ready_line = None
        child_env = dict(os.environ if env is None else env)
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "rpcmm", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if stderr is None else stderr,
            stdin=subprocess.DEVNULL,
            env=child_env,
            text=True,
        )

    @property
    def pid(self):
        return self.process.pid

    def wait_ready(self, timeout=15.0):
        """Block until the ready line is printed; return it. Raises TimedOut or RuntimeError."""
        import selectors

        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.kill()
                    raise TimedOut(f"rpcmm {' '.join(self.args)} was not ready within {timeout:g}s")
                if not selector.select(remaining):
                    continue
                line = self.process.stdout.readline()
                if not line:
                    code = self.process.wait()
                    raise RuntimeError(f"rpcmm {' '.join(self.args)} exited with status {code} before it was ready")
                if line.startswith(self.ready_prefix):
                    self.ready_line = line.strip()
                    return self.ready_line

    def signal(self, signum):
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def kill(self):
        """SIGKILL and reap."""
        self.signal(signal.SIGKILL)
        return self.process.wait()

    def stop(self, timeout=10.0):
        """SIGTERM, wait up to ``timeout`` for a clean exit (SIGKILL after), return the status."""
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        finally:
            self.process.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self.process.poll() is None:
            self.kill()
        if not self.process.stdout.closed:
            self.process.stdout.close()


def start_registry(seed_path, endpoint="127.0.0.1:0", extra_args=(), **kwargs):
    """Start ``rpcmm registry`` and wait until it serves; the process has ``.endpoint``."""
    process = RpcmmProcess(
        ["registry", "--seed", str(seed_path), "--endpoint", str(endpoint), *extra_args],
        ready_prefix="rpcmm registry: serving on ", **kwargs,
    )
    try:
        line = process.wait_ready()
    except BaseException:
        process.__exit__(None, None, None)
        raise
    process.endpoint = Endpoint.parse(line.rsplit(" ", 1)[1])
    return process


def start_register(seed_path, host, topics, interval=None, ttl=None, extra=(), **kwargs):
    """Start ``rpcmm register`` for ``host`` (``extra``: more options) and wait until it has registered."""
    args = ["register", "--seed", str(seed_path), "--host", host, *extra]
    if interval is not None:
        args += ["--interval", str(interval)]
    if ttl is not None:
        args += ["--ttl", str(ttl)]
    process = RpcmmProcess([*args, *topics], ready_prefix="rpcmm register: ", **kwargs)
    try:
        process.wait_ready()
    except BaseException:
        process.__exit__(None, None, None)
        raise
    return process
