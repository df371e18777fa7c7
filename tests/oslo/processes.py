"""Helpers to run tests/oslo/peer.py as a child process (tests and the benchmark)."""

import os
import signal
import subprocess
import sys
import threading

__all__ = ["Peer"]

PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer.py")


class Peer:
    """A peer.py process; always stopped (or killed) and reaped at the end of the test."""

    def __init__(self, url, topic, server, eventlet=False, embedded_port=None,
                 stderr=subprocess.DEVNULL):
        args = [sys.executable, PEER, "--url", url, "--topic", topic, "--server", server]
        if eventlet:
            args.append("--eventlet")
        if embedded_port:
            args += ["--embedded-port", str(embedded_port)]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr,
                                        text=True, cwd=os.path.dirname(PEER))
        self.ready = threading.Event()
        #: The ``ticked N`` count it printed on a clean stop (None until then).
        self.ticked = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            line = line.strip()
            if line == "ready":
                self.ready.set()
            elif line.startswith("ticked "):
                self.ticked = int(line.split()[1])

    def wait_ready(self, timeout=20):
        assert self.ready.wait(timeout), "peer did not start"
        return self

    def kill(self):
        self.process.kill()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait(15)
        self._reader.join(5)
