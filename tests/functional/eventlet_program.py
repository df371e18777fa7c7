"""Run by test_eventlet.py in a fresh interpreter: rpcmm's core inside a monkey-patched process."""

import eventlet

eventlet.monkey_patch()

import time  # noqa: E402

from rpcmm import Anycast, HeartbeatTiming, RegistryMatchmaker, RegistryServer, Seed  # noqa: E402
from rpcmm.addressing import Endpoint  # noqa: E402
from rpcmm.runtime import default_runtime  # noqa: E402
from rpcmm.testing import wait_for  # noqa: E402


def free_port():
    """A port nothing listens on (bound, then released: the OS picks it)."""
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main():
    runtime = default_runtime()
    assert runtime.name == "eventlet", runtime
    ticks = []
    ticker = eventlet.spawn(lambda: [ticks.append(time.monotonic()) or eventlet.sleep(0.01) for _ in range(100)])
    with RegistryServer("127.0.0.1:0", tick_interval=0.05) as server:
        seed = Seed.build(registries=[server.endpoint])
        with RegistryMatchmaker(seed, timing=HeartbeatTiming(0.05, 0.3)) as host_side, \
                RegistryMatchmaker(seed, cache_max_age=60.0) as client:
            host_side.register("t", "h1")
            with host_side.heartbeat():
                wait_for(lambda: client.lookup(Anycast("t")) == ("h1",), timeout=5)
                host_side.register("t", "h2")  # reaches the cache through the live feed
                wait_for(lambda: client.hosts("t") == ("h1", "h2"), timeout=5)
        # A registry that is down: status() says so within the lookup timeout (eventlet's green
        # send ignores SNDTIMEO, so a send waiting for a connection must not rely on it).
        down = Endpoint("127.0.0.1", free_port())
        with RegistryMatchmaker(Seed.build(registries=[server.endpoint, down]), lookup_timeout=0.3,
                                live=False) as asker:
            asker.hosts("t")
            started = time.monotonic()
            asking = eventlet.spawn(asker.status)
            answers = dict(asking.wait())
            assert answers[down] is None and answers[server.endpoint] is not None, answers
            assert time.monotonic() - started < 3.0, time.monotonic() - started
    ticker.wait()
    # The green thread kept running while sockets waited: nothing blocked the hub.
    assert len(ticks) == 100
    print("eventlet ok", runtime.zmq.__name__)


main()
