"""Run the fault-injection suite and print what each scenario measured.

    python -m tests.faults.run              # the short form (as CI runs it), about a minute
    python -m tests.faults.run --long       # more hosts and clients, each scenario three times
    python -m tests.faults.run --json FILE  # also write the figures as JSON

The network-namespace scenario needs root and iproute2; without them it is reported skipped.
"""

import argparse
import json
import statistics
import sys
import tempfile

from tests.faults.harness import Cluster, NetworkNamespace
from tests.faults.scenarios import SCENARIOS

SHORT = {"services": 12, "clients": 3, "repeats": 1}
LONG = {"services": 30, "clients": 4, "repeats": 3}


def run(form):
    """Run every scenario ``form["repeats"]`` times on one cluster; return {name: [figures]}."""
    cut_off = NetworkNamespace.available() is None
    results = {}
    with tempfile.TemporaryDirectory(prefix="rpcmm-faults-") as workdir:
        with Cluster(workdir, registries=3, cut_off_registry=cut_off) as cluster:
            cluster.start(services=form["services"], clients=form["clients"], duration=600.0)
            for _ in range(form["repeats"]):
                for scenario in SCENARIOS:
                    results.setdefault(scenario.__name__, []).append(scenario(cluster))
    return results


def summarise(results):
    """One row per scenario: medians of the numbers, sums of the counts."""
    rows = {}
    for name, runs in results.items():
        row = {}
        for key in runs[0]:
            values = [r[key] for r in runs if key in r]
            if key in ("lookups", "lookups_failed", "calls", "calls_failed", "late_handouts"):
                row[key] = sum(values)
            elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                row[key] = round(statistics.median(values), 4)
            else:
                row[key] = values[-1]
        rows[name] = row
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long", action="store_true")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    form = LONG if args.long else SHORT
    rows = summarise(run(form))
    print(f"fault injection: {form['services']} services, {form['clients']} clients, 3 registries, "
          f"{form['repeats']} run(s) of each scenario")
    for name, row in rows.items():
        print(f"  {name:<16} " + ", ".join(f"{k}={v}" for k, v in row.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"form": form, "scenarios": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
