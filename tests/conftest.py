"""Fixtures shared by every test: a manual clock, a zmq context, and a leak check."""

import threading

import pytest
import zmq

from rpcmm.clock import ManualClock
from rpcmm.testing import wait_for


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def context():
    """A zmq context for one test; termed at the end, which fails loudly if a socket leaked."""
    ctx = zmq.Context()
    yield ctx
    ctx.term()


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Every thread a test starts must be gone when it ends."""
    before = set(threading.enumerate())
    yield
    wait_for(lambda: not (set(threading.enumerate()) - before), timeout=5.0,
             what="threads started by the test to finish")
