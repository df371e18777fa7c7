"""Statistics and timing helpers shared by every benchmark.

Latencies are collected as integer nanoseconds (``time.perf_counter_ns``) and summarised in
microseconds. Percentiles use the nearest rank, the same rule as the anchor scripts in
``shared/baselines``, so figures compare like for like. Each figure is measured in several
repeats; :func:`spread` keeps the median and the min-max range to show the machine's noise.
Figures compared as a ratio of percentiles are sampled with :func:`interleaved`, in short
alternating blocks, so the machine's drift during a repeat weighs on both sides alike.
"""

import gc
import os
import platform
import statistics
import time
import timeit

__all__ = [
    "percentile", "latency_summary", "spread", "interleaved", "per_op_ns", "machine_info", "Budget",
    "process_cpu_seconds", "process_rss_bytes",
]


def percentile(sorted_values, p):
    """Nearest-rank percentile ``p`` (0-100) of an already sorted list; NaN when empty."""
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * (len(sorted_values) - 1)))))
    return sorted_values[k]


def latency_summary(samples_ns):
    """p50/p90/p99/p99.9/max/mean in microseconds of a list of nanosecond samples."""
    s = sorted(samples_ns)
    if not s:
        return {"n": 0, "p50_us": None, "p90_us": None, "p99_us": None, "p99.9_us": None, "max_us": None,
                "mean_us": None}

    def us(v):
        return round(v / 1e3, 1)

    return {"n": len(s), "p50_us": us(percentile(s, 50)), "p90_us": us(percentile(s, 90)),
            "p99_us": us(percentile(s, 99)), "p99.9_us": us(percentile(s, 99.9)), "max_us": us(s[-1]),
            "mean_us": us(statistics.fmean(s))}


def spread(values):
    """Median, min and max of one figure's repeats (the median is what tables quote)."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def interleaved(sides, n, block, budget=None, settle=0):
    """``{name: [ns, ...]}``: ``n`` samples of each side, taken in alternating blocks of ``block``.

    ``sides`` maps a name to ``take(k)``, which times ``k`` operations and returns their
    nanoseconds. The blocks run in turn (a, b, a, b, ...), so on a shared machine whose speed
    drifts over seconds every side samples the same stretches of time, in the same proportion,
    and a ratio of their percentiles compares like with like. Bounded by the count and, when
    given, by ``budget`` seconds: once spent, the run stops after a full turn (every side then
    has the same, smaller count).

    For ``settle`` seconds at the start of every block, operations are run one at a time and
    discarded: the processes of the side that just waited were idle, and on this kind of VM
    the first tens of operations after an idle stretch are slower (measured: 5 discarded
    lookups after a 0.3 s Redis block left the rpcmm p50 30 % high, 50 brought it back to the
    figure taken next to raw zmq). That is an artefact of taking turns, not a cost either side
    has in steady use. The settling time is the same for every side, whatever an operation
    costs, so neither is favoured.
    """
    out = {name: [] for name in sides}
    budget = Budget(budget) if budget else None
    while any(len(v) < n for v in out.values()):
        for name, take in sides.items():
            k = min(block, n - len(out[name]))
            if k > 0:
                if settle:
                    settled = time.perf_counter() + settle
                    while time.perf_counter() < settled:
                        take(1)
                out[name].extend(take(k))
        if budget is not None and budget.over():
            break
    return out


def per_op_ns(stmt, namespace, data, repeat=7):
    """Nanoseconds per item of ``for k in data: <stmt>`` with the bare loop's cost subtracted.

    The shape of the anchor ``04_dict_lookup.py``: timeit over a pre-shuffled key list, the
    median (and min) of ``repeat`` runs, the empty ``for`` loop's median subtracted.
    """
    g = dict(namespace, data=data)
    gc.collect()
    timed = sorted(timeit.repeat(f"for k in data: {stmt}", globals=g, number=1, repeat=repeat))
    bare = sorted(timeit.repeat("for k in data: pass", globals=g, number=1, repeat=repeat))
    n = len(data)
    return {"median_ns": round((timed[repeat // 2] - bare[repeat // 2]) / n * 1e9, 1),
            "min_ns": round((timed[0] - bare[0]) / n * 1e9, 1)}


def machine_info():
    """What the figures were measured on."""
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown"
    try:
        with open("/proc/meminfo") as f:
            mem_kb = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
    except (OSError, StopIteration):
        mem_kb = 0
    import msgpack
    import zmq
    info = {"cpu": model, "cpus": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "pyzmq": zmq.pyzmq_version(), "libzmq": zmq.zmq_version(), "msgpack": ".".join(map(str, msgpack.version)),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        import rpcmm
        info["rpcmm"] = getattr(rpcmm, "__version__", "?")
        info["rpcmm_path"] = os.path.dirname(rpcmm.__file__)
        info["rpcmm_git"] = _git_state(os.path.dirname(os.path.dirname(rpcmm.__file__)))
    except ImportError:
        pass
    return info


def _git_state(root):
    """HEAD and the uncommitted files under rpcmm/ of the measured checkout (read-only git calls)."""
    import subprocess
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "rpcmm"], capture_output=True,
                               text=True, timeout=10).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"head": head or None, "uncommitted_rpcmm_files": len([d for d in dirty if d.strip()])}


class Budget:
    """A wall-clock allowance: ``left()`` seconds remain, ``over()`` once spent.

    Every benchmark loop is bounded by a count *and* checks a budget, so a stalled peer or a
    slow machine cuts a figure short (and says so) instead of hanging the run.
    """

    def __init__(self, seconds):
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def left(self):
        return self.deadline - time.monotonic()

    def over(self):
        return time.monotonic() >= self.deadline


def process_cpu_seconds(pid):
    """User+system CPU seconds a process (all its threads) has used, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def process_rss_bytes(pid):
    """Resident set size of a process, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
