"""The live feed's receive path: any sequence of deltas and snapshots, in any order, applied to
the cache never raises, never rolls a topic back within an epoch, and keeps names clean."""

from hypothesis import given, settings
from hypothesis import strategies as st

from rpcmm import protocol
from rpcmm.cache import Applied, LookupCache

topics = st.sampled_from(["a", "b", "c"])
hosts = st.lists(st.sampled_from(["h1", "h2", "h3"]), max_size=3, unique=True).map(tuple)
epochs = st.sampled_from([1, 2])
versions = st.integers(0, 20)
# Including nonsense (version <= previous), which the decoder refuses and the cache must ignore.
deltas = st.builds(protocol.Delta, epochs, versions, versions, topics, hosts)
snapshots = st.builds(protocol.Snapshot, epochs, versions, topics, hosts)
lookups = st.tuples(st.just("put"), topics, hosts, epochs, versions)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(deltas, snapshots, lookups), max_size=40))
def test_any_feed_sequence_keeps_the_cache_consistent(events):
    cache = LookupCache(max_age=1.0, live_max_age=10.0)
    seen = {}  # topic -> (epoch, version) of what the cache holds
    now = 0.0
    for event in events:
        now += 0.01
        if isinstance(event, tuple):
            _, topic, answer, epoch, version = event
            cache.put(topic, answer, now, epoch, version)
        elif isinstance(event, protocol.Delta):
            outcome = cache.apply_delta(event, now)
            assert outcome in Applied
        else:
            cache.apply_snapshot(event, now)
        for topic, entry in cache._entries.items():
            epoch, version = entry[3], entry[4]
            previous = seen.get(topic)
            if previous is not None and previous[0] == epoch and epoch:
                assert version >= previous[1], (topic, previous, entry)
            seen[topic] = (epoch, version)
            assert all(isinstance(h, str) for h in entry[0])
