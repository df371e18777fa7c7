"""A simulated service host for the fault-injection suite, run as its own process.

It binds a ROUTER on ``--bind`` (an OS-picked port), registers ``ADDRESS:PORT`` as its host
name for its topics through rpcmm, heartbeats, and echoes every request with its name, so
clients can both look it up and call it. It prints ``service ready HOST REGISTERED_AT`` (a
Unix time) once registered and
exits 0 on SIGTERM after unregistering.
"""

import argparse
import signal
import sys
import threading
import time

import zmq

from rpcmm.backends.registry import RegistryMatchmaker
from rpcmm.seed import load_seed
from rpcmm.timing import HeartbeatTiming


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--ttl", type=float, default=0.6)
    parser.add_argument("topics", nargs="+")
    args = parser.parse_args()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(f"tcp://{args.bind}:*")
    host = f"{args.bind}:{router.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(':', 1)[1]}"
    matchmaker = RegistryMatchmaker(load_seed(args.seed), timing=HeartbeatTiming(args.interval, args.ttl),
                                    live=False, context=context)
    with matchmaker:
        registered_at = time.time()
        for topic in args.topics:
            matchmaker.register(topic, host)
        with matchmaker.heartbeat():
            print(f"service ready {host} {registered_at!r}", flush=True)
            while not stopping.is_set():
                if router.poll(100):
                    identity, request = router.recv_multipart()
                    router.send_multipart([identity, request + b"|" + args.name.encode()])
    router.close()
    context.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
