"""Where the time goes: profiles of the registry's, the client's and the oslo driver's hot paths.

``python -m benchmarks.profiling [--seconds S] [--out DIR]``. Needs ``py-spy`` on PATH for the
processes that run on their own (the registry, an oslo RPC server), exactly as in the
benchmark; the lookup client is profiled in-process with cProfile.

Scenarios:

- ``registry-ingest-1``: the registry while a load generator floods it with heartbeats of 1000
  hosts, one host (10 topics) per message: receive, decode, table update;
- ``registry-ingest-256``: the same, 256 hosts per message (decode and table update dominate),
  with 1000 and with 100,000 hosts in the table;
- ``registry-lookup``: the registry while this process runs remote lookups back to back;
- ``client-lookup``: this process's side of those lookups (cProfile, sorted by own time);
- ``client-cached``: cached lookups (cProfile; its overhead inflates the small functions, so
  read it for shares, not for absolute costs);
- ``oslo-cast-server``: an oslo.messaging RPC server on ``zmq://`` (its own process, oslo's
  threading executor) while this process sends it casts in bursts; ``oslo-call-server`` and
  ``oslo-call-client``: both ends while this process makes calls back to back. These three
  record only samples that hold the GIL (py-spy ``--gil``): where each process's Python CPU
  goes, not where its many executor threads sit waiting.

Each writes ``DIR/NAME[-<hosts>k-hosts].txt`` (and the raw ``.folded`` stacks): the functions
with the largest share of samples, by own time (``self``) and including callees (``total``).
"""

import argparse
import collections
import cProfile
import io
import os
import pstats
import random
import re
import shutil
import subprocess
import sys
import time

from benchmarks import loadgen, servers
from benchmarks.rpcmm_paths import LONG_INTERVAL, LONG_TTL, RemoteLookup, matchmaker

__all__ = ["summarize_folded", "profile_registry", "main"]

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^:]*)(?::\d+)?\)$")


def _frame_name(frame):
    """``function (file:line)`` -> ``function (file)``; the line would split one function in many."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    short = "/".join(path.split("/")[-2:])
    return f"{m.group('fn')} ({short})"


def summarize_folded(path, top=20):
    """A table of the functions with most samples in py-spy's raw (folded) output."""
    own, total = collections.Counter(), collections.Counter()
    samples = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = [_frame_name(fr) for fr in stack.split(";")]
            samples += n
            own[frames[-1]] += n
            for fn in set(frames):
                total[fn] += n
    if not samples:
        return "no samples\n"
    out = [f"{samples} samples", "", f"{'self %':>7}  {'total %':>7}  function"]
    for fn, n in own.most_common(top):
        out.append(f"{100 * n / samples:7.1f}  {100 * total[fn] / samples:7.1f}  {fn}")
    out += ["", "by total (including callees):", f"{'total %':>7}  function"]
    for fn, n in total.most_common(top):
        out.append(f"{100 * n / samples:7.1f}  {fn}")
    return "\n".join(out) + "\n"


def _pyspy(pid, seconds, out, gil=False):
    """py-spy recording ``pid`` for ``seconds`` into ``out``; ``gil``: only samples that hold
    the GIL (where a process's Python CPU goes, not where its threads wait)."""
    exe = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
    if not exe:
        raise servers.Missing("py-spy not installed (pip install py-spy)")
    cmd = [exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250",
           "--format", "raw", "--output", out, "--nonblocking", *(["--gil"] if gil else [])]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(spy, seconds):
    _, err = spy.communicate(timeout=seconds + 30)
    if spy.returncode != 0:
        raise RuntimeError(f"py-spy failed: {err.strip()[-300:]}")


def profile_registry(scenario, seconds, out_dir, hosts=1000):
    """Record a registry holding ``hosts`` hosts under one load scenario with py-spy; the summary."""
    raw = os.path.join(out_dir, f"{scenario}-{hosts // 1000}k-hosts.folded")
    spy = remote = None
    with servers.registry_and_loadgen(f"profile-{scenario}", 16) as (registry, endpoint, gen):
        try:
            gen.command(op="flood", first=0, count=hosts, batch=256, rounds=1, interval=LONG_INTERVAL,
                        ttl=LONG_TTL, budget=60)
            spy = _pyspy(registry.pid, seconds, raw)
            time.sleep(0.5)
            if scenario.startswith("registry-ingest"):
                batch = int(scenario.rsplit("-", 1)[1])
                gen.command(op="flood", first=0, count=hosts, batch=batch, rounds=100_000, interval=LONG_INTERVAL,
                            ttl=LONG_TTL, budget=seconds)
            else:
                remote = RemoteLookup(endpoint, [loadgen.topic_name(j) for j in range(1000)])
                remote.latency(1_000_000, random.Random(1), warmup=0, budget=seconds)
            _finish(spy, seconds)
            return summarize_folded(raw)
        finally:
            if spy is not None and spy.poll() is None:
                spy.kill()
                spy.wait()
            if remote is not None:
                remote.close()


def _cprofile(fn, top=20):
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def profile_client(seconds):
    """cProfile of remote lookups (registry in its own process) and of cached lookups."""
    remote = mm = None
    with servers.registry_and_loadgen("profile-client", 16) as (registry, endpoint, gen):
        try:
            gen.command(op="flood", first=0, count=1000, batch=256, rounds=1, interval=LONG_INTERVAL, ttl=LONG_TTL,
                        budget=30)
            remote = RemoteLookup(endpoint, [loadgen.topic_name(j) for j in range(1000)])
            remote.latency(1000, random.Random(2), warmup=0)
            lookup_text = _cprofile(lambda: remote.latency(1_000_000, random.Random(2), warmup=0, budget=seconds))
            from rpcmm.addressing import Anycast
            mm = matchmaker(endpoint, cache_max_age=3600.0)
            keys = [Anycast(loadgen.topic_name(j)) for j in range(1000)] * 200
            for k in keys[:1000]:
                mm.lookup(k)

            def cached():
                lookup = mm.lookup
                for k in keys:
                    lookup(k)

            return {"client-lookup": lookup_text, "client-cached": _cprofile(cached)}
        finally:
            if remote is not None:
                remote.close()
            if mm is not None:
                mm.stop()


def profile_oslo(seconds, out_dir):
    """oslo.messaging over ``zmq://``: py-spy (GIL samples only) of the RPC server child while
    this process floods it with casts, then of the server and of this process (the client)
    while it makes calls back to back. Returns ``{name: summary}``; writes the raw stacks."""
    from benchmarks import oslo_rpc
    status = oslo_rpc.driver_status()
    if status is not None:
        raise servers.Missing(status)
    registry, endpoint = servers.start_registry(name="profile-oslo-registry")
    side = None
    spies = []
    try:
        conf_path = oslo_rpc.write_zmq_config(endpoint, "profile-oslo")
        oslo_rpc.configure(conf_path)
        side = oslo_rpc.Side("zmq", f"zmq://{endpoint}/", conf_path)
        side.warm_up(200)
        out = {}
        raw = os.path.join(out_dir, "oslo-cast-server.folded")
        spies = [_pyspy(side.server.popen.pid, seconds, raw, gil=True)]
        time.sleep(0.5)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:  # bursts of casts, each waited for
            side.cast_burst(2000, timeout=60)
        _finish(spies.pop(), seconds)
        out["oslo-cast-server"] = summarize_folded(raw)
        raws = {"oslo-call-server": side.server.popen.pid, "oslo-call-client": os.getpid()}
        spies = [_pyspy(pid, seconds, os.path.join(out_dir, f"{name}.folded"), gil=True)
                 for name, pid in raws.items()]
        time.sleep(0.5)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            side.take(200)
        while spies:
            _finish(spies.pop(), seconds)
        for name in raws:
            out[name] = summarize_folded(os.path.join(out_dir, f"{name}.folded"))
        return out
    finally:
        for spy in spies:
            if spy.poll() is None:
                spy.kill()
                spy.wait()
        if side is not None:
            side.close()
        registry.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per scenario (default 8)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "profiles"),
                        help="where to write the summaries (default: benchmarks/profiles)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    try:
        for scenario, hosts in (("registry-ingest-1", 1000), ("registry-ingest-256", 1000),
                                ("registry-ingest-256", 100_000), ("registry-lookup", 1000)):
            name = f"{scenario}-{hosts // 1000}k-hosts"
            print(f"== {name}", file=sys.stderr, flush=True)
            text = profile_registry(scenario, args.seconds, args.out, hosts)
            with open(os.path.join(args.out, f"{name}.txt"), "w") as f:
                f.write(text)
            print("\n".join(text.splitlines()[:14]), flush=True)
        print("== client", file=sys.stderr, flush=True)
        for name, text in profile_client(args.seconds).items():
            with open(os.path.join(args.out, f"{name}.txt"), "w") as f:
                f.write(text)
            print(f"-- {name}\n" + "\n".join(text.splitlines()[:25]), flush=True)
        print("== oslo.messaging over zmq://", file=sys.stderr, flush=True)
        for name, text in profile_oslo(args.seconds, args.out).items():
            with open(os.path.join(args.out, f"{name}.txt"), "w") as f:
                f.write(text)
            print(f"-- {name}\n" + "\n".join(text.splitlines()[:14]), flush=True)
    except servers.Missing as exc:
        print(f"profiling skipped: {exc}", file=sys.stderr)
        return 0
    finally:
        servers.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
