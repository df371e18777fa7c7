"""The anchors: what rpcmm is compared against, measured in the same run, the same way.

Each mirrors one script of ``shared/baselines`` (same payload sizes, data sets, loop shapes):

- :func:`dict_lookup`: the floor of a cached lookup, a bare dict of topics with an expiry
  check (``04_dict_lookup.py``);
- :class:`ZmqRoundTrip`: raw pyzmq DEALER->ROUTER request/reply between two processes
  (``02_zmq_raw.py``), here with the request and reply sizes of an rpcmm LOOKUP/HOSTS pair;
- :class:`HandoffRoundTrip`: the same round trip with the one thread hand-off an oslo.messaging
  server adds (its threading executor runs every request), the replies coming back on a socket
  of their own as a zmq:// call's do: the least any zmq driver's call costs under oslo, with
  nothing of oslo's or the driver's own work (no baseline script; informational);
- :class:`RedisMatchmaker`: the seed's Redis matchmaker data model driven by redis-py
  (``03_redis.py``): lookup = SMEMBERS then EXISTS per member, heartbeat = EXPIRE per topic
  with one host's topics per pipeline;
- :func:`pub_sub_one_way`: raw pyzmq PUB->SUB one-way latency between two processes.

The two lookup-latency anchors (:meth:`ZmqRoundTrip.take`, :meth:`RedisMatchmaker.lookup_samples`)
time ``k`` operations at a time against one long-lived server, so the caller can interleave
them in short blocks with the rpcmm lookups they anchor (:func:`benchmarks.measure.interleaved`):
on a shared machine whose speed drifts by 2x over tens of seconds, an anchor measured apart
from its rpcmm figure would make their ratio swing with the drift.

The oslo.messaging-over-RabbitMQ anchor shares its code with rpcmm's own oslo rows, in
:mod:`benchmarks.oslo_rpc`.
"""

import random
import struct
import time

import zmq

from benchmarks import servers
from benchmarks.measure import latency_summary, per_op_ns

__all__ = ["LookupData", "dict_lookup", "ZmqRoundTrip", "HandoffRoundTrip", "RedisMatchmaker", "pub_sub_one_way"]

_TIMEOUT_MS = 10_000


class LookupData:
    """The cached-lookup data set: ``topics`` topics, each mapped to a tuple of 10 host names
    drawn from 500 shared strings (as a cache holds them), and ``samples`` pre-shuffled keys."""

    def __init__(self, topics=100_000, samples=1_000_000, seed=1):
        rnd = random.Random(seed)
        names = [f"host-{i:03d}.example.org" for i in range(500)]
        self.answers = {f"topic.{i:06d}": tuple(names[(i + j) % 500] for j in range(10)) for i in range(topics)}
        keys = list(self.answers)
        rnd.shuffle(keys)
        self.sample = [keys[i % topics] for i in range(samples)]


def dict_lookup(data, repeat):
    """ns per ``lookup(topic)``: ``exp.get`` plus an expiry-timestamp check (the anchor's shape)."""
    now = time.monotonic()
    exp = {k: (now + 3600.0, v) for k, v in data.answers.items()}

    def lookup(topic):
        e = exp.get(topic)
        if e is None or e[0] < now:
            return ()
        return e[1]

    return per_op_ns("lookup(k)", {"lookup": lookup}, data.sample, repeat)


def _release(ctx, *sockets):
    """Close ``sockets`` (None: never opened), then term ``ctx`` (or nothing if None)."""
    for sock in sockets:
        if sock is not None:
            sock.close()
    if ctx is not None:
        ctx.term()


class ZmqRoundTrip:
    """Raw DEALER->ROUTER round trips to one long-lived ROUTER in another process.

    The ``reply`` role answers at most ``max_requests`` requests (then exits, as it does after
    30 s idle); :meth:`take` refuses to go past that count. :meth:`close` stops the process.
    """

    def __init__(self, request_bytes, reply_bytes, max_requests):
        port = servers.free_port()
        self.server = servers.start_role("reply", port, reply_bytes, max_requests, name="zmq-reply")
        self.left = max_requests
        self.payload = b"x" * request_bytes
        self.ctx = self.sock = None
        try:
            self.ctx = zmq.Context()
            self.sock = self.ctx.socket(zmq.DEALER)
            self.sock.setsockopt(zmq.LINGER, 0)
            self.sock.RCVTIMEO = _TIMEOUT_MS
            self.sock.connect(f"tcp://127.0.0.1:{port}")
        except BaseException:
            self.close()
            raise

    def take(self, k):
        """Nanoseconds of ``k`` timed round trips (send a request, receive the reply)."""
        if k > self.left:
            raise RuntimeError(f"the reply server has {self.left} requests left, {k} asked")
        self.left -= k
        d, payload, pc = self.sock, self.payload, time.perf_counter_ns
        lat = [0] * k
        for i in range(k):
            t = pc()
            d.send(payload)
            d.recv()
            lat[i] = pc() - t
        return lat

    def close(self):
        _release(self.ctx, self.sock)
        self.ctx = self.sock = None
        self.server.stop()


class HandoffRoundTrip:
    """The floor of an oslo.messaging call over zmq: a raw request/reply plus oslo's executor.

    The ``handoff`` role's reading thread receives each request and submits it to a
    ``futurist.ThreadPoolExecutor`` of ``workers`` threads (what oslo's threading executor is;
    64 is oslo's default ``executor_thread_pool_size``); the worker sends the reply through a
    DEALER to a ROUTER bound here, which the timing thread reads itself. That is a zmq://
    call's path with everything in Python taken out: no oslo client or dispatcher, no
    serialization, no matchmaker. :meth:`take` refuses to go past ``max_requests``;
    :meth:`close` stops the process.
    """

    def __init__(self, request_bytes, reply_bytes, max_requests, workers=64, idle_s=300):
        self.left = max_requests
        self.payload = b"x" * request_bytes
        self.ctx = self.sock = self.replies = self.server = None
        try:
            self.ctx = zmq.Context()
            self.replies = self.ctx.socket(zmq.ROUTER)
            self.replies.setsockopt(zmq.LINGER, 0)
            self.replies.RCVTIMEO = _TIMEOUT_MS
            reply_port = self.replies.bind_to_random_port("tcp://127.0.0.1")
            port = servers.free_port()
            self.server = servers.start_role("handoff", port, reply_port, reply_bytes, workers, max_requests, idle_s,
                                             name="zmq-handoff")
            self.sock = self.ctx.socket(zmq.DEALER)
            self.sock.setsockopt(zmq.LINGER, 0)
            self.sock.connect(f"tcp://127.0.0.1:{port}")
        except BaseException:
            self.close()
            raise

    def take(self, k):
        """Nanoseconds of ``k`` timed round trips, after one untimed one (as
        :meth:`benchmarks.oslo_rpc.Side.take` does, the calls this alternates with)."""
        if k + 1 > self.left:
            raise RuntimeError(f"the handoff server has {self.left} requests left, {k + 1} asked")
        self.left -= k + 1
        d, replies, payload, pc = self.sock, self.replies, self.payload, time.perf_counter_ns
        d.send(payload)
        replies.recv_multipart(copy=False)
        lat = [0] * k
        for i in range(k):
            t = pc()
            d.send(payload)
            replies.recv_multipart(copy=False)
            lat[i] = pc() - t
        return lat

    def close(self):
        _release(self.ctx, self.sock, self.replies)
        self.ctx = self.sock = self.replies = None
        if self.server is not None:
            self.server.stop()
            self.server = None


class RedisMatchmaker:
    """The seed's Redis matchmaker data model on a loopback redis-server (see module docstring).

    1000 topics x 10 hosts; before lookups, 2 of each topic's 10 host keys are deleted, so each
    lookup filters out 2 and returns 8, as in the anchor script.
    """

    TOPICS = 1000
    HOSTS = 10
    TTL = 30

    def __init__(self, port):
        import redis
        self.r = redis.Redis(host="127.0.0.1", port=port)
        self.topics = [f"topic{i:04d}" for i in range(self.TOPICS)]
        self.hosts = [f"host{i:03d}" for i in range(self.HOSTS)]
        self.loaded_at = float("-inf")

    def close(self):
        self.r.close()

    def load(self):
        """SADD topic topic.host + SET topic.host '' EX ttl for every pair, then expire 2 per topic."""
        r = self.r
        started = time.monotonic()  # the keys' TTL runs from here on
        r.flushdb()
        p = r.pipeline(transaction=False)
        for t in self.topics:
            for h in self.hosts:
                k = f"{t}.{h}"
                p.sadd(t, k)
                p.set(k, "", ex=self.TTL)
        p.execute()
        p = r.pipeline(transaction=False)
        for t in self.topics:
            for h in self.hosts[:2]:
                p.delete(f"{t}.{h}")
        p.execute()
        self.loaded_at = started

    def lookup_samples(self, k, rnd):
        """Nanoseconds of ``k`` lookups of random topics: SMEMBERS, then EXISTS per member (1 + 10
        round trips). Reloads the data set first (untimed) when half its TTL has gone by."""
        if time.monotonic() - self.loaded_at > self.TTL / 2:
            self.load()
        r = self.r
        order = [rnd.choice(self.topics) for _ in range(k)]
        pc = time.perf_counter_ns
        lat = [0] * k
        alive = ()
        for i, t in enumerate(order):
            t0 = pc()
            members = r.smembers(t)
            alive = [m for m in members if r.exists(m)]
            lat[i] = pc() - t0
        assert not order or len(alive) == self.HOSTS - 2, len(alive)
        return lat

    def heartbeat_rate(self, n):
        """Topic-heartbeats per second: a host's 10 EXPIREs in one pipeline (1 round trip per host).

        ``n`` topic-heartbeats in all, i.e. ``n // 10`` pipelines, as the anchor script does them.
        """
        r = self.r
        host_topics = self.topics[:10]
        t0 = time.perf_counter()
        for b in range(n // 10):
            h = self.hosts[b % len(self.hosts)]
            p = r.pipeline(transaction=False)
            for t in host_topics:
                p.expire(f"{t}.{h}", self.TTL)
            p.execute()
        return (n // 10) * 10 / (time.perf_counter() - t0)


def pub_sub_one_way(n, gap_us, size):
    """One-way PUB->SUB latency (CLOCK_MONOTONIC stamps, two processes); a latency summary."""
    port = servers.free_port()
    server = servers.start_role("pub", port, n, gap_us, size, name="zmq-pub", stdin=True)
    ctx = zmq.Context()
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    s.RCVTIMEO = _TIMEOUT_MS
    try:
        s.connect(f"tcp://127.0.0.1:{port}")
        time.sleep(0.3)  # let the subscription reach the publisher (slow joiner)
        server.popen.stdin.write("go\n")
        server.popen.stdin.flush()
        lat = []
        for _ in range(n + 1):
            msg = s.recv()
            now = time.monotonic_ns()
            if msg == b"END":
                break
            lat.append(now - struct.unpack_from("<q", msg)[0])
        return dict(latency_summary(lat), samples_ns=lat)
    finally:
        s.close()
        ctx.term()
        server.stop()
