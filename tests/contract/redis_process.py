"""redis-server processes for tests: on a random loopback port, stopped by the test that starts them.

Redis cannot pick a free port itself, so :meth:`RedisProcess.start` tries random high ports and
keeps the first one the server manages to bind: the server binds it, so there is no bind/close
race, and "Address already in use" only costs another try.

When ``redis-server`` is missing, :func:`redis_executable` skips the test, except under
``CI=true``, where it fails it: CI installs redis-server and must test the Redis backend.
"""

import contextlib
import os
import random
import shutil
import signal
import subprocess
import time

import pytest

__all__ = ["redis_executable", "RedisProcess"]


def redis_executable():
    """The redis-server path; skip if absent, or fail under CI=true where it must be installed."""
    path = shutil.which("redis-server")
    if path is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the Redis tests", pytrace=False)
        pytest.skip(reason)
    return path


class RedisProcess:
    """A redis-server on 127.0.0.1, without persistence, its files under ``workdir``.

    ``config`` is the text of a config file to start from (a Sentinel needs one it can
    rewrite); ``extra_args`` are more ``--option value`` arguments. :meth:`start` returns once
    the server answers PING; :meth:`stop` terminates it (kills it after 5 s) and waits.
    """

    def __init__(self, executable, workdir, extra_args=(), config=None):
        self._executable = executable
        self._workdir = workdir
        self._extra_args = list(extra_args)
        self._config = config
        self._process = None
        self.port = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self, port=None, attempts=10, deadline=10.0):
        """Start on ``port``, or on the first random high port that is free; return self."""
        rng = random.Random()
        for _ in range(1 if port else attempts):
            candidate = port or rng.randint(20000, 60000)
            if self._try_start(candidate, deadline):
                self.port = candidate
                return self
        raise RuntimeError(f"redis-server could not bind {port or 'a free port'} ({attempts} attempts)")

    def client(self, **options):
        """A redis-py client of this server (the caller closes it)."""
        import redis

        options.setdefault("socket_timeout", 2)
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, **options)

    def pause(self):
        """SIGSTOP the server: it keeps its connections but answers nothing (a hung server)."""
        self._process.send_signal(signal.SIGSTOP)

    def resume(self):
        self._process.send_signal(signal.SIGCONT)

    def stop(self):
        """Terminate the server and wait for it; idempotent. The port stays in self.port."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _command(self, port):
        command = [self._executable]
        if self._config is not None:
            path = os.path.join(self._workdir, f"redis-{port}.conf")
            with open(path, "w") as f:
                f.write(self._config)
            command.append(path)
        return command + [
            "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", self._workdir, "--logfile", self._logfile(port), *self._extra_args,
        ]

    def _logfile(self, port):
        return os.path.join(self._workdir, f"redis-{port}.log")

    def _try_start(self, port, deadline):
        """True once the server on ``port`` answers; False if the port was taken."""
        import redis

        process = subprocess.Popen(self._command(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
        end = time.monotonic() + deadline
        try:
            while time.monotonic() < end:
                with contextlib.suppress(redis.ConnectionError):
                    if probe.ping():
                        self._process = process
                        return True
                try:
                    process.wait(timeout=0.02)  # the pause between two probes, and exit detection
                except subprocess.TimeoutExpired:
                    continue
                log = self._read_log(port)
                if "Address already in use" in log:
                    return False
                raise RuntimeError(f"redis-server exited with {process.returncode}:\n{log}")
        finally:
            probe.close()
        process.kill()
        process.wait()
        raise RuntimeError(f"redis-server on port {port} did not answer PING within {deadline:g}s")

    def _read_log(self, port):
        try:
            with open(self._logfile(port), errors="replace") as log:
                return log.read()
        except FileNotFoundError:
            return "(no log written)"
