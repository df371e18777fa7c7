"""Measure the zmq driver: call latency (p50/p99) and cast throughput, one machine.

    /work/venv/bin/python tests/oslo/bench.py [--calls 2000] [--casts 20000] [--eventlet-server]

A registry runs in this process, the RPC server in a child process (tests/oslo/peer.py, oslo's
threading executor, or eventlet's with --eventlet-server), the client here: every message
crosses real loopback TCP between processes. Not a benchmark suite (that lives elsewhere):
a quick number for the driver's report.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import oslo_messaging  # noqa: E402
from rpcmm.server import RegistryServer  # noqa: E402
from tests.oslo.conftest import make_conf  # noqa: E402
from tests.oslo.processes import Peer  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--casts", type=int, default=20000)
    parser.add_argument("--eventlet-server", action="store_true")
    args = parser.parse_args()
    registry = RegistryServer("127.0.0.1:0").start()
    url = f"zmq://{registry.endpoint}/"
    peer = Peer(url, "bench", "b1", eventlet=args.eventlet_server)
    transport = oslo_messaging.get_rpc_transport(make_conf(), url=url)
    try:
        peer.wait_ready()
        client = oslo_messaging.get_rpc_client(transport, oslo_messaging.Target(topic="bench"), timeout=10)
        for _ in range(100):  # warm up: connections, caches
            client.call({}, "add", a=0, b=0)
        latencies = []
        for i in range(args.calls):
            started = time.perf_counter()
            client.call({}, "add", a=i, b=1)
            latencies.append(time.perf_counter() - started)
        latencies.sort()
        p50 = statistics.median(latencies) * 1e3
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1e3
        print(f"call latency over {args.calls} calls: p50 {p50:.3f} ms, p99 {p99:.3f} ms")

        started = time.perf_counter()
        for _ in range(args.casts):
            client.cast({}, "tick")
        sent = time.perf_counter() - started
        deadline = time.monotonic() + 120
        while client.call({}, "ticked") < args.casts and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the server's count; bounded by the deadline
        received = time.perf_counter() - started
        got = client.call({}, "ticked")
        print(f"cast throughput: {args.casts} casts sent in {sent:.2f} s ({args.casts / sent:.0f}/s); "
              f"{got} processed by the server after {received:.2f} s ({got / received:.0f}/s)")
    finally:
        transport.cleanup()
        peer.stop()
        registry.stop()


if __name__ == "__main__":
    main()
