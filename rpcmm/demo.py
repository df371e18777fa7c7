"""``rpcmm demo``: a local cluster from a seed file, then failures, with measured times.

It starts the seed's first two registries and a few hosts as real processes on this machine,
looks topics up through the two-tier client, then kills one host and one registry with
SIGKILL and measures how long the host takes to leave lookups and whether lookups carry on.
It brings the registry back and measures how long its table takes to refill. Every process
it starts is stopped before it returns; it ends by itself in about ten seconds.
"""

import os
import pathlib
import statistics
import time

from rpcmm.addressing import Anycast, Directed, Fanout
from rpcmm.backends.registry import RegistryMatchmaker
from rpcmm.errors import ConfigurationError, RegistryUnavailable
from rpcmm.seed import Seed, load_seed
from rpcmm.testing import start_register, start_registry, wait_for

__all__ = ["run_demo"]

INTERVAL = 0.25
TTL = 1.0
SWEEP = 0.1
HOSTS = {
    "compute-1": ["compute"],
    "compute-2": ["compute"],
    "scheduler-1": ["scheduler"],
    "conductor-1": ["conductor", "scheduler"],
}
_LOCAL = {"127.0.0.1", "localhost", "::1"}


def _default_seed():
    for candidate in (pathlib.Path.cwd() / "seeds" / "demo.json",
                      pathlib.Path(__file__).resolve().parent.parent / "seeds" / "demo.json"):
        if candidate.exists():
            return candidate
    raise ConfigurationError("no seeds/demo.json here; pass --seed FILE")


def _say(text=""):
    print(text, flush=True)


def _ms(seconds):
    return f"{seconds * 1000:.0f} ms"


def run_demo(seed_path=None):
    """Run the demo; return the exit status."""
    seed_path = pathlib.Path(seed_path) if seed_path else _default_seed()
    seed = load_seed(seed_path)
    registries = [e for e in seed.registries if e.host in _LOCAL][:2]
    if len(registries) < 2:
        raise ConfigurationError(f"{seed_path} must list two registries on this machine (127.0.0.1) for the demo")
    processes = []
    try:
        return _run(seed_path, seed, registries, processes)
    finally:
        for process in processes:
            process.__exit__(None, None, None)


def _run(seed_path, seed, registries, processes):
    _say(f"rpcmm demo: seed {seed_path}")
    _say(f"  tier one (the seed file): registries {', '.join(map(str, seed.registries))}; "
         f"static ring: {dict((t, list(h)) for t, h in seed.ring.items()) or 'none'}")
    registry_processes = {}
    for endpoint in registries:
        process = start_registry(seed_path, endpoint, extra_args=["--sweep-interval", str(SWEEP)])
        processes.append(process)
        registry_processes[endpoint] = process
        _say(f"  started registry {endpoint} (pid {process.pid})")
    # Clients and hosts use only the registries that were started.
    cluster_seed = Seed.build(ring=dict(seed.ring), registries=registries, source=str(seed_path))
    local_seed = seed_path.with_name(f".demo-{os.getpid()}.json")
    local_seed.write_text(cluster_seed.to_json())
    try:
        host_processes = {}
        for host, topics in HOSTS.items():
            process = start_register(local_seed, host, topics, interval=INTERVAL, ttl=TTL)
            processes.append(process)
            host_processes[host] = process
            _say(f"  started host {host} serving {', '.join(topics)} (pid {process.pid}; "
                 f"heartbeat every {INTERVAL:g}s, ttl {TTL:g}s)")
        with RegistryMatchmaker(cluster_seed, cache_max_age=0.0, lookup_timeout=0.25) as client:
            wait_for(lambda: len(client.hosts("compute")) == 2 and len(client.hosts("scheduler")) >= 2, timeout=10)
            _lookups(client)
            _table(client)
            _kill_host(client, host_processes["compute-2"])
            _kill_registry(client, registry_processes, registries, seed_path)
    finally:
        local_seed.unlink(missing_ok=True)
    _say("\nrpcmm demo: done; every process it started has been stopped.")
    return 0


def _lookups(client):
    _say("\nLookups (tier two: a registry; this client follows its live feed, so changes reach it at once):")
    _say(f"  fanout   scheduler           -> {list(client.lookup(Fanout('scheduler')))}"
         "   (static ring host first)")
    picks = [client.lookup(Anycast("compute"))[0] for _ in range(4)]
    _say(f"  anycast  compute x4          -> {picks}   (strict round robin)")
    _say(f"  directed compute@compute-1   -> {list(client.lookup(Directed('compute', 'compute-1')))}")
    _say(f"  directed compute@nobody      -> {list(client.lookup(Directed('compute', 'nobody')))}")
    _say(f"  fanout   unknown-topic       -> {list(client.lookup(Fanout('unknown-topic')))}   (empty, not an error)")
    timings = []
    # No cache and no live feed: every one of these asks a registry.
    with RegistryMatchmaker(client.seed, cache_max_age=0.0, live=False) as remote:
        remote.hosts("compute")
        for _ in range(200):
            started = time.perf_counter()
            remote.hosts("compute")
            timings.append(time.perf_counter() - started)
    cached = RegistryMatchmaker(client.seed, cache_max_age=60.0)
    with cached:
        cached.hosts("compute")
        cached_timings = []
        for _ in range(2000):
            started = time.perf_counter()
            cached.lookup(Anycast("compute"))
            cached_timings.append(time.perf_counter() - started)
    _say(f"  remote lookup median {statistics.median(timings) * 1e6:.0f} us over 200; "
         f"cached lookup median {statistics.median(cached_timings) * 1e6:.1f} us over 2000")


def _table(client):
    rows, endpoint = client.table()
    _say(f"\nThe table of registry {endpoint}:")
    for row in rows:
        _say(f"  {row.host:<12} age {row.age:4.2f}s  topics {', '.join(row.topics)}")


def _kill_host(client, victim):
    _say("\nkill -9 compute-2 (it cannot unregister; its heartbeats just stop)")
    victim.kill()
    killed = time.monotonic()
    wait_for(lambda: client.hosts("compute") == ("compute-1",), timeout=10, poll=0.005)
    gone = time.monotonic() - killed
    _say(f"  compute-2 left lookups after {_ms(gone)} (ttl {_ms(TTL)} + sweep {_ms(SWEEP)} at most)")
    _say(f"  anycast compute now -> {[client.lookup(Anycast('compute'))[0] for _ in range(3)]}")


def _kill_registry(client, registry_processes, registries, seed_path):
    preferred = client.preferred_registry
    _say(f"\nkill -9 registry {preferred} (the one this client was asking)")
    registry_processes[preferred].kill()
    failures, timings = 0, []
    for _ in range(50):
        started = time.perf_counter()
        try:
            answer = client.hosts("scheduler")
        except RegistryUnavailable:
            failures += 1
            continue
        timings.append(time.perf_counter() - started)
        assert "scheduler-1" in answer
    other = client.preferred_registry
    _say(f"  50 lookups after the kill: {failures} failed; the first took {_ms(timings[0])} "
         f"(failover to {other}), median {statistics.median(timings) * 1e6:.0f} us")
    started = time.monotonic()
    restarted = start_registry(seed_path, preferred, extra_args=["--sweep-interval", str(SWEEP)])
    try:
        alone = RegistryMatchmaker(Seed.build(registries=[preferred]), cache_max_age=0.0, live=False)
        with alone:
            wait_for(lambda: len(alone.table()[0]) == len(HOSTS) - 1, timeout=10, poll=0.005)
            back = time.monotonic() - started
            (_, health), = alone.status()
        source = f"warmed up from its peer {health.synced_from}" if health.synced_from else "from heartbeats"
        _say(f"  restarted {preferred}: its table was whole {_ms(back)} after the restart command "
             f"({source}; heartbeat interval {_ms(INTERVAL)}), with no action by anyone")
    finally:
        restarted.__exit__(None, None, None)
