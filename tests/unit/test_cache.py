import pytest

from rpcmm.cache import LookupCache


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
