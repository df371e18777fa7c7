"""``benchmarks/run [--quick] [--json FILE]``: rpcmm against its anchors, side by side (issue #6).

Every anchor is measured in this run, on this machine, next to the rpcmm figure it anchors.
The machine is a shared VM whose speed drifts by up to 2x over tens of seconds, so the remote
lookup and its two latency anchors (a raw pyzmq round trip, the Redis matchmaker's lookup) are
sampled in alternating blocks of a fraction of a second each (anchor, rpcmm, anchor, rpcmm,
...) against one long-lived server per side, and each side's percentiles are taken over its
pooled samples: the drift then lands on both sides of the ratio alike, where anchors measured
minutes apart made the ratios swing. oslo.messaging is measured the same way: RabbitMQ, the
zmq registry and one oslo server child per transport are all started first, then calls
alternate in blocks of 100 (rabbit://, zmq://, ...) and casts in bursts of 2000-5000
(rabbit://, zmq://, oslo's dispatch ceiling, ...), each transport's cast figure being its
median burst (:mod:`benchmarks.oslo_rpc`). The dispatch ceiling -- oslo's own threading
executor fed by a fake transport, no driver at all -- bounds any driver's cast throughput, so
its ratio to RabbitMQ's says whether a cast goal is reachable at all. The other anchors
alternate with their rpcmm figure repeat by repeat (dict vs cached lookup, Redis heartbeat vs
registry ingest, PUB->SUB vs change propagation, the latter two at the same pace). Each figure
is the median of several repeats; the min-max range is kept in the JSON.

Sections (each one's failure is reported in its rows and the others still run; section 4
runs last, see main()):

1. cached lookup vs a bare dict lookup with an expiry check;
2. remote lookup (cache bypassed) vs a raw pyzmq DEALER->ROUTER round trip of the same sizes;
3. remote lookup vs the seed's Redis matchmaker lookup; registry ingest vs its Redis heartbeat;
4. oslo.messaging call/cast over rpcmm's ``zmq://`` vs over RabbitMQ, side by side, and oslo's
   server dispatch ceiling (informational);
5. change propagation to live-subscribed caches vs raw PUB->SUB one way;
6. scale: one registry from 1k to 100k hosts (:mod:`benchmarks.scale`).

Exit status: 0 when everything that is installed was measured (goals met or not), 1 when a
measurement failed, 2 on bad usage.
"""

import argparse
import contextlib
import importlib.util
import os
import random
import signal
import statistics
import sys
import time
import traceback
import warnings

from benchmarks import anchors, bare_oslo, loadgen, oslo_rpc, report, rpcmm_paths, scale, servers
from benchmarks.measure import interleaved, latency_summary, machine_info, spread

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(ROOT, "doc", "images")


class Settings:
    """Counts and repeats: ``--quick`` (about two minutes) or the full run."""

    def __init__(self, quick):
        self.quick = quick
        self.repeats = 2 if quick else 3
        self.dict_samples = 200_000 if quick else 1_000_000
        self.timeit_repeat = 3 if quick else 7
        self.rtt_n = 3000 if quick else 20_000
        self.rtt_block = 250  # round trips per block when interleaving raw zmq and rpcmm lookups
        self.redis_lookups = 1000 if quick else 5000
        self.redis_block = 100  # lookups per block when interleaving Redis and rpcmm (11 round trips each)
        self.lookup_warmup = 1000
        self.settle = 0.02  # seconds of untimed lookups at the start of every interleaved block (see interleaved())
        self.redis_heartbeats = 3000 if quick else 20_000
        self.ingest_rounds = 10 if quick else 40
        self.oslo_n = 1000 if quick else 2000  # calls per transport and run, in blocks of oslo_block
        self.oslo_block = 100  # calls per block when alternating rabbit:// and zmq://
        self.oslo_warmup = 200  # calls per transport before the first run, discarded
        self.oslo_cast_n = 2000 if quick else 5000  # casts per burst (a second or so each)
        self.oslo_bursts = 3 if quick else 2  # cast bursts per transport and run, alternating
        self.oslo_ceiling_n = 5000 if quick else 20_000  # messages per dispatch-ceiling burst
        self.pubsub_n = 1000 if quick else 5000
        self.scale_sizes = (1000, 10_000) if quick else (1000, 10_000, 100_000)
        self.scale_paced_s = 3 if quick else 8
        self.scale_idle_lookups = 1000 if quick else 5000


def _strip(runs):
    """Latency summaries without their raw samples (kept out of the JSON)."""
    return [{k: v for k, v in r.items() if k != "samples_ns"} for r in runs]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Run:
    """Collects metric rows and raw details; a section that fails marks its rows failed."""

    def __init__(self, settings, checkpoint=None):
        self.s = settings
        self.checkpoint = checkpoint  # called after each section (writes the JSON so far)
        self.rows = []
        self.details = {}
        self.failed = False
        self.plots = []

    def section(self, title, fn, fallback_rows):
        """Run one section; on Missing its rows become 'skipped', on another error 'error'."""
        log(f"== {title}")
        t = time.perf_counter()
        try:
            fn()
        except servers.Missing as exc:
            log(f"   skipped: {exc}")
            self.rows += [dict(r, status=f"skipped: {exc}") for r in fallback_rows()]
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            self.failed = True
            log(f"   FAILED: {exc}\n{traceback.format_exc()}")
            self.rows += [dict(r, status=f"error: {type(exc).__name__}: {exc}") for r in fallback_rows()]
        log(f"   ({time.perf_counter() - t:.1f} s)")
        if self.checkpoint:
            self.checkpoint()


# -- sections -------------------------------------------------------------------------------


def lookups_section(run, registry_endpoint, registry_pid):
    """Sections 1 and 2: cached and remote lookups against the dict and raw-zmq anchors (the
    remote lookup and the raw round trip sampled in alternating blocks)."""
    s = run.s
    data = anchors.LookupData(topics=100_000, samples=s.dict_samples)
    dict_ns, cached, cached_hosts = [], [], []
    for _ in range(s.repeats):
        dict_ns.append(anchors.dict_lookup(data, s.timeit_repeat)["median_ns"])
        c = rpcmm_paths.cached_lookup(registry_endpoint, data, s.timeit_repeat)
        cached.append(c["anycast"]["median_ns"])
        cached_hosts.append(c["hosts"]["median_ns"])
    del data
    run.details["cached_lookup"] = {"dict_ns": dict_ns, "rpcmm_lookup_anycast_ns": cached,
                                    "rpcmm_hosts_ns": cached_hosts, "topics": 100_000, "samples": s.dict_samples}
    d, c, h = spread(dict_ns), spread(cached), spread(cached_hosts)
    run.rows.append(report.metric(
        "cached lookup: mm.lookup(Anycast(topic)), 100k topics", c["median"], "ns",
        "dict get + expiry check", d["median"], ("<=", 3.0), value_spread=c, anchor_spread=d))
    run.rows.append(report.metric(
        "cached lookup: mm.hosts(topic) (validates the name)", h["median"], "ns",
        "dict get + expiry check", d["median"], None, value_spread=h, anchor_spread=d))

    # Section 2: the registry holds 1000 hosts x 10 topics (1000 topics of 10 hosts). One reply
    # process and one DEALER for the raw round trips, one matchmaker for rpcmm's lookups, sampled
    # in alternating blocks (see the module docstring); each repeat pools its blocks per side.
    topics = [loadgen.topic_name(j) for j in range(1000)]
    request_bytes, reply_bytes = rpcmm_paths.lookup_frame_sizes(registry_endpoint, topics[0])
    zmq_runs, rpcmm_runs = [], []
    raw = remote = None
    try:
        raw = anchors.ZmqRoundTrip(request_bytes, reply_bytes,
                                   max_requests=s.lookup_warmup + s.repeats * (s.rtt_n + s.rtt_block)
                                   + _SETTLE_ALLOWANCE * s.repeats * (s.rtt_n // s.rtt_block + 2))
        remote = rpcmm_paths.RemoteLookup(registry_endpoint, topics)
        rnd = random.Random(3)
        sides = {"zmq": raw.take, "rpcmm": lambda k: remote.samples(k, rnd, expect=10)}
        interleaved(sides, s.lookup_warmup, s.rtt_block)  # warm-up, discarded
        for _ in range(s.repeats):
            wrong = remote.wrong
            got = _interleaved_runs(sides, s.rtt_n, s.rtt_block, s.settle)
            zmq_runs.append(got["zmq"])
            rpcmm_runs.append(dict(got["rpcmm"], wrong_answers=remote.wrong - wrong))
    finally:
        if remote is not None:
            remote.close()
        if raw is not None:
            raw.close()
    run.details["remote_lookup"] = {
        "request_bytes": request_bytes, "reply_bytes": reply_bytes, "n": s.rtt_n, "block": s.rtt_block,
        "zmq_runs": _strip(zmq_runs), "rpcmm_runs": _strip(rpcmm_runs)}
    cdfs = run.details.setdefault("lookup_cdfs_us", {})
    cdfs["rpcmm remote lookup (cache bypassed)"] = report.quantiles(rpcmm_runs[-1]["samples_ns"])
    cdfs[f"raw zmq DEALER->ROUTER ({request_bytes} B / {reply_bytes} B)"] = report.quantiles(zmq_runs[-1]["samples_ns"])
    for q in ("p50_us", "p99_us"):
        v, a = spread([r[q] for r in rpcmm_runs]), spread([r[q] for r in zmq_runs])
        run.rows.append(report.metric(
            f"remote lookup (cache bypassed) {q[:3]}", v["median"], "µs",
            f"raw pyzmq DEALER->ROUTER RTT {q[:3]} ({request_bytes} B / {reply_bytes} B)", a["median"],
            ("<=", 1.5), value_spread=v, anchor_spread=a))
    run.details["remote_lookup_p50_us"] = spread([r["p50_us"] for r in rpcmm_runs])


#: Round trips the raw zmq server allows per block for settling (20 ms at a fast 50 µs each).
_SETTLE_ALLOWANCE = 400


def _interleaved_runs(sides, n, block, settle=0):
    """One repeat of :func:`interleaved`: a latency summary (with its samples) per side.

    Bounded in time as well as count (a generous 10 ms per sample and side, at least 60 s).
    """
    budget = max(60.0, 0.01 * n * len(sides))
    got = interleaved(sides, n, block, budget=budget, settle=settle)
    short = {name: len(v) for name, v in got.items() if len(v) < n}
    if short:
        log(f"   budget of {budget:.0f} s spent: {short} of {n} samples")
    return {name: dict(latency_summary(v), samples_ns=v) for name, v in got.items()}


def _remote_rows():
    return [report.skipped(f"remote lookup (cache bypassed) {q}", "µs", f"raw pyzmq DEALER->ROUTER RTT {q}",
                           ("<=", 1.5), "") for q in ("p50", "p99")]


def _cached_rows():
    return [report.skipped("cached lookup: mm.lookup(Anycast(topic)), 100k topics", "ns", "dict get + expiry check",
                           ("<=", 3.0), "")]


#: The bound of the Redis row: a zmq round trip with no lookup in it.
_RAW_VS_REDIS = "bound: raw zmq round trip (lookup's sizes, no work) p50 vs Redis lookup"


def redis_section(run, registry_endpoint, registry_pid, gen):
    """Section 3: remote lookup vs Redis lookup (interleaved in blocks); registry ingest vs Redis heartbeat.

    The remote lookup of the Redis row is measured here, in blocks alternating with the Redis
    lookups (one redis-py client, one matchmaker), not taken from section 2. A third side, the
    raw zmq round trip of section 2 (a lookup's frame sizes, no work at either end), bounds what
    any lookup over zmq can get against Redis on this machine.
    """
    s = run.s
    ingest, batched = [], []
    redis_lookup, rpcmm_lookup, raw_lookup, redis_hb = [], [], [], []
    rnd = random.Random(5)
    redis_error = None
    server = rds = remote = raw = None
    try:
        try:
            server, port = servers.start_redis()
            rds = anchors.RedisMatchmaker(port)
            run.details["redis_server"] = server.info.get("version")
        except servers.Missing as exc:
            redis_error = str(exc)
        if rds is not None:
            topics = [loadgen.topic_name(j) for j in range(1000)]
            remote = rpcmm_paths.RemoteLookup(registry_endpoint, topics)
            request_bytes, reply_bytes = rpcmm_paths.lookup_frame_sizes(registry_endpoint, topics[0])
            raw = anchors.ZmqRoundTrip(request_bytes, reply_bytes,
                                       max_requests=s.lookup_warmup // 5 + s.repeats * (s.redis_lookups + s.redis_block)
                                       + _SETTLE_ALLOWANCE * s.repeats * (s.redis_lookups // s.redis_block + 2))
            sides = {"redis": lambda k: rds.lookup_samples(k, rnd),
                     "rpcmm": lambda k: remote.samples(k, rnd, expect=10),
                     "raw": raw.take}
        for i in range(s.repeats):
            if rds is not None:
                rds.load()  # fresh keys each repeat (lookup_samples also reloads them before the 30 s TTL)
                if i == 0:
                    interleaved(sides, s.lookup_warmup // 5, s.redis_block)  # warm-up, discarded
                wrong = remote.wrong
                got = _interleaved_runs(sides, s.redis_lookups, s.redis_block, s.settle)
                redis_lookup.append(got["redis"])
                rpcmm_lookup.append(dict(got["rpcmm"], wrong_answers=remote.wrong - wrong))
                raw_lookup.append(got["raw"])
                redis_hb.append(rds.heartbeat_rate(s.redis_heartbeats))
            ingest.append(rpcmm_paths.ingest_rate(gen, registry_pid, 1000, s.ingest_rounds, batch=1))
            batched.append(rpcmm_paths.ingest_rate(gen, registry_pid, 1000, s.ingest_rounds * 4, batch=256))
    finally:
        if raw is not None:
            raw.close()
        if remote is not None:
            remote.close()
        if rds is not None:
            rds.close()
        if server is not None:
            server.stop()
    run.details["ingest"] = {"one_host_per_message": ingest, "256_hosts_per_message": batched,
                             "redis_lookup": _strip(redis_lookup), "redis_heartbeat_topic_per_s": redis_hb,
                             "rpcmm_lookup_interleaved_with_redis": _strip(rpcmm_lookup),
                             "raw_zmq_interleaved_with_redis": _strip(raw_lookup),
                             "lookup_block": s.redis_block}
    if redis_lookup:
        run.details.setdefault("lookup_cdfs_us", {})["Redis matchmaker lookup (SMEMBERS + 10 EXISTS)"] = \
            report.quantiles(redis_lookup[-1]["samples_ns"])
    v = spread([r["topic_refreshes_per_s"] for r in ingest])
    vb = spread([r["topic_refreshes_per_s"] for r in batched])
    vc = spread([r["topic_refreshes_per_cpu_s"] for r in ingest])
    if rds is None:
        run.rows.append(report.skipped("remote lookup p50 vs Redis matchmaker lookup (10 hosts)", "µs",
                                       "redis-py SMEMBERS + EXISTS per member", (">=", 8.0), f"skipped: {redis_error}",
                                       ratio_is="anchor/value"))
        run.rows.append(report.metric("registry ingest, one host (10 topics) per message", v["median"],
                                      "topic refreshes/s", "Redis EXPIRE per topic, 1 pipeline per host", None,
                                      None, value_spread=v, note=f"anchor skipped: {redis_error}"))
    else:
        a = spread([r["p50_us"] for r in redis_lookup])
        rv = spread([r["p50_us"] for r in rpcmm_lookup])
        run.rows.append(report.metric(
            "remote lookup p50 vs Redis matchmaker lookup (10 hosts)", rv["median"],
            "µs", "redis-py SMEMBERS + EXISTS per member (p50)", a["median"], (">=", 8.0), ratio_is="anchor/value",
            value_spread=rv, anchor_spread=a))
        w = spread([r["p50_us"] for r in raw_lookup])
        run.rows.append(report.metric(
            _RAW_VS_REDIS, w["median"], "µs", "redis-py SMEMBERS + EXISTS per member (p50)", a["median"], None,
            ratio_is="anchor/value", value_spread=w, anchor_spread=a))
        ah = spread(redis_hb)
        run.rows.append(report.metric(
            "registry ingest, one host (10 topics) per message", v["median"], "topic refreshes/s",
            "Redis EXPIRE per topic, 1 pipeline per host", ah["median"], (">=", 10.0), value_spread=v,
            anchor_spread=ah))
        run.rows.append(report.metric(
            "registry ingest per registry CPU-second, one host per message", vc["median"], "topic refreshes/CPU-s",
            "Redis EXPIRE per topic, 1 pipeline per host", ah["median"], None, value_spread=vc, anchor_spread=ah))
        run.rows.append(report.metric(
            "registry ingest, 256 hosts per message", vb["median"], "topic refreshes/s",
            "Redis EXPIRE per topic, 1 pipeline per host", ah["median"], None, value_spread=vb, anchor_spread=ah))


def _redis_rows():
    return [report.skipped("remote lookup p50 vs Redis matchmaker lookup (10 hosts)", "µs",
                           "redis-py SMEMBERS + EXISTS per member", (">=", 8.0), "", ratio_is="anchor/value"),
            report.skipped("registry ingest, one host (10 topics) per message", "topic refreshes/s",
                           "Redis EXPIRE per topic, 1 pipeline per host", (">=", 10.0), "")]


_CEILING = "oslo.messaging server dispatch ceiling, no transport (threading executor)"
_CEILING_VS_RABBIT = "oslo.messaging dispatch ceiling / rabbit:// cast throughput"
_EVENTLET_CEILING = "oslo.messaging dispatch ceiling, no transport, eventlet executor / rabbit:// casts"
_RABBIT_CAST = "same cast over rabbit:// + RabbitMQ"
_FLOOR = "call floor: raw zmq round trip + oslo's executor hand-off"
_BARE = "oslo.messaging over a bare zmq transport (oslo's own cost)"


def _oslo_rows(status=""):
    return [report.skipped("oslo.messaging call p50 (zmq://)", "µs", "same call over rabbit:// + RabbitMQ",
                           (">=", 5.0), status, ratio_is="anchor/value"),
            report.skipped("oslo.messaging call p99 (zmq://)", "µs", "same call over rabbit:// + RabbitMQ",
                           (">=", 5.0), status, ratio_is="anchor/value"),
            report.skipped("oslo.messaging cast throughput (zmq://)", "casts/s", _RABBIT_CAST, (">=", 10.0), status),
            report.skipped(_FLOOR + " p50", "µs", "same call over rabbit:// + RabbitMQ", None, status,
                           ratio_is="anchor/value"),
            report.skipped(_FLOOR + " p99", "µs", "same call over rabbit:// + RabbitMQ", None, status,
                           ratio_is="anchor/value"),
            report.skipped(_BARE + ": call p50", "µs", "same call over rabbit:// + RabbitMQ", None, status,
                           ratio_is="anchor/value"),
            report.skipped(_BARE + ": call p99", "µs", "same call over rabbit:// + RabbitMQ", None, status,
                           ratio_is="anchor/value"),
            report.skipped(_BARE + ": casts", "casts/s", _RABBIT_CAST, None, status),
            report.skipped(_CEILING, "messages/s", "-", None, status),
            report.skipped(_CEILING_VS_RABBIT, "messages/s", _RABBIT_CAST, None, status),
            report.skipped(_EVENTLET_CEILING, "messages/s", _RABBIT_CAST, None, status)]


def _stop_rabbit():
    """Stop the RabbitMQ node and its epmd if this run started them (by the PIDs it got)."""
    for srv in reversed(list(servers.STARTED)):
        if srv.name in ("rabbitmq-server", "epmd"):
            srv.stop()


def oslo_section(run):
    """Section 4: oslo.messaging call/cast over rabbit:// (anchor) and zmq:// (rpcmm's driver),
    side by side, and three bounds no zmq driver can pass: oslo.messaging over a bare transport
    that only moves bytes (:mod:`benchmarks.bare_oslo`: oslo's own cost, for calls and casts),
    oslo's own dispatch ceiling for casts, and the call floor for calls (a raw zmq round trip
    with oslo's executor hand-off, :class:`benchmarks.anchors.HandoffRoundTrip`, with the frame
    sizes of a zmq:// call; its blocks alternate with the calls').

    Every server is started first (the zmq registry and oslo server child, RabbitMQ and its
    oslo server child, the bare transport's server child), one client per transport lives in
    this process (one ``cfg.CONF``, parsed with the zmq config file), all are warmed up, then
    per run: calls in alternating blocks of ``oslo_block`` until each transport has ``oslo_n``,
    then cast bursts in turn (rabbit, zmq, bare, dispatch ceiling, the dispatch ceiling with
    oslo's eventlet executor in a monkey-patched child) ``oslo_bursts`` times. See
    :mod:`benchmarks.oslo_rpc`.
    """
    s = run.s
    runs = max(1, s.repeats - 1) if s.quick else s.repeats
    try:
        import oslo_messaging  # noqa: F401
    except ImportError:
        raise servers.Missing("oslo.messaging not installed (pip install oslo.messaging)") from None
    zmq_status = oslo_rpc.driver_status()
    rabbit_status = None
    sides = {}
    details = {"call_block": s.oslo_block, "cast_n": s.oslo_cast_n, "ceiling_n": s.oslo_ceiling_n}
    call_runs, cast_bursts, ceiling_per_s, eventlet_ceiling_per_s = {}, {}, [], []
    t_start = time.perf_counter()
    # Everything started here is stopped on leaving, newest first, even if one stop fails:
    # the clients (before their servers), the dispatch ceiling, RabbitMQ and epmd, the registry.
    with contextlib.ExitStack() as stack:
        conf_path = None
        if zmq_status is None:
            registry, endpoint = servers.start_registry(name="oslo-registry")
            stack.callback(registry.stop)
            conf_path = oslo_rpc.write_zmq_config(endpoint, "oslo-rpcmm")
        oslo_rpc.configure(conf_path)  # once: the rabbit driver ignores the [rpcmm] group
        if zmq_status is None:
            zmq_side = stack.enter_context(contextlib.closing(oslo_rpc.Side("zmq", f"zmq://{endpoint}/", conf_path)))
        stack.callback(_stop_rabbit)  # also if start_rabbit fails half-way
        try:
            _server, port, ready_s = servers.start_rabbit()
        except servers.Missing as exc:
            rabbit_status = f"skipped: {exc}"
        else:
            log(f"   rabbitmq ready in {ready_s:.1f} s")
            details["rabbit_ready_s"] = round(ready_s, 1)
            sides["rabbit"] = stack.enter_context(contextlib.closing(
                oslo_rpc.Side("rabbit", f"rabbit://guest:guest@127.0.0.1:{port}/")))
        if zmq_status is None:
            sides["zmq"] = zmq_side  # after rabbit: every turn is rabbit, zmq, bare (, ceiling)
        sides["bare"] = stack.enter_context(contextlib.closing(bare_oslo.BareSide()))
        ceiling = stack.enter_context(contextlib.closing(oslo_rpc.DispatchCeiling()))
        eventlet_ceiling = None
        if importlib.util.find_spec("eventlet") is not None:
            eventlet_ceiling = stack.enter_context(contextlib.closing(oslo_rpc.EventletCeiling()))
        else:
            details["eventlet_ceiling"] = "skipped: eventlet not installed (pip install eventlet)"
        log(f"   servers and clients ready in {time.perf_counter() - t_start:.1f} s")

        # warm-up, discarded: first calls, alternating call blocks, one short cast burst each
        wait = max(30.0, s.oslo_cast_n / 100)  # a burst at 100 casts/s would be a failure anyway
        first_call_s = {name: side.warm_up(0) for name, side in sides.items()}
        floor = None
        if zmq_status is None:  # after the first call, which starts the driver
            request_bytes, reply_bytes = oslo_rpc.call_frame_sizes(zmq_side)
            details["call_frame_bytes"] = [request_bytes, reply_bytes]
            blocks = (s.oslo_warmup + runs * s.oslo_n) // s.oslo_block + 2 * (runs + 1)
            floor = stack.enter_context(contextlib.closing(anchors.HandoffRoundTrip(
                request_bytes, reply_bytes, max_requests=s.oslo_warmup + runs * s.oslo_n + blocks * 2)))
        calls = {name: side.take for name, side in sides.items()}
        if floor is not None:
            calls["floor"] = floor.take
        interleaved(calls, s.oslo_warmup, s.oslo_block)
        for side in sides.values():
            side.cast_burst(s.oslo_cast_n // 10, wait)
        ceiling.take(s.oslo_ceiling_n // 10, wait)
        if eventlet_ceiling is not None:
            eventlet_ceiling.take(s.oslo_ceiling_n // 10, wait)

        bursts = {name: (lambda k, side=side: [side.cast_burst(s.oslo_cast_n, wait) for _ in range(k)])
                  for name, side in sides.items()}
        bursts["ceiling"] = lambda k: [ceiling.take(s.oslo_ceiling_n, wait) for _ in range(k)]
        if eventlet_ceiling is not None:
            bursts["eventlet ceiling"] = lambda k: [eventlet_ceiling.take(s.oslo_ceiling_n, wait) for _ in range(k)]
        for _ in range(runs):
            got = _interleaved_runs(calls, s.oslo_n, s.oslo_block) if calls else {}
            for name, summary in got.items():
                call_runs.setdefault(name, []).append(summary)
            casts = interleaved(bursts, s.oslo_bursts, 1, budget=60.0)  # at least one full turn
            for name in sides:
                cast_bursts.setdefault(name, []).append(casts[name])
            ceiling_per_s += casts["ceiling"]
            eventlet_ceiling_per_s += casts.get("eventlet ceiling", [])
    log(f"   measured in {time.perf_counter() - t_start:.1f} s")

    results = {}
    for name in sides:
        runs_out = []
        for call, burst in zip(call_runs[name], cast_bursts[name]):
            runs_out.append({
                "call": {k: v for k, v in call.items() if k != "samples_ns"}, "samples_ns": call["samples_ns"],
                "cast_per_s": statistics.median(b["cast_per_s"] for b in burst),
                "cast_sent_per_s": statistics.median(b["cast_sent_per_s"] for b in burst),
                "cast_bursts": burst})
        results[name] = {"first_call_s": round(first_call_s[name], 3), "runs": runs_out}
    for label in ("rabbit", "zmq", "bare"):
        res = results.get(label)
        if res:
            details[label] = {"first_call_s": res["first_call_s"], "runs": _strip(res["runs"])}
            curve = "oslo call over a bare transport" if label == "bare" else f"oslo call over {label}://"
            details.setdefault("cdf_us", {})[curve] = report.quantiles(res["runs"][-1]["samples_ns"])
    if "floor" in call_runs:
        details["floor"] = _strip(call_runs["floor"])
        details.setdefault("cdf_us", {})["call floor: zmq + executor hand-off"] = \
            report.quantiles(call_runs["floor"][-1]["samples_ns"])
    details["ceiling_per_s"] = [round(v, 1) for v in ceiling_per_s]
    if eventlet_ceiling_per_s:
        details["eventlet_ceiling_per_s"] = [round(v, 1) for v in eventlet_ceiling_per_s]
    run.details["oslo"] = details

    def pick(label, key):
        res = results.get(label)
        if not res:
            return None
        if key == "cast":  # the median burst (of every run), not the median of per-run medians
            return spread([b["cast_per_s"] for r in res["runs"] for b in r["cast_bursts"]])
        return spread([r["call"][key] for r in res["runs"]])

    rows = []
    for key, label, unit, goal, ratio_is in (
            ("p50_us", "oslo.messaging call p50 (zmq://)", "µs", (">=", 5.0), "anchor/value"),
            ("p99_us", "oslo.messaging call p99 (zmq://)", "µs", (">=", 5.0), "anchor/value"),
            ("cast", "oslo.messaging cast throughput (zmq://)", "casts/s", (">=", 10.0), "value/anchor")):
        v, a = pick("zmq", key), pick("rabbit", key)
        anchor = "same " + ("cast" if key == "cast" else "call") + " over rabbit:// + RabbitMQ"
        if v is None:
            rows.append(report.skipped(label, unit, anchor, goal, zmq_status, anchor_value=a and a["median"],
                                       ratio_is=ratio_is))
        elif a is None:
            rows.append(report.metric(label, v["median"], unit, anchor, None, goal, ratio_is=ratio_is,
                                      value_spread=v, note=rabbit_status))
        else:
            rows.append(report.metric(label, v["median"], unit, anchor, a["median"], goal, ratio_is=ratio_is,
                                      value_spread=v, anchor_spread=a))
    for key in ("p50_us", "p99_us"):
        label, a = f"{_FLOOR} {key[:3]}", pick("rabbit", key)
        if "floor" not in call_runs:
            rows.append(report.skipped(label, "µs", "same call over rabbit:// + RabbitMQ", None, zmq_status,
                                       ratio_is="anchor/value"))
            continue
        v = spread([r[key] for r in call_runs["floor"]])
        rows.append(report.metric(label, v["median"], "µs", "same call over rabbit:// + RabbitMQ",
                                  a and a["median"], None, ratio_is="anchor/value", value_spread=v, anchor_spread=a,
                                  note=None if a else rabbit_status))
    for key, label, unit in (("p50_us", _BARE + ": call p50", "µs"), ("p99_us", _BARE + ": call p99", "µs"),
                             ("cast", _BARE + ": casts", "casts/s")):
        v, a = pick("bare", key), pick("rabbit", key)
        anchor = _RABBIT_CAST if key == "cast" else "same call over rabbit:// + RabbitMQ"
        rows.append(report.metric(label, v["median"], unit, anchor, a and a["median"], None,
                                  ratio_is="value/anchor" if key == "cast" else "anchor/value", value_spread=v,
                                  anchor_spread=a, note=None if a else rabbit_status))
    c, a = spread(ceiling_per_s), pick("rabbit", "cast")
    rows.append(report.metric(_CEILING, c["median"], "messages/s", "-", None, None, value_spread=c))
    rows.append(report.metric(_CEILING_VS_RABBIT, c["median"], "messages/s", _RABBIT_CAST, a and a["median"], None,
                              value_spread=c, anchor_spread=a, note=None if a else rabbit_status))
    if eventlet_ceiling_per_s:
        e = spread(eventlet_ceiling_per_s)
        rows.append(report.metric(_EVENTLET_CEILING, e["median"], "messages/s", _RABBIT_CAST, a and a["median"], None,
                                  value_spread=e, anchor_spread=a, note=None if a else rabbit_status))
    else:
        rows.append(report.skipped(_EVENTLET_CEILING, "messages/s", _RABBIT_CAST, None, details["eventlet_ceiling"]))
    run.rows += rows


#: The anchor publishes at the pace the rpcmm changes go at (one ~3 ms after the previous one
#: arrived, see rpcmm_paths.change_propagation): on this VM a subscriber that idles between
#: messages wakes up slower than one fed every 500 µs, and both must pay the same.
_PUBSUB_GAP_US = 3500


def propagation_section(run):
    """Section 5: change propagation to live-subscribed caches vs raw PUB->SUB one way.

    The two alternate per repeat (anchor, rpcmm, anchor, rpcmm, ...), the same number of
    messages each, at the same pace.
    """
    s = run.s
    n = s.pubsub_n // 2
    anchor_runs, runs = [], []
    try:
        import rpcmm.feed  # noqa: F401  (issue #4's live cache)
    except ImportError:
        anchor_runs = [anchors.pub_sub_one_way(n, _PUBSUB_GAP_US, 100) for _ in range(s.repeats)]
        run.details["pubsub_anchor"] = _strip(anchor_runs)
        run.rows.append(report.skipped("change propagation to subscribed caches p99", "µs",
                                       "raw pyzmq PUB->SUB one-way p99 (100 B)", ("<=", 5.0),
                                       "not implemented yet (issue #4: no rpcmm.feed)",
                                       anchor_value=spread([r["p99_us"] for r in anchor_runs])["median"]))
        return
    registry, endpoint = servers.start_registry(name="feed-registry")
    try:
        for _ in range(s.repeats):
            anchor_runs.append(anchors.pub_sub_one_way(n, _PUBSUB_GAP_US, 100))
            runs.append(rpcmm_paths.change_propagation(endpoint, n))
    finally:
        registry.stop()
    a99, a50 = spread([r["p99_us"] for r in anchor_runs]), spread([r["p50_us"] for r in anchor_runs])
    run.details["pubsub_anchor"] = _strip(anchor_runs)
    run.details["propagation"] = _strip(runs)
    cdfs = run.details.setdefault("propagation_cdfs_us", {})
    cdfs["rpcmm change -> subscribed cache"] = report.quantiles(runs[-1]["samples_ns"])
    cdfs["raw zmq PUB->SUB one way (100 B)"] = report.quantiles(anchor_runs[-1]["samples_ns"])
    v99, v50 = spread([r["p99_us"] for r in runs]), spread([r["p50_us"] for r in runs])
    missed = sum(r["missed"] for r in runs)
    if v99 is None:
        raise RuntimeError(f"no change reached the subscribed cache ({missed} missed)")
    run.rows.append(report.metric("change propagation to subscribed caches p99", v99["median"], "µs",
                                  "raw pyzmq PUB->SUB one-way p99 (100 B)", a99["median"], ("<=", 5.0),
                                  value_spread=v99, anchor_spread=a99,
                                  note=f"{missed} change(s) not seen within 1 s" if missed else None))
    run.rows.append(report.metric("change propagation to subscribed caches p50", v50["median"], "µs",
                                  "raw pyzmq PUB->SUB one-way p50 (100 B)", a50["median"], None,
                                  value_spread=v50, anchor_spread=a50))


def scale_section(run):
    s = run.s
    steps = scale.run_scale(s.scale_sizes, s.scale_paced_s, s.scale_idle_lookups, log=log)
    run.details["scale"] = steps
    top = steps[-1]
    run.rows.append(report.metric(
        f"scale: saturated heartbeat ingest at {top['hosts']:,} hosts (256 hosts/message)",
        top["flood"]["hosts_per_s"], "hosts/s (10 topics each)", "-", None))
    run.rows.append(report.metric(
        f"scale: saturated heartbeat ingest at {top['hosts']:,} hosts (1 host/message)",
        top["flood_one_host_per_message"]["hosts_per_s"], "hosts/s (10 topics each)", "-", None))
    run.rows.append(report.metric(
        f"scale: lookup p99 while {top['hosts']:,} hosts heartbeat every 1 s", top["lookup_ingest"]["p99_us"], "µs",
        "same lookups, registry idle (p99)", top["lookup_idle"]["p99_us"], None))
    run.rows.append(report.metric(
        f"scale: registry RSS per registration at {top['hosts']:,} hosts", top["bytes_per_registration"], "bytes",
        "-", None))
    run.rows.append(report.metric(
        f"scale: a new registry warms up from a peer holding {top['hosts']:,} hosts", top["listing"]["warmup_s"], "s",
        "a client lists the same table", top["listing"]["list_s"], None))
    run.rows.append(report.metric(
        "scale: registry CPU per host heartbeat, largest / smallest size",
        top["flood"]["cpu_us_per_host"], "µs", f"same at {steps[0]['hosts']:,} hosts",
        steps[0]["flood"]["cpu_us_per_host"], None))


# -- the run --------------------------------------------------------------------------------


def _plots(run, images):
    written = []
    if report.plot_cdfs(os.path.join(images, "lookup_latency.png"), "remote lookup vs its anchors (CDF)",
                        run.details.get("lookup_cdfs_us", {})):
        written.append(os.path.join(images, "lookup_latency.png"))
    oslo = run.details.get("oslo", {}).get("cdf_us", {})
    if report.plot_cdfs(os.path.join(images, "oslo_call_latency.png"), "oslo.messaging call latency (CDF)", oslo):
        written.append(os.path.join(images, "oslo_call_latency.png"))
    if report.plot_cdfs(os.path.join(images, "propagation_latency.png"), "change propagation vs PUB->SUB (CDF)",
                        run.details.get("propagation_cdfs_us", {})):
        written.append(os.path.join(images, "propagation_latency.png"))
    if report.plot_scale(os.path.join(images, "scale.png"), run.details.get("scale")):
        written.append(os.path.join(images, "scale.png"))
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(prog="benchmarks/run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, one scale step less (about 2 min)")
    parser.add_argument("--json", metavar="FILE", help="write machine, metrics and raw details as JSON")
    parser.add_argument("--rst", metavar="FILE", help="write the metric table as a reStructuredText list-table")
    parser.add_argument("--plots", metavar="DIR", default=None,
                        help="write the PNG plots here (default: doc/images for a full run, none for --quick,"
                             " so a quick run never replaces the documented plots)")
    parser.add_argument("--scale-sizes", metavar="N,N,...", default=None,
                        help="host counts of the scale section (default: 1000,10000 quick; 1000,10000,100000 full)")
    parser.add_argument("--only", metavar="SECTIONS", default="lookups,redis,oslo,propagation,scale",
                        help="comma-separated sections to run (default: all)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")  # eventlet's deprecation notice (oslo.messaging imports it)
    only = set(args.only.split(","))

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    run = Run(Settings(args.quick))
    machine = machine_info()
    if args.json:  # the figures so far, so an interrupted run keeps what it measured
        run.checkpoint = lambda: report.write_json(args.json, machine, run.rows, run.details)
    if args.scale_sizes:
        run.s.scale_sizes = tuple(int(n) for n in args.scale_sizes.split(","))
    machine["command"] = "benchmarks/run " + " ".join(argv if argv is not None else sys.argv[1:])
    t0 = time.perf_counter()
    try:
        if only & {"lookups", "redis"}:
            # 16 sockets: a registry rate-limits each peer (rpcmm.limits), and hosts are many peers.
            with servers.registry_and_loadgen("registry", scale.SOCKETS) as (registry, endpoint, gen):
                rpcmm_paths.populate(gen, 1000)
                if "lookups" in only:
                    run.section("1-2. cached and remote lookups",
                                lambda: lookups_section(run, endpoint, registry.pid),
                                lambda: _cached_rows() + _remote_rows())
                if "redis" in only:
                    run.section("3. Redis matchmaker anchors and registry ingest",
                                lambda: redis_section(run, endpoint, registry.pid, gen), _redis_rows)
        if "propagation" in only:
            run.section("5. change propagation", lambda: propagation_section(run), lambda: [report.skipped(
                "change propagation to subscribed caches p99", "µs", "raw pyzmq PUB->SUB one-way p99",
                ("<=", 5.0), "")])
        if "scale" in only:
            run.section("6. scale", lambda: scale_section(run), lambda: [])
        # Last: importing oslo.messaging and running its drivers in this process changes it
        # (threads, eventlet, the global cfg.CONF), which must not touch the other figures.
        if "oslo" in only:
            run.section("4. oslo.messaging call and cast", lambda: oslo_section(run), _oslo_rows)
    except KeyboardInterrupt:
        log(f"interrupted; stopping servers\n{traceback.format_exc()}")
        return 130
    finally:
        servers.stop_all()
    machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    machine["wall_seconds"] = round(time.perf_counter() - t0, 1)
    images = args.plots or (None if args.quick else IMAGES)
    plots = _plots(run, images) if images else []
    print()
    report.print_table(run.rows, sys.stdout)
    print(f"\n{machine['cpu']}, {machine['cpus']} CPUs, Python {machine['python']}, "
          f"{machine['wall_seconds']} s" + (f"; plots: {', '.join(plots)}" if plots else ""))
    if args.json:
        report.write_json(args.json, machine, run.rows, run.details)
    if args.rst:
        with open(args.rst, "w") as f:
            f.write(report.rst_table(run.rows))
    return 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(main())
