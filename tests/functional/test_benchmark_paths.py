"""The benchmark's rpcmm measurements still measure: a change in the library they hook into
must not turn a section into an error that only the next benchmark run would show.

(The propagation section once timed nothing for a session: the cache's ``apply_delta`` had
grown an option its timing wrapper did not pass on, so every change counted as missed.)
"""

import pytest

from benchmarks import rpcmm_paths
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

