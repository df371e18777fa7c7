"""A join storm at a registry inside an eventlet process: do green threads keep running?

    python tests/functional/eventlet_join_storm_program.py HOSTS

A registry runs in this monkey-patched process (its loop on a native thread, logging a line
per joining host at INFO, which the runtime relays to a green task); another process sends
HOSTS new hosts in 500-host heartbeats over about two seconds. A green probe sleeps 10 ms at
a time for 5 s and records the longest gap between its wake-ups. Prints ``joined N max gap
G``: the relay must hand the lines over in batches, not hold the hub until all are written.
"""

import eventlet

eventlet.monkey_patch()

import logging  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from eventlet import patcher  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, ROOT)

from rpcmm.runtime import default_runtime  # noqa: E402
from rpcmm import server as server_module  # noqa: E402
from rpcmm.server import RegistryServer  # noqa: E402

real_time = patcher.original("time")

FLOOD = r"""
import sys, time, zmq
sys.path.insert(0, sys.argv[3])
from rpcmm import protocol
context = zmq.Context()
socket = context.socket(zmq.DEALER)
socket.setsockopt(zmq.SNDHWM, 0)
socket.connect(sys.argv[1])
total, n = int(sys.argv[2]), 0
while n < total:
    batch = tuple(protocol.HostState(f"h{n + i}", 30.0, 90.0, ("t",)) for i in range(500))
    socket.send(protocol.encode(protocol.Heartbeat(batch)))
    n += 500
    time.sleep(0.02)
socket.close(linger=5000)
context.term()
"""


def main():
    hosts = int(sys.argv[1])
    logging.basicConfig(stream=open(os.devnull, "w"), level=logging.INFO)
    # Every join a line: this measures the relay from native threads, not the registry's
    # own limit on host-event lines (which would keep all but 16 a second back).
    server_module._HOST_EVENT_LINES = 10**9
    server = RegistryServer("127.0.0.1:0", runtime=default_runtime()).start()
    gaps = []
    stop_at = real_time.monotonic() + 5.0

    def probe():
        last = real_time.monotonic()
        while real_time.monotonic() < stop_at:
            eventlet.sleep(0.01)
            now = real_time.monotonic()
            gaps.append(now - last)
            last = now

    prober = eventlet.spawn(probe)
    flood = subprocess.Popen([sys.executable, "-c", FLOOD, server.endpoint.zmq_address(), str(hosts), ROOT])
    prober.wait()
    flood.wait(30)
    server.stop()
    print(f"joined {server.stats.joined} max gap {max(gaps):.3f}", flush=True)


if __name__ == "__main__":
    main()
