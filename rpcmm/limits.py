"""Per-peer rate limiting for registries: token buckets with bounded memory; pure logic, time passed in.

A registry answers every peer from one loop, so one peer sending as fast as it can would
starve the others. :class:`PeerRateLimiter` gives each peer (a CURVE key, or a zmq routing
identity when there are no keys) a token bucket: ``rate`` messages a second on average,
bursts of up to ``burst``. Honest peers are far below the defaults: a host heartbeats about
once a second, a client's lookups are mostly answered by its cache, and a process announcing
thousands of hosts batches them 4096 to a message. The defaults still let one peer use only a
share of a registry (which handles on the order of 10^5 messages a second), and a deployment
that knows its peers can lower them.

Memory is bounded whatever peers do: at most ``max_peers`` buckets exist. A bucket untouched
for ``burst / rate`` seconds is full again and carries no information, so it is dropped; if
``max_peers`` is still reached, the least recently seen peer's bucket is dropped. A flood of
new identities (a DEALER may pick any routing identity) therefore costs a bounded amount of
memory and CPU, but each new identity starts with a full bucket: key buckets by CURVE key
where there are keys (a key cannot be invented without being authorized), and keep one
aggregate limiter (:meth:`PeerRateLimiter.allow` with a constant peer, or a second limiter) if
the registry must also cap its total load.
"""

import collections

__all__ = ["PeerRateLimiter", "DEFAULT_RATE", "DEFAULT_BURST", "DEFAULT_MAX_PEERS"]

#: Messages per second each peer may send on average.
DEFAULT_RATE = 20_000.0
#: Messages a peer may send at once after being quiet (its bucket's capacity).
DEFAULT_BURST = 40_000
#: Peers whose buckets are kept at once (about 100 bytes each).
DEFAULT_MAX_PEERS = 10_000


class _Bucket:
    __slots__ = ("tokens", "stamp")

    def __init__(self, tokens, stamp):
        self.tokens = tokens
        self.stamp = stamp


class PeerRateLimiter:
    """Token buckets keyed by peer; see the module docstring.

    ``now`` is a monotonic time in seconds passed to every call (the caller's clock, so tests
    drive it). Not thread-safe: one per registry loop.
    """

    def __init__(self, rate=DEFAULT_RATE, burst=DEFAULT_BURST, max_peers=DEFAULT_MAX_PEERS):
        if not rate > 0:
            raise ValueError("rate must be positive")
        if not burst >= 1:
            raise ValueError("burst must be at least 1")
        if not max_peers >= 1:
            raise ValueError("max_peers must be at least 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_peers = int(max_peers)
        #: Seconds after which an untouched bucket is full again and may be forgotten.
        self.refill_time = self.burst / self.rate
        self._buckets = collections.OrderedDict()  # peer -> _Bucket, least recently seen first
        self.refused = 0
        self.evicted = 0

    def __len__(self):
        return len(self._buckets)

    def allow(self, peer, now, cost=1.0):
        """Take ``cost`` tokens from ``peer``'s bucket: True if it had them (handle the message),
        False if not (drop it; the peer is over its rate)."""
        bucket = self._refilled(peer, now)
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return True
        self.refused += 1
        return False

    def charge(self, peer, now, cost):
        """Take ``cost`` more tokens from ``peer``'s bucket after the fact (for work whose size
        is known only once done, such as a large reply): its next messages are refused until
        the bucket refills. The debt is at most one bucket's worth (and, like any bucket, an
        indebted one untouched for ``refill_time`` may be dropped to make room)."""
        bucket = self._refilled(peer, now)
        bucket.tokens = max(-self.burst, bucket.tokens - cost)

    def _refilled(self, peer, now):
        """``peer``'s bucket, made (full) or refilled for the time since it was last seen."""
        buckets = self._buckets
        bucket = buckets.get(peer)
        if bucket is None:
            self._make_room(now)
            bucket = buckets[peer] = _Bucket(self.burst, now)
        else:
            buckets.move_to_end(peer)
            elapsed = now - bucket.stamp
            if elapsed > 0:  # a clock that steps back refills nothing
                bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
                bucket.stamp = now
        return bucket

    def forget(self, peer):
        """Drop ``peer``'s bucket (for instance when its connection closed)."""
        self._buckets.pop(peer, None)

    def _make_room(self, now):
        """Before adding a bucket: drop full (idle) ones, then the least recently seen if still full.

        Amortised O(1): the OrderedDict is in last-seen order, so idle buckets are at the front.
        """
        buckets = self._buckets
        horizon = now - self.refill_time
        while buckets:
            oldest = next(iter(buckets.values()))
            if oldest.stamp > horizon:
                break
            buckets.popitem(last=False)
        while len(buckets) >= self.max_peers:
            buckets.popitem(last=False)
            self.evicted += 1
