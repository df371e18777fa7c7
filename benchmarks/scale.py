"""One registry process grown from 1k to 100k hosts of 10 topics each.

Memory is measured on a registry of its own, grown through the sizes with nothing else sent
(so no queued message inflates it): its RSS above the empty registry's, per (topic, host)
registration. Then, at each size, another registry (``rpcmm registry``, its own process) is
measured for:

- saturated ingest: every host's heartbeat over 16 DEALER sockets from a load generator
  process, as fast as the registry takes them, with 256 hosts per message (a generator's
  batching: the upper bound) and 1 host per message (each host its own process: the lower
  bound); host heartbeats/s, and registry CPU microseconds per host heartbeat (what must stay
  flat as the table grows);
- lookups while every host heartbeats once a second (64 hosts per message, paced evenly over
  the second), against the same lookups with the registry idle; every answer must still hold
  10 hosts (no host expired), and the registry must finish each second's heartbeats within it.

The registry grown for memory is also listed whole at each size, by a client
(``RegistryMatchmaker.table()``: LIST page by page) and by a new registry process warming up
from it (from its "serving" line to its STATUS saying UP, synced from that peer, with every
host).

Hosts declare a 1 s interval and a 10 s TTL (so the pauses between phases expire nobody).
Sixteen sockets, not one, because a registry rate-limits each peer (``rpcmm.limits``, 20,000
messages a second by default): hosts are many peers, and one socket sending 100,000
heartbeats a second would measure the limiter.
"""

import json
import random
import time

import zmq

from rpcmm.addressing import Endpoint
from rpcmm.client import RegistryClient
from rpcmm.protocol import State

from benchmarks import loadgen, servers
from benchmarks.measure import process_cpu_seconds, process_rss_bytes
from benchmarks.rpcmm_paths import RemoteLookup, matchmaker

__all__ = ["run_scale"]

INTERVAL, TTL = 1.0, 10.0
BATCH, SINGLE, PACED_BATCH, SOCKETS = 256, 1, 64, 16
#: Host heartbeats per saturated-ingest measurement (fewer if its time budget runs out).
FLOOD_BEATS = 200_000


def _flood(gen, pid, hosts, batch):
    """Saturated ingest in steady state: one unmeasured round first, as every host has sent
    these same heartbeats before (its first one, a join, is not what a registry mostly sees)."""
    rounds = max(1, FLOOD_BEATS // hosts)
    gen.command(op="flood", first=0, count=hosts, batch=batch, rounds=1, interval=INTERVAL, ttl=TTL, budget=20)
    cpu0 = process_cpu_seconds(pid)
    r = gen.command(op="flood", first=0, count=hosts, batch=batch, rounds=rounds, interval=INTERVAL, ttl=TTL,
                    budget=20)
    cpu = process_cpu_seconds(pid) - cpu0
    beats = r["rounds"] * hosts
    return {"rounds": r["rounds"], "seconds": round(r["seconds"], 3), "hosts_per_s": round(beats / r["seconds"]),
            "topic_refreshes_per_s": round(beats * loadgen.TOPICS_PER_HOST / r["seconds"]),
            "registry_cpu_s": round(cpu, 3), "cpu_us_per_host": round(cpu / beats * 1e6, 2),
            "frame_bytes": r["frame_bytes"]}


def _paced(gen, pid, hosts, seconds, lookups, rnd):
    """Heartbeats of every host each second for ``seconds`` while ``lookups`` runs lookups."""
    p = gen.server.popen
    cpu0, t0 = process_cpu_seconds(pid), time.monotonic()
    p.stdin.write(json.dumps(dict(op="paced", first=0, count=hosts, batch=PACED_BATCH, interval=INTERVAL, ttl=TTL,
                                  seconds=seconds)) + "\n")
    p.stdin.flush()
    time.sleep(0.2)  # let the generator encode its frames and start
    during = lookups.latency(100_000, rnd, warmup=0, pause=0.002, budget=seconds - 0.5, expect=10)
    line = p.stdout.readline()
    if not line:
        raise RuntimeError("load generator exited during the paced run")
    r = json.loads(line)
    cpu, wall = process_cpu_seconds(pid) - cpu0, time.monotonic() - t0
    return during, {"rounds": r["rounds"], "marker_lag_max_s": round(r["marker_lag_max_s"], 4),
                    "marker_lag_median_s": round(r["marker_lag_median_s"], 4), "late_sends": r["late_sends"],
                    "registry_cpu_utilisation": round(cpu / wall, 3),
                    "kept_up": r["marker_lag_max_s"] < INTERVAL}


def _listing(endpoint, hosts, budget=60.0):
    """Seconds to list the table of ``hosts`` hosts at ``endpoint``: by a client, and by a new
    registry warming up from it (its STATUS polled every 10 ms)."""
    mm = matchmaker(endpoint, cache_max_age=0.0)
    try:
        t = time.perf_counter()
        rows, _ = mm.table()
        list_s = time.perf_counter() - t
    finally:
        mm.stop()
    if len(rows) != hosts:
        raise RuntimeError(f"listed {len(rows)} hosts of {hosts}")
    warm, warm_endpoint = servers.start_registry(name=f"warmup-{hosts}", peers=[endpoint])
    ctx = zmq.Context()
    client = RegistryClient([Endpoint.parse(warm_endpoint)], ctx, timeout=2.0)
    try:
        t = time.perf_counter()
        client.start()
        while True:
            health = client.status(0)
            if health is not None and health.state is State.UP:
                break
            if time.perf_counter() - t > budget:
                raise TimeoutError(f"a registry did not warm up from {hosts} hosts within {budget:g}s")
            time.sleep(0.01)
        warm_s = time.perf_counter() - t
        if health.synced_from != endpoint or health.hosts != hosts:
            raise RuntimeError(f"warmed up from {health.synced_from!r} with {health.hosts} hosts, "
                               f"expected {endpoint} with {hosts}")
    finally:
        client.close()
        ctx.term()
        warm.stop()
    return {"list_s": round(list_s, 3), "warmup_s": round(warm_s, 3)}


def _memory(sizes):
    """{hosts: (RSS above the empty registry's) per registration, and the listing times} for one
    registry grown through ``sizes``."""
    with servers.registry_and_loadgen("memory-registry", 1) as (registry, endpoint, gen):
        time.sleep(0.3)
        rss0 = process_rss_bytes(registry.pid)
        out, have = {}, 0
        for n in sizes:
            gen.command(op="flood", first=have, count=n - have, batch=BATCH, rounds=1, interval=INTERVAL, ttl=600.0,
                        budget=60)
            have = n
            rss = process_rss_bytes(registry.pid)
            out[n] = {"rss_bytes": rss, "rss0_bytes": rss0,
                      "bytes_per_registration": round((rss - rss0) / (n * loadgen.TOPICS_PER_HOST), 1),
                      "listing": _listing(endpoint, n)}
        return out


def run_scale(sizes, paced_seconds, lookups_idle, log=print):
    """Grow one registry through ``sizes`` (host counts, ascending); a list of per-size figures."""
    memory = _memory(sizes)
    steps = []
    rnd = random.Random(7)
    lookups = None
    with servers.registry_and_loadgen("scale-registry", SOCKETS) as (registry, endpoint, gen):
        try:
            time.sleep(0.3)
            have = 0
            for n in sizes:
                t = time.perf_counter()
                gen.command(op="flood", first=have, count=n - have, batch=BATCH, rounds=1, interval=INTERVAL,
                            ttl=TTL, budget=60)
                populate_s = time.perf_counter() - t
                have = n
                # (Re)open the lookup client on this size's topics.
                if lookups is not None:
                    lookups.close()
                lookups = RemoteLookup(endpoint, [loadgen.topic_name(j) for j in range(n)])
                flood = _flood(gen, registry.pid, n, BATCH)
                single = _flood(gen, registry.pid, n, SINGLE)
                idle = lookups.latency(lookups_idle, rnd, warmup=200, expect=10)
                during, paced = _paced(gen, registry.pid, n, paced_seconds, lookups, rnd)
                step = {"hosts": n, "registrations": n * loadgen.TOPICS_PER_HOST, "populate_s": round(populate_s, 2),
                        **memory[n], "rss_after_load_bytes": process_rss_bytes(registry.pid),
                        "flood": flood, "flood_one_host_per_message": single, "paced": paced,
                        "lookup_idle": {k: v for k, v in idle.items() if k != "samples_ns"},
                        "lookup_ingest": {k: v for k, v in during.items() if k != "samples_ns"}}
                steps.append(step)
                log(f"  scale {n:>7} hosts: ingest {flood['hosts_per_s']:,} hosts/s at {BATCH}/message "
                    f"({flood['cpu_us_per_host']} µs CPU/host), {single['hosts_per_s']:,} at 1/message "
                    f"({single['cpu_us_per_host']} µs); lookup p99 idle {idle['p99_us']} µs, "
                    f"during 1 s heartbeats {during['p99_us']} µs (wrong answers {during['wrong_answers']}); "
                    f"lag max {paced['marker_lag_max_s']} s, CPU {paced['registry_cpu_utilisation']:.0%}; "
                    f"{step['bytes_per_registration']} B/registration; whole table listed in "
                    f"{step['listing']['list_s']} s, a new registry warm from it in {step['listing']['warmup_s']} s")
            return steps
        finally:
            if lookups is not None:
                lookups.close()
