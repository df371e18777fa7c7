"""Fixtures of the contract suite: one per backend, and ``backend``, which is each in turn.

A test that takes ``backend`` runs once per backend (static ring, localhost, in-band registry,
Redis) and is skipped exactly where the backend's declared capabilities rule it out (see
``requires``/``excludes`` in backends.py): a backend opts out by declaring, never by a test
special-casing it.

Servers are real and local: a RegistryServer in this process on 127.0.0.1:0 per test, and one
``redis-server`` on a random loopback port per session (each test uses its own key
namespace). Without redis-server the Redis tests skip, or fail under CI=true.

Every test here is time-limited (TEST_TIMEOUT unless it says otherwise).
"""

import os
import socket
import uuid
from contextlib import closing

import pytest

from rpcmm.server import RegistryServer
from tests.contract.backends import (
    LocalhostBackend,
    RedisBackend,
    RegistryBackend,
    StaticBackend,
    skip_unless_capable,
)
from tests.contract.redis_process import RedisProcess, redis_executable

#: Seconds after which any test in this directory is stopped, unless marked otherwise.
TEST_TIMEOUT = 20

#: Contract tests a backend is known to fail: (test name, backend) -> (why, strict). They run
#: as xfails; a strict one that passes fails the run, asking to delete its entry here. Races
#: are not strict: they pass now and then.
KNOWN_VIOLATIONS = {}


def pytest_configure(config):
    config.addinivalue_line("markers", "requires(*capabilities): run only on backends declaring them all")
    config.addinivalue_line("markers", "excludes(*capabilities): skip on backends declaring any of them")


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    for item in items:
        if not str(item.fspath).startswith(here):
            continue
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT))
        callspec = getattr(item, "callspec", None)
        known = KNOWN_VIOLATIONS.get((item.originalname, callspec and callspec.params.get("backend")))
        if known is not None:
            reason, strict = known
            item.add_marker(pytest.mark.xfail(reason=reason, strict=strict))


# -- one fixture per backend ---------------------------------------------------------------------

BACKENDS = {backend.name: backend for backend in (StaticBackend, LocalhostBackend, RegistryBackend, RedisBackend)}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request):
    """Each backend in turn, skipped (before any server starts) where the test's capability
    markers rule it out."""
    kind = BACKENDS[request.param]
    skip_unless_capable(request.node, kind.capabilities(), kind.name)
    return request.getfixturevalue(f"{request.param}_backend")


@pytest.fixture
def static_backend():
    with closing(StaticBackend()) as made:
        yield made


@pytest.fixture
def localhost_backend():
    with closing(LocalhostBackend()) as made:
        yield made


@pytest.fixture
def registry_backend(dead_endpoint):
    server = RegistryServer("127.0.0.1:0", sweep_interval=0.05).start()
    try:
        with closing(RegistryBackend(server.endpoint, dead_endpoint)) as made:
            yield made
    finally:
        server.stop()


@pytest.fixture
def redis_backend(redis_server, redis_namespace, dead_endpoint):
    with closing(RedisBackend(redis_server.url, redis_namespace, f"redis://{dead_endpoint}")) as made:
        yield made


# -- servers ---------------------------------------------------------------------------------------

@pytest.fixture
def dead_endpoint():
    """``127.0.0.1:port`` where nothing listens, held for the test so nobody else takes it.

    The socket is bound but never listens, so a connection is refused at once.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        yield "127.0.0.1:%d" % held.getsockname()[1]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One redis-server for the session; tests keep apart by key namespace."""
    executable = redis_executable()
    server = RedisProcess(executable, str(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.stop()


@pytest.fixture
def redis_namespace():
    """A key namespace of this test's own."""
    return f"rpcmm-test-{uuid.uuid4().hex[:12]}"
