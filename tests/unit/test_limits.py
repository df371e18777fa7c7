import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpcmm.limits import DEFAULT_BURST, DEFAULT_RATE, PeerRateLimiter


def test_defaults_are_documented_values():
    limiter = PeerRateLimiter()
    assert (limiter.rate, limiter.burst, limiter.max_peers) == (DEFAULT_RATE, DEFAULT_BURST, 10_000)
    assert (DEFAULT_RATE, DEFAULT_BURST) == (20_000.0, 40_000)


def test_a_burst_passes_then_the_rate_holds():
    limiter = PeerRateLimiter(rate=10, burst=5)
    assert [limiter.allow("p", now=0.0) for _ in range(6)] == [True] * 5 + [False]
    assert not limiter.allow("p", now=0.05)  # half a token
    assert limiter.allow("p", now=0.1)  # one token
    assert not limiter.allow("p", now=0.1)
    assert limiter.refused == 3


def test_peers_are_independent():
    limiter = PeerRateLimiter(rate=1, burst=1)
    assert limiter.allow("a", 0.0) and not limiter.allow("a", 0.0)
    assert limiter.allow("b", 0.0)


def test_buckets_never_exceed_burst_after_a_long_silence():
    limiter = PeerRateLimiter(rate=100, burst=3)
    limiter.allow("p", 0.0)
    assert [limiter.allow("p", 1e6) for _ in range(4)] == [True, True, True, False]


def test_a_clock_stepping_back_refills_nothing():
    limiter = PeerRateLimiter(rate=1, burst=1)
    assert limiter.allow("p", 10.0)
    assert not limiter.allow("p", 5.0)
    assert not limiter.allow("p", 10.5)
    assert limiter.allow("p", 11.0)


def test_idle_buckets_are_forgotten():
    limiter = PeerRateLimiter(rate=100, burst=10, max_peers=1000)  # full again after 0.1 s
    for i in range(50):
        limiter.allow(i, now=0.0)
    assert len(limiter) == 50
    limiter.allow("new", now=0.2)
    assert len(limiter) == 1 and limiter.evicted == 0


def test_a_flood_of_new_identities_stays_bounded():
    limiter = PeerRateLimiter(rate=1, burst=10, max_peers=100)
    for i in range(100_000):
        limiter.allow(i.to_bytes(8, "big"), now=i * 1e-6)
    assert len(limiter) == 100
    assert limiter.evicted == 100_000 - 100


def test_a_busy_peer_keeps_its_bucket_through_a_flood_if_it_stays_recent():
    limiter = PeerRateLimiter(rate=1, burst=2, max_peers=10)
    limiter.allow("busy", 0.0)
    limiter.allow("busy", 0.0)
    for i in range(100):
        limiter.allow(("stranger", i), 0.0)
        limiter.allow("busy", 0.0)  # touched: most recent, so never the one evicted
    assert not limiter.allow("busy", 0.0)


def test_forget():
    limiter = PeerRateLimiter(rate=1, burst=1)
    limiter.allow("p", 0.0)
    limiter.forget("p")
    limiter.forget("p")
    assert limiter.allow("p", 0.0)


@pytest.mark.parametrize("kwargs", [{"rate": 0}, {"burst": 0}, {"max_peers": 0}])
def test_invalid_settings(kwargs):
    with pytest.raises(ValueError):
        PeerRateLimiter(**kwargs)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.floats(0, 0.5)), max_size=300))
def test_no_peer_ever_exceeds_burst_plus_rate_times_elapsed(events):
    rate, burst = 20.0, 5
    limiter = PeerRateLimiter(rate=rate, burst=burst, max_peers=100)
    now, allowed = 0.0, {}
    for peer, step in events:
        now += step
        if limiter.allow(peer, now):
            allowed[peer] = allowed.get(peer, 0) + 1
    for count in allowed.values():
        assert count <= burst + rate * now + 1e-9


def test_a_charge_after_the_fact_refuses_the_next_messages_until_the_bucket_refills():
    limiter = PeerRateLimiter(rate=100.0, burst=10)
    assert limiter.allow("p", 0.0)  # 9 tokens left
    limiter.charge("p", 0.0, 14.0)  # a large reply: 5 tokens in debt
    assert not limiter.allow("p", 0.0)
    assert not limiter.allow("p", 0.05)  # 0 tokens
    assert limiter.allow("p", 0.061)  # 1.1 tokens
    assert limiter.allow("q", 0.061)  # nobody else pays for it


def test_a_debt_is_at_most_one_bucket():
    limiter = PeerRateLimiter(rate=100.0, burst=10)
    limiter.charge("p", 0.0, 1e9)  # -10 tokens, not -1e9
    assert not limiter.allow("p", 0.1)  # 0 tokens
    assert limiter.allow("p", 0.111)  # 1.1 tokens


def test_a_warm_up_over_a_hundred_pages_is_never_refused_at_the_default_rate():
    # What the registry charges for its replies (1 token per kB over 4 kB) against a peer that
    # pages through a table of 100,000 hosts (about 80 pages of 256 kB) as fast as a page can be
    # served and loaded (a few ms each): a legitimate listing must never be refused.
    from rpcmm import server
    limiter = PeerRateLimiter()
    now = 0.0
    for _ in range(120):
        assert limiter.allow("warming-peer", now)
        limiter.charge("warming-peer", now, (256 << 10) / server._REPLY_BYTES_PER_TOKEN)
        now += 0.005
