"""The Matchmaker base contract, through a minimal in-memory backend."""

import logging
import threading

import pytest

from rpcmm.addressing import Anycast, Directed, Fanout
from rpcmm.backends.localhost import LocalhostMatchmaker
from rpcmm.backends.static import StaticMatchmaker
from rpcmm.errors import ConfigurationError, LifecycleError
from rpcmm.heart import Heart
from rpcmm.matchmaker import Matchmaker
from rpcmm.runtime import THREADING
from rpcmm.seed import parse_seed


class Recording(Matchmaker):
    """Resolves from what was announced; records every announce and withdraw."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.announced = []
        self.withdrawn = []
        self.table = {}
        self.beats = threading.Semaphore(0)

    def _resolve(self, topic):
        return tuple(h for h, topics in self.table.items() if topic in topics)

    def _announce(self, host, topics):
        self.announced.append((host, topics))
        self.table[host] = topics

    def _announce_many(self, states):
        super()._announce_many(states)
        self.beats.release()

    def _withdraw(self, host):
        self.withdrawn.append(host)
        self.table.pop(host, None)


@pytest.fixture
def mm():
    with Recording() as matchmaker:
        yield matchmaker


def test_register_announces_the_full_topic_set_at_once(mm):
    mm.register("a", "h1")
    mm.register("b", "h1")
    mm.register("b", "h1")  # already registered: nothing sent
    assert mm.announced == [("h1", frozenset({"a"})), ("h1", frozenset({"a", "b"}))]
    assert mm.registrations() == {"h1": frozenset({"a", "b"})}


def test_unregistering_the_last_topic_withdraws_the_host(mm):
    mm.register("a", "h1")
    mm.register("b", "h1")
    mm.unregister("a", "h1")
    assert mm.announced[-1] == ("h1", frozenset({"b"}))
    mm.unregister("b", "h1")
    mm.unregister("b", "h1")  # unknown now: ignored
    assert mm.withdrawn == ["h1"] and mm.registrations() == {}


def test_anycast_is_strict_round_robin_per_matchmaker(mm):
    for host in ("h1", "h2", "h3"):
        mm.register("t", host)
    picks = [mm.lookup(Anycast("t"))[0] for _ in range(7)]
    assert picks == ["h1", "h2", "h3", "h1", "h2", "h3", "h1"]
    with Recording() as other:
        other.table = dict(mm.table)
        assert other.lookup(Anycast("t")) == ("h1",)  # its own rotation


def test_round_robin_counters_are_bounded(mm, monkeypatch):
    import rpcmm.matchmaker as matchmaker_module
    monkeypatch.setattr(matchmaker_module, "MAX_ROTATIONS", 10)
    for i in range(100):
        mm.register(f"t{i}", "h1")
        mm.register(f"t{i}", "h2")
        assert mm.lookup(Anycast(f"t{i}")) == ("h1",)
    assert len(mm._rotations) <= 10
    assert [mm.lookup(Anycast("t99"))[0] for _ in range(3)] == ["h2", "h1", "h2"]  # still round robin


def test_directed_and_fanout(mm):
    mm.register("t", "h1.example.org")
    mm.register("t", "h2")
    assert mm.lookup(Directed("t", "h2")) == ("h2",)
    assert mm.lookup(Directed("t", "h3")) == ()
    assert mm.lookup(Fanout("t")) == ("h1.example.org", "h2")
    assert mm.hosts("t") == ("h1.example.org", "h2")


def test_nobody_serving_is_an_empty_answer_not_an_error(mm):
    assert mm.lookup(Anycast("none")) == ()
    assert mm.lookup(Fanout("none")) == ()
    assert mm.lookup(Directed("none", "h")) == ()


def test_lookup_refuses_untyped_keys(mm):
    with pytest.raises(TypeError):
        mm.lookup("t.h1")


def test_a_host_record_larger_than_a_registry_takes_is_refused_at_register(mm):
    from rpcmm import protocol

    for i in range(protocol.MAX_TOPICS_PER_HOST):
        mm.register(f"t{i}", "busy")
    with pytest.raises(ConfigurationError, match="at most 1024"):
        mm.register("one-too-many", "busy")
    assert len(mm.table["busy"]) == protocol.MAX_TOPICS_PER_HOST  # what it had is kept
    long_name = "\u20ac" * 255  # 765 bytes of UTF-8
    with pytest.raises(ConfigurationError, match="bytes"):
        for i in range(protocol.MAX_TOPICS_PER_HOST):
            mm.register(f"{i}{long_name}"[:255], "wordy")
    assert sum(len(t.encode()) for t in mm.table["wordy"]) <= protocol.MAX_RECORD_BYTES


def test_registering_needs_a_started_matchmaker_and_valid_names():
    mm = Recording()
    with pytest.raises(LifecycleError):
        mm.register("t", "h")
    mm.start()
    try:
        with pytest.raises(ConfigurationError):
            mm.register("t", "bad host")
    finally:
        mm.stop()


def test_stop_withdraws_every_host_and_is_idempotent():
    mm = Recording().start()
    mm.register("a", "h1")
    mm.register("a", "h2")
    mm.stop()
    mm.stop()
    assert sorted(mm.withdrawn) == ["h1", "h2"] and not mm.started


def test_heartbeat_context_manager_beats_and_stops(mm):
    mm.register("a", "h1")
    before = len(mm.announced)
    with mm.heartbeat():
        assert mm.beats.acquire(timeout=5)  # the first beat comes at once
    assert len(mm.announced) > before and mm._heart is None


def test_a_failing_beat_is_logged_and_the_heart_goes_on(caplog):
    calls = threading.Semaphore(0)
    count = []

    def beat():
        count.append(1)
        calls.release()
        if len(count) == 1:
            raise RuntimeError("boom")

    heart = Heart(beat, 0.001, THREADING)
    with caplog.at_level(logging.ERROR):
        heart.start()
        assert calls.acquire(timeout=5) and calls.acquire(timeout=5)
        heart.stop()
    assert "heartbeat failed" in caplog.text


def test_static_backend_answers_from_the_ring_only():
    seed = parse_seed('{"t": ["c1", "c2"]}')
    with StaticMatchmaker(seed) as mm:
        mm.register("other", "h9")  # kept locally, invisible to lookups
        assert mm.lookup(Fanout("t")) == ("c1", "c2")
        assert [mm.lookup(Anycast("t"))[0] for _ in range(3)] == ["c1", "c2", "c1"]
        assert mm.lookup(Fanout("other")) == ()
    with StaticMatchmaker({"t": ["c3"]}) as mm:
        assert mm.hosts("t") == ("c3",)


def test_localhost_backend_answers_this_host_for_everything():
    with LocalhostMatchmaker("node-1") as mm:
        assert mm.lookup(Anycast("anything")) == ("node-1",)
        assert mm.lookup(Directed("t", "node-1")) == ("node-1",)
        assert mm.lookup(Directed("t", "node-2")) == ()


def test_heart_waits_are_jittered_below_the_interval():
    waits = []

    class RecordingEvent:
        def wait(self, timeout):
            waits.append(timeout)
            return len(waits) >= 4

        def set(self):
            pass

    class Runtime:
        def event(self):
            return RecordingEvent()

        def spawn(self, fn, name):
            fn()

            class Done:
                def join(self, timeout):
                    pass

                def is_alive(self):
                    return False

            return Done()

    values = iter([0.0, 0.5, 1.0, 0.25])
    heart = Heart(lambda: None, 10.0, Runtime(), jitter=0.2, rng=lambda: next(values))
    heart.start()
    assert waits == [10.0, 9.0, 8.0, 9.5]
    with pytest.raises(ValueError):
        Heart(lambda: None, 1.0, THREADING, jitter=1.0)
