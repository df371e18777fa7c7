"""Notifications over the zmq driver: listeners, pools, batches; real sockets and registry."""

import queue

import pytest

import oslo_messaging
from rpcmm.oslo.driver import ZmqDriver
from rpcmm.oslo.names import PoolMember
from rpcmm.oslo.peers import PeerBusy
from tests.oslo.conftest import make_conf, stop_all

pytestmark = [pytest.mark.functional, pytest.mark.timeout(60)]


class Recorder:
    """A notification endpoint that queues (priority, event_type, payload, who)."""

    def __init__(self, name):
        self.name = name
        self.events = queue.Queue()

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        self.events.put(("info", event_type, payload, self.name))

    def error(self, ctxt, publisher_id, event_type, payload, metadata):
        self.events.put(("error", event_type, payload, self.name))


class BatchRecorder:
    def __init__(self):
        self.batches = queue.Queue()

    def info(self, messages):
        self.batches.put([m["payload"] for m in messages])


@pytest.fixture
def listeners(transports):
    started = []

    def start(topics, endpoint, pool=None, batch=None, allow_requeue=False):
        transport = transports.notification()
        targets = [oslo_messaging.Target(topic=t) for t in topics]
        if batch is None:
            listener = oslo_messaging.get_notification_listener(
                transport, targets, [endpoint], executor="threading", pool=pool, allow_requeue=allow_requeue)
        else:
            listener = oslo_messaging.get_batch_notification_listener(
                transport, targets, [endpoint], executor="threading", pool=pool,
                batch_size=batch[0], batch_timeout=batch[1])
        listener.start()
        started.append(listener)
        return listener

    yield start
    stop_all(started)


def notifier(transports, topic, publisher="pub"):
    return oslo_messaging.Notifier(transports.notification(), publisher, driver="messaging",
                                   topics=[topic])


def drain(recorder, count, timeout=5):
    return [recorder.events.get(timeout=timeout) for _ in range(count)]


def test_a_listener_gets_each_priority(transports, listeners):
    recorder = Recorder("one")
    listeners(["alerts"], recorder)
    n = notifier(transports, "alerts")
    n.info({}, "thing.created", {"id": 1})
    n.error({}, "thing.failed", {"id": 2})
    assert sorted(drain(recorder, 2)) == [
        ("error", "thing.failed", {"id": 2}, "one"), ("info", "thing.created", {"id": 1}, "one")]


@pytest.mark.parametrize("second_pool", [None, ""], ids=["no-pool", "empty-pool-name"])
def test_listeners_of_the_default_pool_share_the_messages(transports, listeners, second_pool):
    # pool="" is the default pool too, as the rabbit driver reads it (queue ``pool or topic``):
    # a pool option that defaults to "" must not make a second pool that gets a copy of all.
    topic = "shared" if second_pool is None else "shared-empty-pool"
    a, b = Recorder("a"), Recorder("b")
    listeners([topic], a)
    listeners([topic], b, pool=second_pool)
    n = notifier(transports, topic)
    for i in range(10):
        n.info({}, "tick", i)
    received = drain(a, 5) + drain(b, 5)
    assert sorted(e[2] for e in received) == list(range(10))  # each exactly once
    assert a.events.empty() and b.events.empty()


def test_every_pool_gets_its_own_copy(transports, listeners):
    members = {pool: [Recorder(f"{pool}-{i}") for i in range(2)] for pool in ("p1", "p2")}
    for pool, recorders in members.items():
        for r in recorders:
            listeners(["pooled"], r, pool=pool)
    n = notifier(transports, "pooled")
    for i in range(6):
        n.info({}, "tick", i)
    for pool, recorders in members.items():
        got = drain(recorders[0], 3) + drain(recorders[1], 3)
        assert sorted(e[2] for e in got) == list(range(6)), pool


def test_batch_listener_gets_full_batches_then_the_rest(transports, listeners):
    recorder = BatchRecorder()
    listeners(["batched"], recorder, batch=(10, 1.0))
    n = notifier(transports, "batched")
    for i in range(25):
        n.info({}, "tick", i)
    batches = [recorder.batches.get(timeout=5) for _ in range(3)]
    assert [len(b) for b in batches] == [10, 10, 5]
    assert sum(batches, []) == list(range(25))


def test_topics_are_independent(transports, listeners):
    one, two = Recorder("one"), Recorder("two")
    listeners(["t1"], one)
    listeners(["t2"], two)
    notifier(transports, "t1").info({}, "for-one", 1)
    notifier(transports, "t2").info({}, "for-two", 2)
    assert drain(one, 1)[0][1] == "for-one"
    assert drain(two, 1)[0][1] == "for-two"
    assert one.events.empty() and two.events.empty()


class Requeuer:
    """Asks for each notification to be requeued ``times`` times, then handles it."""

    def __init__(self, times):
        self.times = times
        self.seen = queue.Queue()
        self._counts = {}

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        count = self._counts[payload] = self._counts.get(payload, 0) + 1
        self.seen.put((payload, count))
        if count <= self.times:
            return oslo_messaging.NotificationResult.REQUEUE
        return oslo_messaging.NotificationResult.HANDLED


def test_a_requeued_notification_is_delivered_again(transports, listeners):
    endpoint = Requeuer(times=2)
    listeners(["requeued"], endpoint, allow_requeue=True)
    n = notifier(transports, "requeued")
    n.info({}, "thing", "a")
    n.info({}, "thing", "b")
    got = sorted(endpoint.seen.get(timeout=5) for _ in range(6))
    assert got == [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2), ("b", 3)]
    with pytest.raises(queue.Empty):
        endpoint.seen.get(timeout=0.3)  # handled the third time: not delivered again


def test_without_allow_requeue_a_notification_is_not_delivered_again(transports, listeners):
    endpoint = Requeuer(times=1)
    listeners(["not-requeued"], endpoint)
    notifier(transports, "not-requeued").info({}, "thing", "a")
    assert endpoint.seen.get(timeout=5) == ("a", 1)
    with pytest.raises(queue.Empty):
        endpoint.seen.get(timeout=0.3)


class _Registered:
    """A matchmaker stub: every notification topic is served by ``hosts``."""

    def __init__(self, hosts):
        self.hosts = tuple(hosts)

    def lookup(self, key):
        return self.hosts


class _Outbox:
    """An outbox stub whose ``busy`` addresses refuse everything, as a full send queue does."""

    def __init__(self, busy):
        self.busy, self.sent = set(busy), []

    def send(self, address, frames):
        if address in self.busy:
            raise PeerBusy(f"the send queue to {address} is full")
        self.sent.append(address)


def test_a_busy_pool_member_is_stood_in_for_by_another(caplog):
    members = {pool: [f"10.0.0.{i}:{4000 + n}" for n in range(3)] for i, pool in enumerate(("p1", "p2"), 1)}
    busy = {members["p1"][0], *members["p2"]}  # one member of p1 is stuck; all of p2 are
    conf = make_conf()
    driver = ZmqDriver(conf, oslo_messaging.TransportURL.parse(conf, "zmq://"))
    driver._matchmaker = _Registered(PoolMember(pool, a).host for pool, addresses in members.items()
                                     for a in addresses)
    driver._outbox = _Outbox(busy)
    driver._started = True
    for _ in range(6):
        driver.send_notification(oslo_messaging.Target(topic="n.info"), {}, {"event_type": "e"}, 2.0)
    assert len(driver._outbox.sent) == 6  # p1 got every one, from its two free members in turn
    assert set(driver._outbox.sent) == set(members["p1"][1:])
    assert "not delivered to" in caplog.text  # p2's copies: logged, not raised
