import pytest

from rpcmm.cache import Applied, LookupCache
from rpcmm.protocol import Delta, Snapshot


def test_fresh_then_stale():
    cache = LookupCache(max_age=1.0)
    cache.put("t", ("h1",), now=10.0)
    assert cache.fresh("t", now=10.5) == ("h1",)
    assert cache.fresh("t", now=11.0) is None
    assert cache.stale("t") == ("h1",)
    assert cache.age("t", now=12.0) == pytest.approx(2.0)
    assert cache.fresh("other", now=10.0) is None and cache.stale("other") is None


def test_an_empty_answer_is_cached_too():
    cache = LookupCache(max_age=1.0)
    cache.put("t", (), now=0.0)
    assert cache.fresh("t", now=0.1) == ()


def test_size_is_bounded_oldest_first():
    cache = LookupCache(max_age=1.0, max_entries=2)
    cache.put("a", ("1",), now=0.0)
    cache.put("b", ("2",), now=0.0)
    cache.put("a", ("1",), now=0.5)  # refreshed: now the newest
    cache.put("c", ("3",), now=0.6)
    assert len(cache) == 2 and cache.stale("b") is None and cache.stale("a") == ("1",)


def test_invalidate():
    cache = LookupCache()
    cache.put("a", ("1",), now=0.0)
    cache.put("b", ("2",), now=0.0)
    cache.invalidate("a")
    assert cache.stale("a") is None and cache.stale("b") == ("2",)
    cache.invalidate()
    assert len(cache) == 0


@pytest.mark.parametrize("kwargs", [{"max_age": -1}, {"max_entries": 0}])
def test_bad_settings(kwargs):
    with pytest.raises(ValueError):
        LookupCache(**kwargs)


def test_deltas_apply_in_order_and_a_gap_makes_the_entry_stale():
    cache = LookupCache(max_age=1.0, live_max_age=10.0)
    cache.put("t", ("h1",), now=0.0, epoch=7, version=3)
    assert cache.apply_delta(Delta(7, 5, 3, "t", ("h1", "h2")), now=0.5) is Applied.APPLIED
    assert cache.fresh("t", now=9.0) == ("h1", "h2")  # live: fresh for live_max_age
    assert cache.apply_delta(Delta(7, 4, 2, "t", ("old",)), now=0.6) is Applied.IGNORED
    assert cache.apply_delta(Delta(7, 9, 8, "t", ("h3",)), now=0.7) is Applied.GAP
    assert cache.fresh("t", now=0.7) is None and cache.stale("t") == ("h1", "h2")


def test_a_delta_of_another_epoch_is_a_gap_and_unknown_topics_are_ignored():
    cache = LookupCache()
    cache.put("t", ("h1",), now=0.0, epoch=7, version=3)
    assert cache.apply_delta(Delta(8, 4, 3, "t", ("x",)), now=0.1) is Applied.GAP
    assert cache.apply_delta(Delta(7, 1, 0, "other", ("x",)), now=0.1) is Applied.IGNORED


def test_snapshots_set_the_entry_unless_it_is_newer_and_lookups_never_roll_back():
    cache = LookupCache()
    assert cache.apply_snapshot(Snapshot(7, 5, "t", ("h1",)), now=0.0) is Applied.APPLIED
    cache.put("t", ("older",), now=0.1, epoch=7, version=4)  # a lookup answered before the change
    assert cache.stale("t") == ("h1",)
    assert cache.apply_snapshot(Snapshot(7, 4, "t", ("older",)), now=0.2) is Applied.IGNORED


def test_a_topic_whose_last_host_left_is_cached_again():
    # The registry forgets an emptied topic's version: its later answers say version 0.
    cache = LookupCache(max_age=1.0, live_max_age=10.0)
    cache.put("t", ("h1",), now=0.0, epoch=7, version=5)
    assert cache.apply_delta(Delta(7, 6, 5, "t", ()), now=0.1) is Applied.APPLIED
    cache.put("t", (), now=20.0, epoch=7, version=0)  # long after: the delta's freshness is over
    assert cache.fresh("t", now=20.5) == ()
    cache.put("t", ("late",), now=20.6, epoch=7, version=0)  # a non-empty version 0 is still older
    assert cache.stale("t") == ()


def test_an_emptied_topic_is_taken_when_the_change_was_missed_once_the_entry_is_not_fresh():
    cache = LookupCache(max_age=1.0, live_max_age=10.0)
    cache.put("t", ("h1",), now=0.0, epoch=7, version=5)  # then h1 leaves; no delta reaches us
    cache.put("t", (), now=0.5, epoch=7, version=0)  # while fresh, the entry is taken as newer
    assert cache.fresh("t", now=0.5) == ("h1",)
    cache.put("t", (), now=1.5, epoch=7, version=0)  # past its freshness: the topic emptied since
    assert cache.fresh("t", now=1.6) == () and cache.stale("t") == ()


def test_cap_keeps_answers_but_no_longer_than_max_age():
    cache = LookupCache(max_age=1.0, live_max_age=10.0)
    cache.put("live", ("h1",), now=0.0, epoch=7, version=1, live=True)
    cache.put("plain", ("h2",), now=0.0)
    cache.cap(now=0.5)
    assert cache.fresh("live", now=1.4) == ("h1",) and cache.fresh("live", now=1.5) is None
    assert cache.fresh("plain", now=0.9) == ("h2",)  # already within max_age: unchanged
    assert cache.apply_delta(Delta(7, 2, 1, "live", ("h3",)), now=2.0, live=False) is Applied.APPLIED
    assert cache.fresh("live", now=2.9) == ("h3",) and cache.fresh("live", now=3.0) is None


def test_an_answer_older_than_a_change_seen_while_its_entry_was_gone_is_not_live():
    # The entry was invalidated (this process registered) while the feed still follows the
    # topic; a change lands between the registry's answer and the answer being stored.
    cache = LookupCache(max_age=1.0, live_max_age=10.0)
    assert cache.apply_delta(Delta(7, 6, 5, "t", ("h1",)), now=0.0) is Applied.IGNORED
    cache.put("t", ("h1", "h2"), now=0.1, epoch=7, version=5, live=True)
    assert cache.fresh("t", now=1.0) == ("h1", "h2")  # served for max_age, as any plain answer
    assert cache.fresh("t", now=1.2) is None  # not for live_max_age: the next lookup asks again
    cache.put("t", ("h1",), now=2.0, epoch=7, version=6, live=True)
    assert cache.fresh("t", now=9.0) == ("h1",)  # a current answer is live again


def test_demote_and_stale_host():
    cache = LookupCache(max_age=1.0, live_max_age=10.0)
    cache.put("a", ("h1",), now=0.0, epoch=7, version=1, live=True)
    cache.put("b", ("h2",), now=0.0, epoch=8, version=1, live=True)
    cache.demote(now=0.0, keep_epoch=7)
    assert cache.fresh("a", now=0.5) == ("h1",) and cache.fresh("a", now=1.5) is None
    assert cache.fresh("b", now=0.0) is None and cache.stale("b") == ("h2",)
    cache.put("c", ("h1", "h3"), now=0.0)
    cache.stale_host("h1")
    assert cache.fresh("c", now=0.0) is None and cache.stale("c") == ("h1", "h3")


def test_loaded_answers_are_stale_only():
    cache = LookupCache()
    cache.load({"t": ["h1"]}, stored_at=-5.0)
    assert cache.fresh("t", now=0.0) is None and cache.stale("t") == ("h1",)
    assert cache.age("t", now=0.0) == 5.0


def test_loading_takes_no_more_answers_than_the_cache_holds():
    cache = LookupCache(max_age=5.0, max_entries=100)
    cache.put("live", ("h",), now=0.0)
    cache.load({f"t{i}": ("h",) for i in range(5000)})
    assert len(cache._entries) == 100 and cache.fresh("live", 1.0) == ("h",)
