import pytest

from rpcmm.seed import Seed
from rpcmm.server import RegistryServer

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
