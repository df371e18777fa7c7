"""Metric rows, the printed table, the JSON file and the plots.

A metric compares one rpcmm figure with its anchor measured in the same run. ``ratio`` is
always stated in the direction of its goal: ``value/anchor`` for goals like "at most 3x the
anchor", ``anchor/value`` for "at least 8x faster" (latency), so ``met`` is one comparison.
"""

import json
import os

__all__ = ["metric", "skipped", "print_table", "write_json", "quantiles", "plot_cdfs", "plot_scale", "rst_table"]


def metric(name, value, unit, anchor, anchor_value, goal=None, ratio_is="value/anchor",
           value_spread=None, anchor_spread=None, note=None):
    """A metric row; ``goal`` is ``("<=", 3.0)`` or ``(">=", 8.0)`` on the ratio, or None."""
    ratio = None
    if value is not None and anchor_value:
        ratio = value / anchor_value if ratio_is == "value/anchor" else anchor_value / value
    met = None
    if goal is not None and ratio is not None:
        op, bound = goal
        met = ratio <= bound if op == "<=" else ratio >= bound
    row = {"name": name, "value": _round(value), "unit": unit, "anchor": anchor, "anchor_value": _round(anchor_value),
           "ratio": _round(ratio, 2), "ratio_is": ratio_is,
           "goal": None if goal is None else f"ratio {goal[0]} {goal[1]:g}", "met": met, "status": "measured"}
    if value_spread:
        row["value_spread"] = {k: _round(v) for k, v in value_spread.items()}
    if anchor_spread:
        row["anchor_spread"] = {k: _round(v) for k, v in anchor_spread.items()}
    if note:
        row["note"] = note
    return row


def skipped(name, unit, anchor, goal, status, anchor_value=None, ratio_is="value/anchor", note=None):
    """A row that could not be measured; ``status`` says why (and what to install)."""
    return {"name": name, "value": None, "unit": unit, "anchor": anchor, "anchor_value": _round(anchor_value),
            "ratio": None, "ratio_is": ratio_is, "goal": None if goal is None else f"ratio {goal[0]} {goal[1]:g}",
            "met": None, "status": status, **({"note": note} if note else {})}


def _round(v, digits=None):
    if v is None or isinstance(v, (bool, str)):
        return v
    if digits is not None:
        return round(v, digits)
    return round(v, 1) if abs(v) >= 10 else round(v, 3)


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _met(row):
    if row["met"] is None:
        return row["status"] if row["status"] != "measured" else "-"
    return "MET" if row["met"] else "NOT MET"


def print_table(rows, out):
    """A plain-text table of the metric rows."""
    head = ("metric", "value", "unit", "anchor", "anchor value", "ratio", "goal", "met")
    cells = [(r["name"], _fmt(r["value"]), r["unit"], r["anchor"], _fmt(r["anchor_value"]),
              "-" if r["ratio"] is None else f"{r['ratio']:g}x", r["goal"] or "-", _met(r)) for r in rows]
    widths = [min(60, max(len(str(c[i])) for c in cells + [head])) for i in range(len(head))]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths))
    print(line, file=out)
    print("-" * len(line), file=out)
    for c in cells:
        print("  ".join(str(x).ljust(w) for x, w in zip(c, widths)), file=out)


def rst_table(rows, caption="Results"):
    """The metric rows as the reStructuredText list-table of doc/performance.rst: each figure
    with its [min–max] over the repeats, goals as ``≤ 3x``/``≥ 8x``, ``**met**``/``**not met**``."""
    out = [f".. list-table:: {caption}", "   :header-rows: 1", "   :widths: 28 14 24 14 10 9 9", "",
           "   * - metric", "     - rpcmm", "     - anchor", "     - anchor value", "     - ratio",
           "     - goal", "     - met"]
    for r in rows:
        value, anchor_value = "-", "-"
        if r["value"] is not None:
            value = f"{_fmt(r['value'])} {r['unit']}{_spread(r.get('value_spread'))}"
        if r["anchor_value"] is not None:
            anchor_value = f"{_fmt(r['anchor_value'])}{_spread(r.get('anchor_spread'))}"
        ratio = "-"
        if r["ratio"] is not None:
            ratio = f"{r['ratio']:g}x" + (" faster" if r["ratio_is"] == "anchor/value" else "")
        goal = "-"
        if r["goal"]:
            op, bound = r["goal"].split()[1:]
            goal = f"{'≤' if op == '<=' else '≥'} {bound}x"
        met = "-" if r["met"] is None else ("**met**" if r["met"] else "**not met**")
        if r["status"] != "measured":
            met = r["status"]
        out += [f"   * - {r['name']}", f"     - {value}", f"     - {r['anchor']}", f"     - {anchor_value}",
                f"     - {ratio}", f"     - {goal}", f"     - {met}"]
    return "\n".join(out) + "\n"


def _spread(spread):
    """`` [min–max]`` of a figure's repeats, or nothing when there was one."""
    if not spread or spread.get("min") is None or spread.get("min") == spread.get("max"):
        return ""
    return f" [{_fmt(spread['min'])}–{_fmt(spread['max'])}]"


def write_json(path, machine, rows, details):
    """``{"machine", "metrics", "details"}``; ``details`` holds the raw per-run figures."""
    with open(path, "w") as f:
        json.dump({"machine": machine, "metrics": rows, "details": details}, f, indent=1, default=str)


def quantiles(samples_ns, points=200):
    """``points`` evenly spaced quantiles (in microseconds) of a sample, for CDF plots."""
    s = sorted(samples_ns)
    if not s:
        return []
    return [round(s[min(len(s) - 1, int(i / (points - 1) * (len(s) - 1)))] / 1e3, 2) for i in range(points)]


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        return None


def plot_cdfs(path, title, series):
    """Latency CDFs: ``series`` maps a label to a quantile list (microseconds). False if no matplotlib."""
    plt = _pyplot()
    if plt is None or not any(series.values()):
        return False
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for label, q in series.items():
        if q:
            ax.plot(q, [i / (len(q) - 1) * 100 for i in range(len(q))], label=label)
    ax.set_xscale("log")
    ax.set_xlabel("latency (µs, log scale)")
    ax.set_ylabel("percentile")
    ax.axhline(99, color="grey", lw=0.5, ls="--")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_scale(path, steps):
    """Four panels against hosts in the table: ingest, CPU per heartbeat, lookup latency, memory."""
    plt = _pyplot()
    if plt is None or not steps:
        return False
    n = [s["hosts"] for s in steps]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5))
    ax = axes[0][0]
    ax.plot(n, [s["flood"]["hosts_per_s"] for s in steps], "o-", label="256 hosts per message")
    ax.plot(n, [s["flood_one_host_per_message"]["hosts_per_s"] for s in steps], "s-", label="1 host per message")
    ax.set_title("saturated heartbeat ingest (10 topics per host)")
    ax.legend(fontsize=7)
    ax.set_ylabel("host heartbeats / s")
    ax = axes[0][1]
    ax.plot(n, [s["flood"]["cpu_us_per_host"] for s in steps], "o-", label="256 hosts per message")
    ax.plot(n, [s["flood_one_host_per_message"]["cpu_us_per_host"] for s in steps], "s-", label="1 host per message")
    ax.legend(fontsize=7)
    ax.set_title("registry CPU per host heartbeat")
    ax.set_ylabel("µs")
    ax = axes[1][0]
    ax.plot(n, [s["lookup_idle"]["p50_us"] for s in steps], "o-", label="p50 idle")
    ax.plot(n, [s["lookup_idle"]["p99_us"] for s in steps], "o--", label="p99 idle")
    ax.plot(n, [s["lookup_ingest"]["p50_us"] for s in steps], "s-", label="p50 during 1 s heartbeats")
    ax.plot(n, [s["lookup_ingest"]["p99_us"] for s in steps], "s--", label="p99 during 1 s heartbeats")
    ax.set_title("remote lookup latency")
    ax.set_ylabel("µs")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax = axes[1][1]
    ax.plot(n, [s["bytes_per_registration"] for s in steps], "o-")
    ax.set_title("registry RSS per registration")
    ax.set_ylabel("bytes")
    for row in axes:
        for ax in row:
            ax.set_xscale("log")
            ax.set_xlabel("hosts in the registry")
            ax.grid(True, which="both", alpha=0.3)
            ax.set_ylim(bottom=0) if ax.get_yscale() == "linear" else None
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
