import pytest

from rpcmm.backends.registry import RegistryMatchmaker
from rpcmm.seed import Seed
from rpcmm.server import RegistryServer
from rpcmm.timing import HeartbeatTiming

#: Fast timing for tests that wait on real expiry: a heartbeat every 50 ms, gone after 300 ms.
FAST = HeartbeatTiming(interval=0.05, ttl=0.3)

pytestmark = pytest.mark.functional


@pytest.fixture
def start_server():
    """Start registries in threads on 127.0.0.1 (OS-picked ports); all stopped at the end."""
    servers = []

    def start(endpoint="127.0.0.1:0", **kwargs):
        kwargs.setdefault("sweep_interval", 0.02)
        server = RegistryServer(endpoint, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def seed_for():
    def build(*servers, ring=None):
        return Seed.build(ring=ring or {}, registries=[s.endpoint for s in servers])

    return build


@pytest.fixture
def make_matchmaker():
    """Start RegistryMatchmakers (FAST timing, 0.3 s lookup timeout); all stopped at the end."""
    made = []

    def make(seed, **kwargs):
        kwargs.setdefault("timing", FAST)
        kwargs.setdefault("lookup_timeout", 0.3)
        matchmaker = RegistryMatchmaker(seed, **kwargs).start()
        made.append(matchmaker)
        return matchmaker

    yield make
    for matchmaker in made:
        matchmaker.stop()
