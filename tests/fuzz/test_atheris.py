"""Run the atheris harness (atheris_protocol.py) for a bounded time, when atheris is installed.

``RPCMM_FUZZ_SECONDS`` (default 10) bounds the run; CI may raise it. The harness runs in a
child process because libFuzzer owns the process it fuzzes (and exits it on a finding).
"""

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

from rpcmm import protocol

HARNESS = pathlib.Path(__file__).with_name("atheris_protocol.py")
SECONDS = int(os.environ.get("RPCMM_FUZZ_SECONDS", "10"))

#: Valid messages of every kind: the fuzzer mutates from these.
SEEDS = (
    protocol.Heartbeat((protocol.HostState("h1", 1.0, 3.0, ("a", "b")),
                        protocol.HostState("h2.example.org", 0.5, 2.0, ()))),
    protocol.Unregister(("h1", "h2")),
    protocol.Lookup(7, "a"),
    protocol.ListHosts(2),
    protocol.Hosts(0, ("h1", "10.0.0.1:9501")),
    protocol.Table(3, (protocol.TableRow("h1", 0.25, 1.0, 3.0, ("a",)),)),
    protocol.Error(4, "no"),
    protocol.Delta(5, 10, 7, "a", ("h1",)),
    protocol.Snapshot(5, 10, "a", ()),
    protocol.Tick(5, 10, protocol.State.UP, 0.0, 0.5),
    protocol.Status(11),
    protocol.Health(11, protocol.State.UP, 5, 10, 3, 7, 40123, 0.2, "10.0.0.1:7701", 12.5),
    protocol.Suspect(("h1",)),
)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                                reason="atheris is not installed (pip install atheris; CPython 3.8-3.11 wheels)")


@pytest.mark.timeout(SECONDS + 60)
def test_decode_and_table_survive_coverage_guided_fuzzing(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(SEEDS):
        (corpus / f"seed-{i}").write_bytes(protocol.encode(seed))
    env = dict(os.environ, PYTHONPATH=str(HARNESS.parents[2]))
    run = subprocess.run(
        [sys.executable, str(HARNESS), str(corpus), f"-max_total_time={SECONDS}", "-timeout=2",
         "-rss_limit_mb=2048", f"-artifact_prefix={tmp_path}/", "-print_final_stats=1"],
        capture_output=True, text=True, env=env, timeout=SECONDS + 50)
    output = run.stdout + run.stderr
    artifacts = [p.name for p in tmp_path.iterdir() if p.is_file()]
    assert run.returncode == 0, f"atheris found a failing input {artifacts}:\n{output[-4000:]}"
    done = re.search(r"Done (\d+) runs? in|stat::number_of_executed_units:\s*(\d+)", output)
    assert done, output[-2000:]
    print(f"\natheris: {done.group(1) or done.group(2)} inputs in {SECONDS}s, no failure")
