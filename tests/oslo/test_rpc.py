"""RPC over the zmq driver with real sockets and a real registry, threads executor."""

import threading
import time

import msgpack
import oslo_messaging
import pytest

from rpcmm.oslo.names import RpcServer, RpcTopic
from rpcmm.testing import wait_for

pytestmark = [pytest.mark.functional, pytest.mark.timeout(60)]


class Endpoint:
    """Remembers what it was asked; ``name`` tells servers apart."""

    def __init__(self, name="server"):
        self.name = name
        self.casts = []
        self.cast_arrived = threading.Event()
        self.release = threading.Event()

    def add(self, ctxt, a, b):
        return a + b

    def whoami(self, ctxt):
        return self.name

    def record(self, ctxt, value):
        self.casts.append(value)
        self.cast_arrived.set()

    def fail(self, ctxt, message):
        raise ValueError(message)

    def fail_custom(self, ctxt):
        raise CustomError("custom")

    def wait_for_release(self, ctxt):
        return self.release.wait(20)

    def repeat(self, ctxt, text, times):
        return text * times

    def sleep(self, ctxt, seconds):
        time.sleep(seconds)
        return seconds


class CustomError(Exception):
    pass


def client(transport, timeout=5, **target):
    return oslo_messaging.get_rpc_client(transport, oslo_messaging.Target(**target), timeout=timeout)


def test_call_returns_the_result(transports):
    transports.server(oslo_messaging.Target(topic="calc", server="s1"), [Endpoint()])
    assert client(transports.rpc(), topic="calc").call({}, "add", a=2, b=3) == 5


def test_cast_reaches_the_server(transports):
    endpoint = Endpoint()
    transports.server(oslo_messaging.Target(topic="casts", server="s1"), [endpoint])
    client(transports.rpc(), topic="casts").cast({}, "record", value=7)
    assert endpoint.cast_arrived.wait(5)
    assert endpoint.casts == [7]


def test_fanout_reaches_every_server(transports):
    endpoints = [Endpoint(f"s{i}") for i in range(3)]
    for e in endpoints:
        transports.server(oslo_messaging.Target(topic="fan", server=e.name), [e])
    client(transports.rpc(), topic="fan", fanout=True).cast({}, "record", value="all")
    for e in endpoints:
        assert e.cast_arrived.wait(5), e.name
        assert e.casts == ["all"]


def test_a_call_to_a_named_server_reaches_only_it(transports):
    # Fully qualified names full of dots: no string convention may confuse them.
    names = ["node-1.example.org", "node-1.example", "node-1"]
    for name in names:
        transports.server(oslo_messaging.Target(topic="named.topic", server=name), [Endpoint(name)])
    transport = transports.rpc()
    for name in names:
        c = client(transport, topic="named.topic", server=name)
        assert {c.call({}, "whoami") for _ in range(9)} == {name}


def test_round_robin_is_strict_for_each_client(transports):
    names = ["a", "b", "c"]
    for name in names:
        transports.server(oslo_messaging.Target(topic="rr", server=name), [Endpoint(name)])
    c = client(transports.rpc(), topic="rr")
    answers = [c.call({}, "whoami") for _ in range(12)]
    cycle = answers[:3]
    assert sorted(cycle) == names
    assert answers == cycle * 4


def test_exchanges_are_kept_apart(transports):
    in_a, in_b = Endpoint("in-a"), Endpoint("in-b")
    transports.server(oslo_messaging.Target(exchange="a", topic="shared", server="s"), [in_a])
    transports.server(oslo_messaging.Target(exchange="b", topic="shared", server="s"), [in_b])
    transport = transports.rpc()
    assert {client(transport, exchange="a", topic="shared").call({}, "whoami") for _ in range(5)} == {"in-a"}
    assert {client(transport, exchange="b", topic="shared", server="s").call({}, "whoami")
            for _ in range(5)} == {"in-b"}
    with pytest.raises(oslo_messaging.MessagingTimeout):
        client(transport, timeout=0.5, exchange="c", topic="shared").call({}, "whoami")


def test_remote_exceptions(transports):
    transports.server(oslo_messaging.Target(topic="errors", server="s"), [Endpoint()])
    transport = transports.rpc()
    with pytest.raises(ValueError, match="bad value"):
        client(transport, topic="errors").call({}, "fail", message="bad value")
    # Not in allowed_remote_exmods: a RemoteError naming the type.
    with pytest.raises(oslo_messaging.RemoteError) as caught:
        client(transport, topic="errors").call({}, "fail_custom")
    assert caught.value.exc_type == "CustomError"


def test_remote_exception_of_an_allowed_module_keeps_its_type(transports, url):
    from tests.oslo.conftest import FAST_TIMING, make_conf

    transports.server(oslo_messaging.Target(topic="errors2", server="s"), [Endpoint()])
    transport = oslo_messaging.get_rpc_transport(make_conf(**FAST_TIMING), url=url,
                                                 allowed_remote_exmods=[__name__])
    try:
        with pytest.raises(CustomError):
            client(transport, topic="errors2").call({}, "fail_custom")
    finally:
        transport.cleanup()


def test_dispatch_errors_come_back_as_remote_errors(transports):
    class Versioned(Endpoint):
        target = oslo_messaging.Target(version="1.2", namespace="ns")

    transports.server(oslo_messaging.Target(topic="dispatch", server="s"), [Versioned()])
    transport = transports.rpc()
    good = client(transport, topic="dispatch", version="1.1", namespace="ns")
    assert good.call({}, "add", a=1, b=1) == 2
    for bad, method in [
        (client(transport, topic="dispatch", version="1.1", namespace="ns"), "no_such_method"),
        (client(transport, topic="dispatch", version="1.3", namespace="ns"), "add"),
        (client(transport, topic="dispatch", version="1.1", namespace="other"), "add"),
    ]:
        with pytest.raises(oslo_messaging.RemoteError):
            bad.call({}, method, a=1, b=1)


def test_a_call_nobody_serves_times_out_on_time(transports):
    c = client(transports.rpc(), timeout=0.5, topic="nobody")
    started = time.monotonic()
    with pytest.raises(oslo_messaging.MessagingTimeout):
        c.call({}, "add", a=1, b=2)
    elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 0.7


def test_many_concurrent_calls(transports):
    for name in ("x", "y"):
        transports.server(oslo_messaging.Target(topic="busy", server=name), [Endpoint(name)])
    c = client(transports.rpc(), topic="busy")
    errors, results = [], []

    def worker(n):
        try:
            for i in range(20):
                results.append(c.call({}, "add", a=n, b=i) == n + i)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(results) == 400 and all(results)


def test_a_slow_call_does_not_block_the_others(transports):
    endpoint = Endpoint()
    transports.server(oslo_messaging.Target(topic="slow", server="s"), [endpoint])
    c = client(transports.rpc(), timeout=20, topic="slow")
    outcome = []
    slow = threading.Thread(target=lambda: outcome.append(c.call({}, "wait_for_release")))
    slow.start()
    try:
        for i in range(10):
            assert c.call({}, "add", a=i, b=1) == i + 1
        assert slow.is_alive()
    finally:
        endpoint.release.set()
        slow.join(10)
    assert outcome == [True]


def test_call_monitoring_keeps_a_long_call_alive(transports):
    transports.server(oslo_messaging.Target(topic="monitored", server="s"), [Endpoint()])
    transport = transports.rpc()
    monitored = oslo_messaging.get_rpc_client(
        transport, oslo_messaging.Target(topic="monitored"), timeout=30, call_monitor_timeout=2)
    # oslo's server beats every monitor_timeout / 2 = 1 s (its shortest), so a 3 s call
    # outlives its 2 s monitor timeout only if the beats arrive.
    assert monitored.call({}, "sleep", seconds=3) == 3


@pytest.mark.parametrize("monitor", [0, 2_000_000])
def test_a_zero_or_huge_monitor_timeout_is_a_plain_call(transports, monitor):
    # 0 means no monitoring, as in oslo's other drivers; beyond what the envelope carries, the most it carries.
    transports.server(oslo_messaging.Target(topic="unmonitored", server="s"), [Endpoint()])
    plain = oslo_messaging.get_rpc_client(transports.rpc(), oslo_messaging.Target(topic="unmonitored"),
                                          timeout=5, call_monitor_timeout=monitor)
    assert plain.call({}, "add", a=1, b=2) == 3


def test_sending_after_cleanup_is_a_delivery_failure(transports):
    transports.server(oslo_messaging.Target(topic="late", server="s"), [Endpoint()])
    transport = transports.rpc()
    late = client(transport, topic="late")
    assert late.call({}, "add", a=1, b=1) == 2
    transport.cleanup()
    with pytest.raises(oslo_messaging.MessageDeliveryFailure):
        late.call({}, "add", a=1, b=1)
    with pytest.raises(oslo_messaging.MessageDeliveryFailure):
        late.cast({}, "record", value=1)


def test_a_message_over_the_size_limit_fails_at_the_sender_and_costs_nothing_else(transports):
    # The receiver's zmq drops the whole connection for a message over max_message_bytes, and
    # every message queued behind it: it must never be sent.
    endpoint = Endpoint()
    transport = transports.rpc(max_message_bytes=4096)
    transports.server(oslo_messaging.Target(topic="sized", server="s"), [endpoint], transport=transport)
    sized = client(transports.rpc(max_message_bytes=4096), topic="sized")
    assert sized.call({}, "add", a=1, b=1) == 2
    with pytest.raises(oslo_messaging.MessageDeliveryFailure, match="max_message_bytes"):
        sized.cast({}, "record", value="x" * 10_000)
    with pytest.raises(oslo_messaging.MessageDeliveryFailure, match="max_message_bytes"):
        sized.call({}, "add", a="x" * 10_000, b="")
    for value in range(20):
        sized.cast({}, "record", value=value)
    wait_for(lambda: len(endpoint.casts) == 20, timeout=5)
    assert sorted(endpoint.casts) == list(range(20))
    # A reply over the limit comes back as an error, not as a timeout.
    with pytest.raises(oslo_messaging.RemoteError, match="max_message_bytes"):
        sized.call({}, "repeat", text="y", times=10_000)


@pytest.mark.parametrize("ctxt", [None, "not a context"])
def test_a_context_that_is_not_a_dict_is_refused_or_made_one_at_the_sender(transports, ctxt):
    endpoint = Endpoint()
    transports.server(oslo_messaging.Target(topic="ctxt", server="s"), [endpoint])
    sender = client(transports.rpc(), topic="ctxt", timeout=2)
    if ctxt is None:  # an empty context, as oslo's notifier reads it
        assert sender.call(ctxt, "add", a=1, b=2) == 3
    else:  # the caller's error, at once: not a timeout after every receiver dropped it
        with pytest.raises(TypeError, match="must be a dict"):
            sender.call(ctxt, "add", a=1, b=2)


def test_listening_on_a_cleaned_up_transport_is_a_listen_error(transports):
    transport = transports.rpc()
    transport.cleanup()
    server = oslo_messaging.get_rpc_server(transport, oslo_messaging.Target(topic="gone", server="s"), [Endpoint()],
                                           executor="threading")
    with pytest.raises(oslo_messaging.MessagingException, match="cleaned up"):
        server.start()


def test_stopping_a_server_unregisters_it_at_once(transports, registered):
    server = transports.server(oslo_messaging.Target(topic="reg", server="srv.example.org"),
                               [Endpoint()])
    expected = {RpcTopic("openstack", "reg").name, RpcServer("openstack", "reg", "srv.example.org").name}
    wait_for(lambda: expected in registered().values(), timeout=5)
    transports.stop_server(server)
    # The driver unregisters as it stops; long before any TTL (0.5 s) could expire it.
    wait_for(lambda: expected not in registered().values(), timeout=0.3)


def test_cleaning_up_a_transport_unregisters_its_servers(transports, registered):
    transport = transports.rpc()
    server = oslo_messaging.get_rpc_server(transport, oslo_messaging.Target(topic="gone", server="s"),
                                           [Endpoint()], executor="threading")
    server.start()
    name = RpcTopic("openstack", "gone").name
    wait_for(lambda: any(name in topics for topics in registered().values()), timeout=5)
    server.stop()
    server.wait()
    transport.cleanup()
    wait_for(lambda: not any(name in topics for topics in registered().values()), timeout=0.3)


def test_a_server_survives_malformed_messages(transports, registered, context):
    import zmq

    transports.server(oslo_messaging.Target(topic="hostile", server="s"), [Endpoint()])
    name = RpcTopic("openstack", "hostile").name
    address = wait_for(lambda: next((h for h, t in registered().items() if name in t), None), timeout=5)
    attacker = context.socket(zmq.DEALER)
    attacker.setsockopt(zmq.LINGER, 0)
    attacker.connect(f"tcp://{address}")
    def envelope(*body):
        return [msgpack.packb(list(body), use_bin_type=True)]

    junk = [
        [b"garbage"],
        [b"rpcmm-oslo/1", b'{"k": "beat", "id": "x"}'],
        envelope(2, 1),
        envelope(2, 1, "x", "other-topic", {}, {}, None, None),
        envelope(2, 1, "x", name, {}, {}, "ipc:///tmp/evil", None),
        envelope(2, 2, "x", None, 5),
        [b"\x91" * 5000 + b"\xc0"],
        [b"a", b"b", b"c"],
    ]
    for frames in junk:
        attacker.send_multipart(frames)
    attacker.close()
    assert client(transports.rpc(), topic="hostile").call({}, "add", a=1, b=1) == 2
