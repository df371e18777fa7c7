"""An RPC service in its own process, for the tests that need real processes.

    python tests/oslo/peer.py --url zmq://127.0.0.1:PORT/ --topic T --server NAME [--eventlet]

Serves ``whoami`` (its server name), ``add``, ``sleep``, the cast ``tick`` and ``ticked`` (how
many ticks it processed) on ``topic`` until SIGTERM, then stops cleanly. Prints ``ready`` once
its server is registered, and ``ticked N`` (the casts it processed) and ``stopped`` once it
stopped. With ``--eventlet`` it
monkey-patches first and uses oslo's eventlet executor, like an eventlet-based service.
"""

import argparse
import os
import signal
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--eventlet", action="store_true")
    parser.add_argument("--embedded-port", type=int)
    args = parser.parse_args()
    if args.eventlet:
        import eventlet

        eventlet.monkey_patch()

    import threading
    import time

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    import oslo_messaging
    from tests.oslo.conftest import FAST_TIMING, make_conf

    class Service:
        in_progress = 0

        def whoami(self, ctxt):
            return args.server

        def add(self, ctxt, a, b):
            return a + b

        def sleep(self, ctxt, seconds):
            Service.in_progress += 1
            try:
                time.sleep(seconds)  # green once patched: must not block the other calls
            finally:
                Service.in_progress -= 1
            return seconds

        ticks = 0
        tick_lock = threading.Lock()

        def tick(self, ctxt):
            """A cast to count."""
            with Service.tick_lock:  # executor threads run casts concurrently
                Service.ticks += 1

        def ticked(self, ctxt):
            return Service.ticks

        def sleeping(self, ctxt):
            """How many sleep calls are in progress."""
            return Service.in_progress

    options = dict(FAST_TIMING)
    if args.embedded_port:
        options["embedded_registry_port"] = args.embedded_port
    transport = oslo_messaging.get_rpc_transport(make_conf(**options), url=args.url)
    server = oslo_messaging.get_rpc_server(
        transport, oslo_messaging.Target(topic=args.topic, server=args.server), [Service()],
        executor="eventlet" if args.eventlet else "threading")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    server.start()
    print("ready", flush=True)
    while not stopping.wait(0.2):  # bounded waits: a signal handler runs between them
        pass
    server.stop()
    server.wait()
    transport.cleanup()
    print(f"ticked {Service.ticks}", flush=True)  # casts it processed, for the caller's sums
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
