"""CurveZMQ over real TCP on 127.0.0.1: who gets through a secured ROUTER, and what it costs.

Each test watches the server socket's monitor for the handshake failure it expects, so a refusal
is observed as a refusal, not inferred from a timeout.
"""

import statistics
import subprocess
import sys
import threading
import time

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from rpcmm import protocol, security
from rpcmm.testing import wait_for

_HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                     | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
_LOOKUP = protocol.encode(protocol.Lookup(1, "compute"))


@pytest.fixture
def keys(tmp_path):
    security.generate_keypair(tmp_path / "server", "registry")
    security.generate_keypair(tmp_path / "authorized", "good")
    security.generate_keypair(tmp_path / "stranger", "bad")
    security.generate_keypair(tmp_path / "impostor", "registry")
    (tmp_path / "authorized" / "good.key_secret").rename(tmp_path / "good.key_secret")
    server = security.CurveServerConfig(tmp_path / "server/registry.key_secret", tmp_path / "authorized").load()

    def client(secret="good.key_secret", server_key="server/registry.key"):
        return security.CurveClientConfig(tmp_path / secret, tmp_path / server_key).load()

    return server, client


class Sockets:
    """Sockets of one test, all closed (LINGER 0) before the context is termed."""

    def __init__(self, context):
        self.context = context
        self.made = []

    def make(self, kind):
        socket = self.context.socket(kind)
        socket.setsockopt(zmq.LINGER, 0)
        self.made.append(socket)
        return socket

    def close(self):
        for socket in self.made:
            socket.close()


@pytest.fixture
def sockets(context):
    made = Sockets(context)
    yield made
    made.close()


@pytest.fixture
def secured(context, sockets, keys):
    """A running authenticator and a CURVE ROUTER bound on 127.0.0.1, with its monitor."""
    server_config, _ = keys
    auth = security.CurveAuthenticator(context, server_config.authorized_keys).start()
    router = sockets.make(zmq.ROUTER)
    security.secure_server_socket(router, server_config)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    router.monitor(f"inproc://monitor-{id(router):x}", _HANDSHAKE_EVENTS)
    monitor = sockets.make(zmq.PAIR)
    monitor.connect(f"inproc://monitor-{id(router):x}")
    yield auth, router, f"tcp://127.0.0.1:{port}", monitor
    router.disable_monitor()
    auth.stop()


def next_handshake_event(monitor, timeout=5.0):
    assert monitor.poll(timeout * 1000), "no handshake event within the deadline"
    return recv_monitor_message(monitor)["event"]


def dealer(sockets, address, config=None):
    socket = sockets.make(zmq.DEALER)
    if config is not None:
        security.secure_client_socket(socket, config)
    socket.connect(address)
    return socket


def test_an_authorized_key_gets_answers_and_is_identified(secured, sockets, keys):
    auth, router, address, monitor = secured
    _, client = keys
    config = client()
    peer = dealer(sockets, address, config)
    peer.send(_LOOKUP)
    assert next_handshake_event(monitor) == zmq.EVENT_HANDSHAKE_SUCCEEDED
    assert router.poll(5000)
    identity, frame = router.recv_multipart(copy=False)
    assert protocol.decode(frame.bytes) == protocol.Lookup(1, "compute")
    assert security.peer_key(frame) == config.public_key.decode()
    router.send_multipart([identity, protocol.encode(protocol.Hosts(1, ("compute-1",)))])
    assert peer.poll(5000)
    assert protocol.decode(peer.recv()) == protocol.Hosts(1, ("compute-1",))
    assert (auth.allowed, auth.denied) == (1, 0)


def test_an_unsecured_peer_fails_the_handshake_and_is_never_heard(secured, sockets):
    auth, router, address, monitor = secured
    peer = dealer(sockets, address)  # NULL mechanism
    peer.send(_LOOKUP)
    assert next_handshake_event(monitor) in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                                             zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    assert not router.poll(0)
    assert auth.allowed == 0  # a mechanism mismatch never reaches ZAP, let alone passes it


def test_an_unknown_key_is_refused_by_zap(secured, sockets, keys):
    auth, router, address, monitor = secured
    _, client = keys
    stranger = dealer(sockets, address, client(secret="stranger/bad.key_secret"))
    stranger.send(_LOOKUP)
    assert next_handshake_event(monitor) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    wait_for(lambda: auth.denied >= 1, what="the ZAP denial")
    assert auth.allowed == 0 and not router.poll(0)
    # The registry still serves authorized peers after refusing one.
    good = dealer(sockets, address, client())
    good.send(_LOOKUP)
    assert router.poll(5000)
    assert router.recv_multipart()[1] == _LOOKUP


def test_a_client_refuses_an_impostor_server(secured, sockets, keys):
    """A client that expects another server key never completes a handshake (cannot be fed lies)."""
    auth, router, address, monitor = secured
    _, client = keys
    fooled = dealer(sockets, address, client(server_key="impostor/registry.key"))
    fooled.send(_LOOKUP)
    assert next_handshake_event(monitor) in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                                             zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    assert not router.poll(0) and auth.allowed == 0


def test_without_an_authenticator_curve_fails_closed(context, sockets, keys):
    server_config, client = keys
    router = sockets.make(zmq.ROUTER)
    security.secure_server_socket(router, server_config)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    router.monitor("inproc://monitor-closed", _HANDSHAKE_EVENTS)
    monitor = sockets.make(zmq.PAIR)
    monitor.connect("inproc://monitor-closed")
    try:
        peer = dealer(sockets, f"tcp://127.0.0.1:{port}", client())
        peer.send(_LOOKUP)
        assert next_handshake_event(monitor) == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
        assert not router.poll(0)
    finally:
        router.disable_monitor()


def test_inproc_peers_of_a_secured_socket_skip_curve(secured, sockets):
    """In-process wake-ups (the oslo Receiver's stop token) keep working on a CURVE socket."""
    _, router, _, _ = secured
    router.bind("inproc://secured-wake")
    waker = dealer(sockets, "inproc://secured-wake")
    waker.send(b"stop")
    assert router.poll(5000)
    assert router.recv_multipart()[1] == b"stop"


# -- the cost of CURVE on a lookup round trip -----------------------------------------------------


def _median_round_trip(context, sockets, count, server_config=None, client_config=None):
    """Median seconds of DEALER -> ROUTER -> DEALER with a LOOKUP and a 3-host answer; the
    ROUTER answers from its own thread, as a registry does."""
    router = sockets.make(zmq.ROUTER)
    if server_config is not None:
        security.secure_server_socket(router, server_config)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    answer = protocol.encode(protocol.Hosts(1, ("compute-1", "compute-2", "compute-3")))
    warmup = 50

    def echo():
        for _ in range(count + warmup):
            identity, _ = router.recv_multipart()
            router.send_multipart([identity, answer])

    thread = threading.Thread(target=echo, name="curve-echo")
    thread.start()
    try:
        peer = dealer(sockets, f"tcp://127.0.0.1:{port}", client_config)
        peer.setsockopt(zmq.RCVTIMEO, 5000)
        samples = []
        for i in range(count + warmup):
            start = time.perf_counter()
            peer.send(_LOOKUP)
            peer.recv()
            if i >= warmup:
                samples.append(time.perf_counter() - start)
    finally:
        thread.join(10)
    return statistics.median(samples)


def test_curve_round_trip_cost(secured, context, sockets, keys, record_property, capsys):
    _, _, _, _ = secured  # the authenticator must run for CURVE handshakes to pass
    server_config, client = keys
    count = 2000
    plain = _median_round_trip(context, sockets, count)
    curve = _median_round_trip(context, sockets, count, server_config, client())
    record_property("plain_median_us", plain * 1e6)
    record_property("curve_median_us", curve * 1e6)
    with capsys.disabled():
        print(f"\nlookup round trip, median of {count}: plain {plain * 1e6:.1f} us, "
              f"CURVE {curve * 1e6:.1f} us (+{(curve - plain) * 1e6:.1f} us)")
    assert plain > 0 and curve > 0


# -- under eventlet ---------------------------------------------------------------------------------

_GREEN_SCRIPT = r"""
import eventlet
eventlet.monkey_patch()
import sys, time
from rpcmm import security
from rpcmm.runtime import default_runtime

runtime = default_runtime()
assert runtime.name == "eventlet", runtime
zmq = runtime.zmq
keys = sys.argv[1]
server = security.CurveServerConfig(keys + "/server/registry.key_secret", keys + "/authorized").load()
client = security.CurveClientConfig(keys + "/good.key_secret", keys + "/server/registry.key").load()
context = runtime.new_context()
auth = security.CurveAuthenticator(context, server.authorized_keys, runtime=runtime).start()
ticks = []
ticker = eventlet.spawn(lambda: [ticks.append(eventlet.sleep(0.001)) for _ in range(50)])
router = context.socket(zmq.ROUTER)
router.setsockopt(zmq.LINGER, 0)
security.secure_server_socket(router, server)
port = router.bind_to_random_port("tcp://127.0.0.1")
dealer = context.socket(zmq.DEALER)
dealer.setsockopt(zmq.LINGER, 0)
security.secure_client_socket(dealer, client)
dealer.connect("tcp://127.0.0.1:%d" % port)
dealer.send(b"ping")
with eventlet.Timeout(5):
    identity, body = router.recv_multipart()
ticker.wait()
print("ok", body.decode(), auth.allowed, len(ticks))
router.close(); dealer.close(); auth.stop(); context.term()
"""


def test_the_authenticator_is_green_under_eventlet(tmp_path, keys):
    """Monkey-patched (in a child process): a CURVE handshake passes and other green threads run."""
    pytest.importorskip("eventlet")
    result = subprocess.run([sys.executable, "-c", _GREEN_SCRIPT, str(tmp_path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["ok", "ping", "1", "50"]
