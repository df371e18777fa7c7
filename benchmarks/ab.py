"""A/B a proposed change: run the same benchmark sections on two checkouts, alternately.

``python -m benchmarks.ab OTHER_ROOT [--rounds 3] [--only SECTIONS] [--run-args "ARGS"]``

``OTHER_ROOT`` is a copy of this checkout with a proposal from ``benchmarks/proposals`` applied
(for example ``cp -r . /tmp/rpcmm-scratch && patch -p1 -d /tmp/rpcmm-scratch < benchmarks/proposals/X.diff``).
Each round runs ``ROOT/benchmarks/run --quick --only SECTIONS --json`` for this checkout and
then the other one (each imports its own ``rpcmm``), and the medians of every metric over the
rounds are printed side by side with the change in percent. Alternating the two keeps the
machine's drift from favouring either.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(root, only, extra, out):
    cmd = [os.path.join(root, "benchmarks", "run"), "--quick", "--only", only, "--json", out, *extra]
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("PYTHONPATH", None)
    subprocess.run(cmd, cwd=root, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=900)
    with open(out) as f:
        return {m["name"]: m["value"] for m in json.load(f)["metrics"] if m["value"] is not None}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("other", help="root of the checkout with the change applied")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="lookups")
    parser.add_argument("--run-args", default="", help="more arguments for benchmarks/run, as one string")
    args = parser.parse_args(argv)
    results = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for label, root in (("before", HERE), ("after", os.path.abspath(args.other))):
                out = os.path.join(tmp, f"{label}{r}.json")
                results[label].append(_run(root, args.only, args.run_args.split(), out))
                print(f"round {r + 1} {label} done", file=sys.stderr, flush=True)
    names = [n for n in results["before"][0] if all(n in x for x in results["before"] + results["after"])]
    print(f"{'metric':<72} {'before':>12} {'after':>12} {'change':>8}")
    for n in names:
        b = statistics.median(x[n] for x in results["before"])
        a = statistics.median(x[n] for x in results["after"])
        print(f"{n[:72]:<72} {b:>12,.1f} {a:>12,.1f} {100 * (a - b) / b if b else 0:>+7.1f}%")
    print(json.dumps(results), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
