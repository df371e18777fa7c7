"""The machine's embedded registry: exactly one process serves it, and another takes over."""

import pytest

from rpcmm.embedded import EmbeddedRegistry
from rpcmm.server import RegistryServer
from rpcmm.testing import wait_for

pytestmark = [pytest.mark.functional, pytest.mark.timeout(20)]


@pytest.fixture
def holder():
    """A registry on a port the OS picked: the 'first process' holding the embedded port."""
    server = RegistryServer("127.0.0.1:0").start()
    yield server
    server.stop()


@pytest.fixture
def contenders(holder):
    made = []

    def make():
        registry = EmbeddedRegistry(holder.endpoint, retry_interval=0.05)
        made.append(registry)
        return registry.start()

    yield make
    for registry in made:
        registry.stop()


def test_nobody_serves_while_the_port_is_taken(holder, contenders):
    a, b = contenders(), contenders()
    assert not a.serving and not b.serving
    assert not a.try_serve()


def test_exactly_one_takes_over_then_another(holder, contenders):
    a, b = contenders(), contenders()
    holder.stop()
    first = wait_for(lambda: a if a.serving else b if b.serving else None, timeout=5)
    other = b if first is a else a
    assert not other.serving
    first.stop()
    wait_for(lambda: other.serving, timeout=5)
    assert other.takeovers == 1


def test_an_attempt_serves_at_once_when_the_port_is_free(holder):
    registry = EmbeddedRegistry(holder.endpoint, retry_interval=30)  # no retry during the test
    try:
        assert not registry.start().serving
        holder.stop()  # the owner leaves
        assert registry.try_serve() and registry.serving
    finally:
        registry.stop()
    assert not registry.serving


def test_a_fixed_port_is_required():
    with pytest.raises(ValueError):
        EmbeddedRegistry("127.0.0.1:0")
