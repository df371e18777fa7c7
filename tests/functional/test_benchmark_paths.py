"""The benchmark's rpcmm measurements still measure: a change in the library they hook into
must not turn a section into an error that only the next benchmark run would show.

(The propagation section once timed nothing for a session: the cache's ``apply_delta`` had
grown an option its timing wrapper did not pass on, so every change counted as missed.)
"""

import json
import subprocess
import sys
import textwrap

import pytest

from benchmarks import rpcmm_paths, servers
from rpcmm.server import RegistryServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def registry():
    server = RegistryServer("127.0.0.1:0", sweep_interval=0.05).start()
    yield server
    server.stop()


def test_change_propagation_sees_every_change(registry):
    summary = rpcmm_paths.change_propagation(str(registry.endpoint), n=10, warmup=2, budget=20)
    assert summary["missed"] == 0
    assert len(summary["samples_ns"]) == 10 and all(sample > 0 for sample in summary["samples_ns"])



def test_the_bare_oslo_transport_answers_calls_and_casts():
    # In a child process, as the benchmark runs it: the bare transport wires itself into
    # oslo's global cfg.CONF and fake driver, which the test process must not share.
    script = textwrap.dedent("""
        import json
        from benchmarks import bare_oslo, oslo_rpc
        oslo_rpc.configure()
        side = bare_oslo.BareSide()
        try:
            side.warm_up(5)
            calls = side.take(20)
            casts = side.cast_burst(200, 20)
        finally:
            side.close()
        print(json.dumps({"calls": calls, "casts": casts}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=50,
                          env=servers.child_env())
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(result["calls"]) == 20 and all(sample > 0 for sample in result["calls"])
    assert result["casts"]["cast_per_s"] > 0 and result["casts"]["cast_sent_per_s"] > 0


def test_the_eventlet_dispatch_ceiling_dispatches_every_message():
    pytest.importorskip("eventlet")  # the benchmark skips this row without it
    from benchmarks import oslo_rpc
    ceiling = oslo_rpc.EventletCeiling()
    try:
        assert ceiling.take(300, 20) > 0  # a burst that falls short raises TimeoutError in the child
        assert ceiling.take(300, 20) > 0  # and it serves more than one
    finally:
        ceiling.close()
    assert ceiling.server.popen.poll() is not None
