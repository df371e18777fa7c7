"""The matchmaker contract: what every backend does alike.

Each test runs once per backend (see conftest.py); ``@requires``/``@excludes`` name the
capabilities a test depends on, and backends that declare otherwise are skipped.
"""

import pytest

from rpcmm.addressing import Anycast, Directed, Fanout
from rpcmm.errors import ConfigurationError, LifecycleError, RegistryUnavailable
from rpcmm.matchmaker import Capability
from rpcmm.testing import wait_for
from tests.contract.backends import FAST, always, excludes, requires

SHARED = Capability.SHARED_REGISTRATIONS


def _seen_by_client(backend, provider):
    """(client, provider) once ``provider`` registered host-a for compute and a new client sees it."""
    client = backend.make()
    provider.register("compute", "host-a")
    wait_for(lambda: client.lookup(Fanout("compute")) == ("host-a",), what="host-a visible")
    return client, provider


# -- lifecycle and bookkeeping -------------------------------------------------------------------

def test_start_and_stop_are_idempotent(backend):
    matchmaker = backend.make()
    assert matchmaker.start() is matchmaker
    matchmaker.stop()
    matchmaker.stop()
    assert not matchmaker.started


def test_register_before_start_raises_lifecycle_error(backend):
    matchmaker = backend.make()
    matchmaker.stop()
    with pytest.raises(LifecycleError):
        matchmaker.register("compute", "host-a")


def test_registrations_lists_own_hosts_and_topics(backend):
    matchmaker = backend.make()
    matchmaker.register("compute", "host-a")
    matchmaker.register("network", "host-a")
    matchmaker.register("compute", "host-b")
    matchmaker.unregister("network", "host-a")
    assert matchmaker.registrations() == {"host-a": frozenset({"compute"}), "host-b": frozenset({"compute"})}


@pytest.mark.parametrize("topic, host", [
    ("", "host-a"), ("compute", ""), ("with space", "host-a"), ("compute", "a\nb"),
])
def test_invalid_names_are_refused(backend, topic, host):
    matchmaker = backend.make()
    with pytest.raises(ConfigurationError):
        matchmaker.register(topic, host)
    assert matchmaker.registrations() == {}


# -- empty topics ----------------------------------------------------------------------------------

@excludes(Capability.EVERYTHING_LOCAL)
def test_topic_nobody_serves_resolves_to_nothing(backend):
    matchmaker = backend.make()
    assert matchmaker.lookup(Anycast("nobody")) == ()
    assert matchmaker.lookup(Directed("nobody", "host-a")) == ()
    assert matchmaker.lookup(Fanout("nobody")) == ()


@requires(SHARED)
def test_topic_whose_last_host_left_resolves_to_nothing(backend):
    client, provider = _seen_by_client(backend, backend.provider())
    provider.unregister("compute", "host-a")
    wait_for(lambda: client.lookup(Fanout("compute")) == (), what="compute empty")
    assert client.lookup(Anycast("compute")) == ()
    assert client.lookup(Directed("compute", "host-a")) == ()


# -- register / unregister -------------------------------------------------------------------------

@requires(SHARED)
def test_own_registration_is_visible_at_once(backend):
    matchmaker = backend.make()
    assert matchmaker.lookup(Fanout("compute")) == ()  # caches the empty answer
    matchmaker.register("compute", "host-a")
    assert matchmaker.lookup(Fanout("compute")) == ("host-a",)


@requires(SHARED)
def test_registration_is_visible_to_another_matchmaker(backend):
    provider, client = backend.provider(), backend.make()
    assert client.lookup(Fanout("compute")) == ()
    provider.register("compute", "host-a")
    wait_for(lambda: client.lookup(Fanout("compute")) == ("host-a",), what="host-a visible")


@requires(SHARED)
def test_unregister_is_visible_at_once_to_self_and_soon_to_others(backend):
    client = backend.make()
    provider = backend.provider()
    provider.register("compute", "host-a")
    provider.register("compute", "host-b")
    wait_for(lambda: len(client.lookup(Fanout("compute"))) == 2, what="both hosts visible")
    provider.unregister("compute", "host-a")
    assert provider.lookup(Fanout("compute")) == ("host-b",)
    wait_for(lambda: client.lookup(Fanout("compute")) == ("host-b",), what="host-a gone")


@requires(SHARED)
def test_unregistering_one_topic_keeps_the_hosts_other_topics(backend):
    provider = backend.make()
    provider.register("compute", "host-a")
    provider.register("network", "host-a")
    provider.unregister("compute", "host-a")
    assert provider.lookup(Fanout("compute")) == ()
    assert provider.lookup(Fanout("network")) == ("host-a",)


def test_unregistering_an_unknown_pair_is_ignored(backend):
    matchmaker = backend.make()
    matchmaker.unregister("compute", "never-registered")
    assert matchmaker.registrations() == {}


@requires(SHARED)
def test_stop_withdraws_the_hosts_it_registered(backend):
    client, provider = _seen_by_client(backend, backend.provider())
    provider.stop()
    wait_for(lambda: client.lookup(Fanout("compute")) == (), what="host-a withdrawn")


# -- expiry ------------------------------------------------------------------------------------------

@requires(SHARED, Capability.EXPIRY)
def test_host_expires_when_heartbeats_stop(backend):
    client, provider = _seen_by_client(backend, backend.make())
    # No heartbeat runs: the registration lapses after its TTL (plus the client's cache age).
    wait_for(lambda: client.lookup(Fanout("compute")) == (), what="host-a expired")
    assert provider.registrations() == {"host-a": frozenset({"compute"})}


@requires(SHARED, Capability.EXPIRY)
def test_heartbeats_keep_a_host_alive_past_its_ttl(backend):
    client = backend.make()
    provider = backend.make()
    provider.register("compute", "host-a")
    with provider.heartbeat():
        wait_for(lambda: client.lookup(Fanout("compute")) == ("host-a",), what="host-a visible")
        always(lambda: client.lookup(Fanout("compute")) == ("host-a",), duration=3 * FAST.ttl,
               what="host-a alive while heartbeating")


@requires(SHARED, Capability.EXPIRY)
def test_heartbeat_brings_back_an_expired_host(backend):
    client = backend.make()
    provider = backend.make()
    provider.register("compute", "host-a")
    wait_for(lambda: client.lookup(Fanout("compute")) == (), what="host-a expired")
    with provider.heartbeat():
        wait_for(lambda: client.lookup(Fanout("compute")) == ("host-a",), what="host-a back")


# -- lookups: round robin, directed, fanout -----------------------------------------------------------

def test_anycast_round_robin_is_strict(backend):
    hosts = ("host-a", "host-b", "host-c")
    client = backend.serving("compute", hosts)
    picks = [client.lookup(Anycast("compute"))[0] for _ in range(3 * len(hosts))]
    assert sorted(picks[:3]) == list(hosts)
    assert picks == picks[:3] * 3


def test_directed_resolves_to_the_host_only_if_it_serves(backend):
    client = backend.serving("compute", ["host-a", "host-b"])
    assert client.lookup(Directed("compute", "host-b")) == ("host-b",)
    assert client.lookup(Directed("compute", "host-z")) == ()


def test_fanout_reaches_every_host(backend):
    hosts = [f"host-{i:02d}" for i in range(12)]
    client = backend.serving("compute", hosts)
    assert sorted(client.lookup(Fanout("compute"))) == hosts
    assert sorted(client.hosts("compute")) == hosts


def test_fully_qualified_host_names_are_opaque(backend):
    hosts = ["node-1.example.org", "10.0.0.5:9501"]
    client = backend.serving("compute.v2", hosts)
    assert client.lookup(Directed("compute.v2", "node-1.example.org")) == ("node-1.example.org",)
    assert sorted(client.lookup(Fanout("compute.v2"))) == sorted(hosts)


# -- static ring and localhost ---------------------------------------------------------------------------

@requires(Capability.STATIC_RING)
def test_static_ring_topics_resolve_to_their_hosts(backend):
    matchmaker = backend.make(ring={"scheduler": ["controller-1", "controller-2"]})
    assert matchmaker.lookup(Fanout("scheduler")) == ("controller-1", "controller-2")
    assert matchmaker.lookup(Directed("scheduler", "controller-2")) == ("controller-2",)


@requires(Capability.STATIC_RING, SHARED)
def test_registered_hosts_join_the_static_ones(backend):
    matchmaker = backend.make(ring={"scheduler": ["controller-1"]})
    matchmaker.register("scheduler", "controller-9")
    assert matchmaker.lookup(Fanout("scheduler")) == ("controller-1", "controller-9")


@requires(Capability.EVERYTHING_LOCAL)
def test_everything_resolves_to_the_local_host(backend):
    matchmaker = backend.make()
    host = matchmaker.lookup(Anycast("anything"))
    assert len(host) == 1
    assert matchmaker.lookup(Fanout("something-else")) == host
    assert matchmaker.lookup(Directed("anything", host[0])) == host


# -- unreachable backend -----------------------------------------------------------------------------------

@requires(Capability.REMOTE)
def test_unreachable_backend_raises_registry_unavailable(backend):
    matchmaker = backend.make_unreachable()
    with pytest.raises(RegistryUnavailable) as caught:
        matchmaker.lookup(Fanout("compute"))
    assert caught.value.topic == "compute"
    assert caught.value.endpoints


@requires(Capability.REMOTE, Capability.STATIC_RING)
def test_unreachable_backend_falls_back_to_the_static_ring(backend):
    matchmaker = backend.make_unreachable(ring={"scheduler": ["controller-1"]})
    assert matchmaker.lookup(Fanout("scheduler")) == ("controller-1",)
    with pytest.raises(RegistryUnavailable):
        matchmaker.lookup(Fanout("compute"))


@requires(Capability.REMOTE)
def test_registering_while_unreachable_keeps_the_registration(backend):
    matchmaker = backend.make_unreachable()
    matchmaker.register("compute", "host-a")
    with matchmaker.heartbeat():
        assert matchmaker.registrations() == {"host-a": frozenset({"compute"})}
    matchmaker.stop()  # withdrawing from an unreachable backend must not raise either
