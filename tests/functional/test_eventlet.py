"""rpcmm's core in a process that eventlet has monkey-patched, through the runtime seam."""

import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("eventlet")
PROGRAM = pathlib.Path(__file__).with_name("eventlet_program.py")


def test_server_heartbeats_lookups_and_live_feed_under_eventlet():
    result = subprocess.run([sys.executable, str(PROGRAM)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "eventlet ok eventlet.green.zmq" in result.stdout
