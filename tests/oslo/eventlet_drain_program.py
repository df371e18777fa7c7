"""A listener's drain under eventlet while a green thread holds the hub.

    python tests/oslo/eventlet_drain_program.py HOG_SECONDS

Monkey-patches, starts a listener on the eventlet runtime, and stops it while a peer (another
process) sends 30 requests over 150 ms, starting at the unregistration, and a green thread
spins for HOG_SECONDS without yielding (CPU work, or a C call that blocks the hub). Prints
``delivered N of 30``: a drain must decide from the socket, not from a timer that fires
before the reading green thread gets to run.
"""

import eventlet

eventlet.monkey_patch()

import os  # noqa: E402
import subprocess  # noqa: E402  (green once patched)
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from rpcmm.oslo.listener import PushListener, ZmqListener  # noqa: E402
from rpcmm.oslo.peers import Outbox  # noqa: E402
from rpcmm.runtime import eventlet_runtime  # noqa: E402
from tests.oslo.conftest import make_conf  # noqa: E402

TOPIC = "rpc/openstack/things"
COUNT = 30

SENDER = r"""
import sys, time, zmq
sys.path.insert(0, sys.argv[3])
from rpcmm.oslo import wire
context = zmq.Context()
socket = context.socket(zmq.DEALER)
socket.setsockopt(zmq.LINGER, 2000)
socket.connect("tcp://" + sys.argv[1])
time.sleep(0.3)
print("connected", flush=True)
sys.stdin.readline()
for n in range(int(sys.argv[4])):
    socket.send(wire.encode(wire.Request(f"id{n}", sys.argv[2], {}, {"n": n}))[0])
    time.sleep(0.005)
socket.close()
context.term()
"""


class Matchmaker:
    def __init__(self):
        self.on_unregister = lambda: None

    def register(self, topic, host):
        pass

    def unregister(self, topic, host):
        self.on_unregister()


def main():
    hog = float(sys.argv[1])
    runtime = eventlet_runtime()
    context = runtime.new_context()
    outbox = Outbox(context, runtime, max_peers=4)
    matchmaker = Matchmaker()
    listener = ZmqListener(context, runtime, matchmaker, outbox, [TOPIC], lambda address: address,
                           make_conf(stop_drain_timeout=5.0).rpcmm, "drain-under-eventlet").start()
    push = PushListener(listener)
    got = []
    push.start(got.extend)
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    peer = subprocess.Popen([sys.executable, "-c", SENDER, listener.address, TOPIC, root, str(COUNT)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert peer.stdout.readline().strip() == "connected"

        def spin():
            end = time.monotonic() + hog
            while time.monotonic() < end:  # never yields to the hub
                pass

        def go_on_sending():  # the peer has not heard of the unregistration yet
            peer.stdin.write("go\n")
            peer.stdin.flush()
            if hog:
                eventlet.spawn(spin)

        matchmaker.on_unregister = go_on_sending
        push.stop()
        peer.wait(10)
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait(5)
        push.cleanup()
        outbox.close()
        context.term()
    print(f"delivered {len(got)} of {COUNT}", flush=True)


if __name__ == "__main__":
    main()
