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


def test_green_threads_and_the_feeds_native_loop_share_its_command_queue_without_hanging():
    # eventlet patches queue.SimpleQueue into a green-locked queue: a green thread and the
    # native loop contending for it hung one side for good (after 3,000-14,000 commands).
    program = pathlib.Path(__file__).with_name("eventlet_feed_commands_program.py")
    result = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout[-500:] + result.stderr[-3000:]
    assert "queued 100000" in result.stdout
    # What the native loop logged as it stopped was handed over before stop() returned.
    assert "last words logged" in result.stdout


def test_native_threads_log_under_eventlet_without_hanging_and_nothing_is_lost():
    # monkey_patch makes handler locks green; the registry's native loop logging while green
    # threads log hung both within a second. Its records now reach the handlers from the hub.
    program = pathlib.Path(__file__).with_name("eventlet_native_logging_program.py")
    result = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout[-500:] + result.stderr[-3000:]
    words = result.stdout.split()
    joins, relayed = int(words[words.index("joins") + 1]), int(words[words.index("relayed") + 1])
    assert joins > 100 and relayed == joins


def test_a_join_storm_at_an_in_process_registry_does_not_hold_the_hub():
    # 40,000 hosts joining log 40,000 lines from the registry's native loop; handing them over
    # in one go held every green thread for 2.1-2.4 s, in batches for 0.15 s.
    program = pathlib.Path(__file__).with_name("eventlet_join_storm_program.py")
    result = subprocess.run([sys.executable, str(program), "40000"], capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stdout[-500:] + result.stderr[-3000:]
    words = result.stdout.split()
    assert int(words[words.index("joined") + 1]) == 40000
    assert float(words[words.index("gap") + 1]) < 1.0
