"""RegistryMatchmaker's two tiers and cache, with the registry client replaced by a fake."""

import math
import time

import pytest

from rpcmm.addressing import Endpoint, Fanout
from rpcmm.backends.registry import RegistryMatchmaker
from rpcmm.errors import ConfigurationError, RegistryUnavailable
from rpcmm.protocol import Heartbeat, Hosts, State, Suspect, Unregister
from rpcmm.seed import Seed
from rpcmm.timing import HeartbeatTiming

REGISTRY = Endpoint("127.0.0.1", 7701)


class FakeClient:
    def __init__(self):
        self.answers = {}
        self.down = False
        self.state = State.UP
        self.lookups = 0
        self.casts = []

    def lookup(self, topic):
        self.lookups += 1
        if self.down:
            raise RegistryUnavailable(topic, [REGISTRY], 0.5)
        return Hosts(self.lookups, self.answers.get(topic, ()), 1, self.lookups, self.state, 0.0), REGISTRY

    def suspect(self, hosts):
        return self.cast(Suspect(tuple(hosts)))

    def cast(self, message):
        self.casts.append(message)
        return 1

    def close(self):
        pass


@pytest.fixture
def fake():
    return FakeClient()


@pytest.fixture
def make(clock, fake, monkeypatch, context):
    monkeypatch.setattr(RegistryMatchmaker, "_make_client", lambda self: fake)
    made = []

    def factory(ring=None, **kwargs):
        seed = Seed.build(ring=ring or {}, registries=[REGISTRY])
        mm = RegistryMatchmaker(seed, clock=clock, cache_max_age=1.0, live=False, context=context,
                                **kwargs).start()
        made.append(mm)
        return mm

    yield factory
    for mm in made:
        mm.stop()


def test_repeated_lookups_are_served_from_the_cache_until_it_ages(make, fake, clock):
    mm = make()
    fake.answers["t"] = ("h1",)
    assert mm.hosts("t") == ("h1",)
    fake.answers["t"] = ("h1", "h2")
    assert mm.hosts("t") == ("h1",) and fake.lookups == 1
    clock.advance(1.0)
    assert mm.hosts("t") == ("h1", "h2") and fake.lookups == 2


def test_static_hosts_come_first_and_are_not_repeated(make, fake):
    mm = make(ring={"t": ["s1", "h1"]})
    fake.answers["t"] = ("h1", "h2")
    assert mm.lookup(Fanout("t")) == ("s1", "h1", "h2")


def test_no_registry_serves_the_stale_cache_then_the_ring_then_raises(make, fake, clock):
    mm = make(ring={"ringed": ["s1"]})
    fake.answers["cached"] = ("h1",)
    mm.hosts("cached")
    fake.down = True
    clock.advance(60)
    assert mm.hosts("cached") == ("h1",)  # stale, but better than nothing
    assert mm.hosts("ringed") == ("s1",)
    with pytest.raises(RegistryUnavailable) as caught:
        mm.hosts("unknown")
    assert caught.value.topic == "unknown" and caught.value.endpoints == (REGISTRY,)


def test_registration_casts_full_state_with_declared_timing(make, fake):
    mm = make(timing=HeartbeatTiming(0.5, 2.0))
    mm.register("b", "h1")
    mm.register("a", "h1")
    last = fake.casts[-1]
    assert isinstance(last, Heartbeat)
    assert last.states[0] == ("h1", 0.5, 2.0, ("a", "b"))
    mm.unregister("a", "h1")
    mm.unregister("b", "h1")
    assert fake.casts[-1] == Unregister(("h1",))


def test_heartbeats_batch_many_hosts_per_message(make, fake):
    mm = make()
    mm._announce_many([(f"h{i}", frozenset({"t"})) for i in range(5000)])
    sizes = [len(m.states) for m in fake.casts]
    assert sizes == [4096, 904]


def test_a_seed_without_registries_is_refused():
    with pytest.raises(ConfigurationError, match="lists no registries"):
        RegistryMatchmaker(Seed.build(ring={"t": ["h"]}))


def test_reporting_an_unreachable_host_casts_a_suspect_and_stops_trusting_the_cache(make, fake):
    mm = make()
    fake.answers["t"] = ("h1", "h2")
    mm.hosts("t")
    fake.answers["t"] = ("h2",)
    mm.report_unreachable("h1")
    assert fake.casts[-1] == Suspect(("h1",))
    assert mm.hosts("t") == ("h2",) and fake.lookups == 2


def test_the_cache_file_gives_a_cold_start_without_registries(make, fake, tmp_path, clock):
    from rpcmm.cachefile import save_cache

    path = tmp_path / "cache.json"
    save_cache(path, {"t": ["h1"]})
    fake.down = True
    mm = make(cache_file=str(path))
    assert mm.hosts("t") == ("h1",)


@pytest.mark.parametrize("saved", ["30 s ago", "NaN"])
def test_a_cache_file_answer_is_as_old_as_the_file_says_or_of_unknown_age(make, fake, tmp_path, clock, saved):
    path = tmp_path / "cache.json"
    saved_at = repr(time.time() - 30) if saved == "30 s ago" else saved
    path.write_text('{"format": 1, "saved_at": %s, "topics": {"t": ["h1"]}}' % saved_at)
    fake.down = True
    mm = make(cache_file=str(path))
    assert mm.hosts("t") == ("h1",)
    age = mm.cache.age("t", clock.monotonic())
    if saved == "NaN":  # unknown: never as new as a file just written (it read as 0 s old)
        assert age == math.inf
    else:  # the file's age, counted on from when it was loaded
        assert 29 < age < 60


def test_lookups_stay_correct_while_other_threads_register_and_unregister(make, fake):
    import sys
    import threading
    import time

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: the race shows in milliseconds, not by luck
    mm = make()
    for i in range(500):
        mm.register("t", f"h{i}")  # a process serving many hosts: its lookups correct for them
    fake.answers["t"] = ()
    stop, errors = threading.Event(), []

    def churn():
        for i in range(20_000):
            if stop.is_set():
                return
            mm.register("other", f"n{i}")
            mm.unregister("other", f"n{i}")

    def look():
        deadline = time.monotonic() + 2.0
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                mm.cache.invalidate("t")  # every lookup asks the (fake) registry and corrects its answer
                assert len(mm.lookup(Fanout("t"))) == 500
            except Exception as exc:  # e.g. "dictionary changed size during iteration"
                errors.append(repr(exc))
                stop.set()

    threads = [threading.Thread(target=churn)] + [threading.Thread(target=look) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads[1:]:
            thread.join(10)
        stop.set()
        threads[0].join(10)
    finally:
        sys.setswitchinterval(previous)
    assert errors == []


def test_a_start_that_fails_half_way_releases_what_it_made(context, monkeypatch):
    import threading

    from rpcmm.backends import registry as registry_backend

    def unreadable(path):
        raise OSError("the disk went away")  # anything _open() meets after making its client

    monkeypatch.setattr(registry_backend, "load_cache", unreadable)
    mm = RegistryMatchmaker(Seed.build(registries=[REGISTRY]), live=False, context=context,
                            cache_file="/nonexistent/cache.json")
    with pytest.raises(OSError):
        mm.start()
    assert not mm.started and mm._client is None
    # Every socket made for the first registry was closed: the context can be termed.
    terminated = threading.Thread(target=context.term, daemon=True)
    terminated.start()
    terminated.join(5)
    assert not terminated.is_alive()


def test_a_host_whose_last_topic_this_process_withdrew_leaves_its_own_answers_at_once(make, fake, clock):
    mm = make(timing=HeartbeatTiming(1.0, 3.0))
    mm.register("t", "mine")
    fake.answers["t"] = ("mine", "other")  # the registry has not handled the UNREGISTER yet
    mm.unregister("t", "mine")
    assert mm.hosts("t") == ("other",)
    clock.advance(1.0)  # the cache's age: ask again
    assert mm.hosts("t") == ("other",)
    clock.advance(3.0)  # a TTL later the registry's answer is trusted as it is
    assert mm.hosts("t") == ("mine", "other")
    mm.register("t", "mine")  # and registering it again brings it back at once
    assert mm.hosts("t") == ("mine", "other")


def _race_with_a_held_announcement(mm, fake, other):
    """Register ``a`` for ``h`` in a thread whose announcement is held up on its way out, run
    ``other`` in a second thread meanwhile (it goes as far as it may), then let both finish."""
    import threading
    import time

    entered, release = threading.Event(), threading.Event()
    cast = fake.cast

    def slow_first_cast(message):
        if not entered.is_set():
            entered.set()
            release.wait(5)
        return cast(message)

    fake.cast = slow_first_cast
    first = threading.Thread(target=mm.register, args=("a", "h"))
    first.start()
    assert entered.wait(5)
    second = threading.Thread(target=other)
    second.start()
    time.sleep(0.2)
    release.set()
    first.join(5)
    second.join(5)


def test_concurrent_registrations_reach_the_registry_in_the_order_they_were_made(make, fake):
    mm = make()
    _race_with_a_held_announcement(mm, fake, lambda: mm.register("b", "h"))
    beats = [m for m in fake.casts if isinstance(m, Heartbeat)]
    # Each carries the whole set: the last to arrive must be the newest, {a, b}, not {a}.
    assert [b.states[0].topics for b in beats] == [("a",), ("a", "b")]


def test_stop_waits_for_an_announcement_on_its_way_so_its_withdrawal_is_the_last_word(make, fake):
    mm = make()
    _race_with_a_held_announcement(mm, fake, mm.stop)
    assert [type(m).__name__ for m in fake.casts] == ["Heartbeat", "Unregister"]
