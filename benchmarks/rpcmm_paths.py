"""rpcmm's own hot paths, measured the same way as their anchors (:mod:`benchmarks.anchors`).

- :func:`cached_lookup`: ``RegistryMatchmaker.lookup(Anycast(topic))`` answered by a fresh
  cache entry, over the anchor's data set and loop shape;
- :class:`RemoteLookup`: a lookup with the cache bypassed (``cache_max_age=0``), i.e. one
  LOOKUP/HOSTS round trip to a registry in another process; :meth:`RemoteLookup.samples` times
  ``k`` lookups at a time on one matchmaker, so the benchmark can interleave them in short
  blocks with the raw-zmq and Redis anchors (:func:`benchmarks.measure.interleaved`) and a
  noisy machine's drift in speed lands on both sides of each ratio alike;
- :func:`ingest_rate`: topic registrations a registry refreshes per second when hosts send
  their heartbeats (one host per message, as the Redis anchor pipelines one host's topics);
- :func:`change_propagation`: from a host joining or leaving a topic (its cast leaving the
  host's socket) to a subscribed client's cache holding the new answer (live feed, issue #4).
"""

import random
import threading
import time

import zmq

from rpcmm import protocol
from rpcmm.addressing import Anycast, Endpoint
from rpcmm.backends.registry import RegistryMatchmaker
from rpcmm.seed import Seed
from rpcmm.timing import HeartbeatTiming

from benchmarks import loadgen
from benchmarks.measure import latency_summary, per_op_ns, process_cpu_seconds

__all__ = ["matchmaker", "cached_lookup", "RemoteLookup", "lookup_frame_sizes", "populate", "ingest_rate",
           "change_propagation"]

#: Declared by benchmark hosts that must not expire during a run (the registry's maximum).
LONG_INTERVAL, LONG_TTL = 60.0, 600.0


def matchmaker(endpoint, cache_max_age, cache_max_entries=65536, live=False):
    """A started RegistryMatchmaker whose seed lists the one registry at ``endpoint``.

    ``live=False`` unless asked: a live feed keeps answers fresh past ``cache_max_age``, which
    would turn "cache bypassed" lookups into cached ones.
    """
    seed = Seed.build(registries=[Endpoint.parse(endpoint)])
    return RegistryMatchmaker(seed, timing=HeartbeatTiming(1.0, 3.0), lookup_timeout=2.0,
                              cache_max_age=cache_max_age, cache_max_entries=cache_max_entries, live=live).start()


def cached_lookup(endpoint, data, repeat):
    """ns per ``mm.lookup(key)`` on a fresh cache entry (keys built beforehand, like the anchor's
    strings), and per ``mm.hosts(topic)`` (Fanout, with name validation)."""
    mm = matchmaker(endpoint, cache_max_age=3600.0, cache_max_entries=len(data.answers) + 1)
    try:
        now = mm.clock.monotonic()
        for topic, hosts in data.answers.items():
            mm.cache.put(topic, hosts, now)
        keys = [Anycast(t) for t in data.sample]
        anycast = per_op_ns("lookup(k)", {"lookup": mm.lookup}, keys, repeat)
        fanout = per_op_ns("hosts(k)", {"hosts": mm.hosts}, data.sample, repeat)
        return {"anycast": anycast, "hosts": fanout}
    finally:
        mm.stop()


def lookup_frame_sizes(endpoint, topic):
    """Bytes of a LOOKUP request for ``topic`` and of the registry's HOSTS reply, as sent on the
    wire (asked of the registry itself, with a client's typical 32-bit request id)."""
    request = protocol.encode(protocol.Lookup(random.getrandbits(32), topic))
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.RCVTIMEO = 5000
    try:
        sock.connect(f"tcp://{endpoint}")
        sock.send(request)
        return len(request), len(sock.recv())
    finally:
        sock.close()
        ctx.term()


class RemoteLookup:
    """Lookups that always ask the registry: ``cache_max_age=0`` and no live feed, the full user path."""

    def __init__(self, endpoint, topics):
        self.mm = matchmaker(endpoint, cache_max_age=0.0)
        self.topics = topics
        self.wrong = 0  # answers of :meth:`samples` without the expected host count, so far

    def close(self):
        self.mm.stop()

    def samples(self, k, rnd, expect=None):
        """Nanoseconds of ``k`` lookups of random topics (no warm-up: one block of an interleaved
        run); an answer without ``expect`` hosts adds one to :attr:`wrong`."""
        hosts = self.mm.hosts
        order = [rnd.choice(self.topics) for _ in range(k)]
        pc = time.perf_counter_ns
        lat = [0] * k
        wrong = 0
        for i, t in enumerate(order):
            t0 = pc()
            answer = hosts(t)
            lat[i] = pc() - t0
            if expect is not None and len(answer) != expect:
                wrong += 1
        self.wrong += wrong
        return lat

    def latency(self, n, rnd, warmup=1000, pause=0.0, budget=None, expect=None):
        """``n`` timed lookups of random topics (after ``warmup``); a latency summary.

        ``pause`` seconds between lookups make it an open-ish loop (lookups while something
        else loads the registry); ``expect`` is the host count every answer must have.
        """
        hosts = self.mm.hosts
        order = [rnd.choice(self.topics) for _ in range(n + warmup)]
        for t in order[:warmup]:
            hosts(t)
        pc = time.perf_counter_ns
        lat = []
        wrong = 0
        deadline = time.monotonic() + (budget or 1e9)
        for t in order[warmup:]:
            t0 = pc()
            answer = hosts(t)
            lat.append(pc() - t0)
            if expect is not None and len(answer) != expect:
                wrong += 1
            if pause:
                time.sleep(pause)
            if time.monotonic() > deadline:
                break
        summary = latency_summary(lat)
        summary["wrong_answers"] = wrong
        summary["samples_ns"] = lat
        return summary


def populate(gen, hosts, batch=256):
    """Register hosts ``0 .. hosts-1`` (10 topics each, long TTL) through a load generator."""
    return gen.command(op="flood", first=0, count=hosts, batch=batch, rounds=1,
                       interval=LONG_INTERVAL, ttl=LONG_TTL, budget=120)


def ingest_rate(gen, registry_pid, hosts, rounds, batch=1, budget=60):
    """Topic refreshes per second (wall and per registry CPU-second) for ``rounds`` heartbeats of
    ``hosts`` already-registered hosts, ``batch`` hosts per message."""
    cpu0 = process_cpu_seconds(registry_pid)
    result = gen.command(op="flood", first=0, count=hosts, batch=batch, rounds=rounds,
                         interval=LONG_INTERVAL, ttl=LONG_TTL, budget=budget)
    cpu = process_cpu_seconds(registry_pid) - cpu0
    refreshed = result["rounds"] * hosts * loadgen.TOPICS_PER_HOST
    return {"topic_refreshes_per_s": refreshed / result["seconds"],
            "hosts_per_s": result["rounds"] * hosts / result["seconds"],
            "topic_refreshes_per_cpu_s": refreshed / cpu if cpu > 0 else None,
            "registry_cpu_s": cpu, "seconds": result["seconds"], "frame_bytes": result["frame_bytes"]}


def change_propagation(endpoint, n, gap=0.003, warmup=20, timeout=1.0, budget=60.0, give_up=10):
    """Latencies (ns) from a change's cast leaving a host's DEALER to a live-subscribed cache
    holding the new answer; a latency summary with the samples and the count of missed changes.

    The change alternates between host ``prop-mover`` joining and leaving the topic (a
    HEARTBEAT, then an UNREGISTER); ``prop-anchor`` stays, so the topic always exists. The time
    of arrival is taken in the client's feed task the moment it applied the DELTA (a wrapper
    around the cache's ``apply_delta``), both ends reading one clock in this process. A change
    not seen within ``timeout`` counts as missed; after ``give_up`` misses in a row, or when
    ``budget`` seconds are spent, the run stops with what it has.
    """
    topic = "propagation-topic"
    mm = matchmaker(endpoint, cache_max_age=1.0, live=True)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://{endpoint}")
    join = protocol.encode(protocol.Heartbeat((protocol.HostState("prop-mover", LONG_INTERVAL, LONG_TTL, (topic,)),)))
    leave = protocol.encode(protocol.Unregister(("prop-mover",)))
    arrived, event = [], threading.Event()
    original = mm.cache.apply_delta

    def timed_apply(delta, now, **options):  # the cache's signature, whatever options it grows
        outcome = original(delta, now, **options)
        if delta.topic == topic:
            arrived.append(time.perf_counter_ns())
            event.set()
        return outcome

    try:
        sock.send(protocol.encode(protocol.Heartbeat((protocol.HostState("prop-anchor", LONG_INTERVAL, LONG_TTL,
                                                                        (topic,)),))))
        # A client subscribes when a lookup's answer comes from a registry that is UP (a registry
        # just started may still be WARMING): look up until the feed has delivered a snapshot.
        deadline = time.monotonic() + 15
        while not (mm._feed is not None and mm._feed.stats["snapshots"] > 0):
            if time.monotonic() > deadline:
                raise RuntimeError("the registry's live feed delivered no snapshot within 15 s")
            mm.cache.invalidate(topic)
            mm.hosts(topic)
            time.sleep(0.1)
        time.sleep(0.2)
        mm.cache.apply_delta = timed_apply
        lat, missed, in_a_row = [], 0, 0
        deadline = time.monotonic() + budget
        for i in range(n + warmup):
            if in_a_row >= give_up or time.monotonic() > deadline:
                break
            event.clear()
            t0 = time.perf_counter_ns()
            sock.send(join if i % 2 == 0 else leave)
            if not event.wait(timeout):
                missed += 1
                in_a_row += 1
                continue
            in_a_row = 0
            if i >= warmup:
                lat.append(arrived[-1] - t0)
            time.sleep(gap)
        summary = latency_summary(lat)
        summary.update(missed=missed, samples_ns=lat, feed_stats=dict(mm._feed.stats) if mm._feed else None)
        return summary
    finally:
        sock.close()
        ctx.term()
        mm.stop()
