"""What the contract tests drive: one :class:`Backend` per matchmaker backend, and helpers.

A Backend makes started matchmakers of its kind (all with the short :data:`FAST` timing) and
stops them all at the end of the test. Tests state the capabilities they depend on with
:func:`requires` and :func:`excludes`; conftest.py skips the backends that do not fit.
"""

import time

import pytest

from rpcmm.backends.localhost import LocalhostMatchmaker
from rpcmm.backends.redis import RedisMatchmaker  # imports without redis-py: it loads on start()
from rpcmm.backends.registry import RegistryMatchmaker
from rpcmm.backends.static import StaticMatchmaker
from rpcmm.matchmaker import Capability
from rpcmm.seed import Seed
from rpcmm.testing import wait_for
from rpcmm.timing import HeartbeatTiming

__all__ = [
    "FAST", "CACHE_MAX_AGE", "LOOKUP_TIMEOUT",
    "always", "requires", "excludes", "skip_unless_capable",
    "Backend", "StaticBackend", "LocalhostBackend", "RemoteBackend", "RegistryBackend", "RedisBackend",
]

#: Heartbeat timing every contract matchmaker declares.
FAST = HeartbeatTiming(interval=0.1, ttl=0.3)
#: How long remote backends trust a cached answer in the contract suite.
CACHE_MAX_AGE = 0.2
#: Per-operation timeout of remote backends in the contract suite.
LOOKUP_TIMEOUT = 0.2
#: Seconds between two checks of a condition in :func:`always`.
POLL_INTERVAL = 0.005


def always(condition, duration, what="condition"):
    """Assert that ``condition()`` stays true, checking it for ``duration`` seconds."""
    end = time.monotonic() + duration
    while time.monotonic() < end:
        value = condition()
        assert value, f"{what} became false ({value!r})"
        time.sleep(POLL_INTERVAL)  # a pause between two checks, not a synchronisation


def requires(*capabilities):
    """Run the test only on backends that declare every one of ``capabilities``."""
    return pytest.mark.requires(*capabilities)


def excludes(*capabilities):
    """Skip the test on backends that declare any of ``capabilities``."""
    return pytest.mark.excludes(*capabilities)


def skip_unless_capable(node, capabilities, name):
    """Skip the running test if its requires/excludes markers rule out ``capabilities``."""
    for marker in node.iter_markers("requires"):
        missing = set(marker.args) - capabilities
        if missing:
            pytest.skip(f"{name} does not declare {', '.join(sorted(missing))}")
    for marker in node.iter_markers("excludes"):
        present = set(marker.args) & capabilities
        if present:
            pytest.skip(f"{name} declares {', '.join(sorted(present))}")


class Backend:
    """Makes started matchmakers of one backend; :meth:`close` stops them all.

    Subclasses set ``name`` and ``factory`` (the matchmaker class, whose declared capabilities
    decide which tests run) and implement :meth:`_build` (an unstarted matchmaker whose static
    ring is ``ring``) and, for remote backends, :meth:`_build_unreachable`.
    """

    name = "?"
    factory = None

    def __init__(self):
        self._made = []

    @classmethod
    def capabilities(cls):
        return cls.factory.capabilities

    def make(self, ring=None):
        """A started matchmaker with ``ring`` as its static ring."""
        return self._track(self._build(ring or {}))

    def provider(self, ring=None):
        """A started matchmaker that heartbeats, so what it registers stays until unregistered."""
        matchmaker = self.make(ring)
        matchmaker.start_heartbeat()
        return matchmaker

    def make_unreachable(self, ring=None):
        """A started matchmaker whose backend cannot be reached (REMOTE backends only)."""
        return self._track(self._build_unreachable(ring or {}))

    def serving(self, topic, hosts):
        """A started client matchmaker whose lookups of ``topic`` resolve to exactly ``hosts``.

        Shared backends get ``hosts`` registered by another, heartbeating matchmaker (a peer, as
        in production); ring-only backends get them in the client's static ring.
        """
        if Capability.SHARED_REGISTRATIONS in self.capabilities():
            provider = self.provider()
            for host in hosts:
                provider.register(topic, host)
            client = self.make()
            wait_for(lambda: set(client.hosts(topic)) == set(hosts), what=f"{topic} served by {hosts}")
            return client
        if Capability.STATIC_RING in self.capabilities():
            return self.make(ring={topic: list(hosts)})
        pytest.skip(f"{self.name} cannot make chosen hosts serve a topic")

    def close(self):
        for matchmaker in reversed(self._made):
            matchmaker.stop()
        self._made.clear()

    def _track(self, matchmaker):
        self._made.append(matchmaker)
        return matchmaker.start()

    def _build(self, ring):
        raise NotImplementedError

    def _build_unreachable(self, ring):
        raise NotImplementedError


class StaticBackend(Backend):
    name = "static"
    factory = StaticMatchmaker

    def _build(self, ring):
        return StaticMatchmaker(ring, timing=FAST)


class LocalhostBackend(Backend):
    name = "localhost"
    factory = LocalhostMatchmaker

    def _build(self, ring):
        return LocalhostMatchmaker("localhost", timing=FAST)


class RemoteBackend(Backend):
    """A backend with a server: matchmakers reach ``target``; unreachable ones ``dead_target``."""

    def __init__(self, target, dead_target):
        super().__init__()
        self.target = target
        self.dead_target = dead_target

    def _build(self, ring):
        return self._matchmaker(ring, self.target)

    def _build_unreachable(self, ring):
        return self._matchmaker(ring, self.dead_target)

    def _matchmaker(self, ring, target):
        raise NotImplementedError


class RegistryBackend(RemoteBackend):
    """Matchmakers of a started RegistryServer's endpoint; ``dead_endpoint`` answers nothing."""

    name = "registry"
    factory = RegistryMatchmaker

    def _matchmaker(self, ring, endpoint):
        seed = Seed.build(ring=ring, registries=[endpoint])
        return self.factory(seed, timing=FAST, lookup_timeout=LOOKUP_TIMEOUT, cache_max_age=CACHE_MAX_AGE)


class RedisBackend(RemoteBackend):
    """Matchmakers of the Redis at ``url``, keys under ``namespace``; ``dead_url`` answers nothing."""

    name = "redis"
    factory = RedisMatchmaker

    def __init__(self, url, namespace, dead_url):
        super().__init__(url, dead_url)
        self.namespace = namespace

    def _matchmaker(self, ring, url, **options):
        options = {"timing": FAST, "lookup_timeout": LOOKUP_TIMEOUT, "cache_max_age": CACHE_MAX_AGE, **options}
        return self.factory(url, seed=ring, namespace=self.namespace, **options)

    def make_with(self, url=None, **options):
        """A started matchmaker of the Redis at ``url`` (default: this backend's), with
        ``options`` overriding the suite's keyword arguments."""
        return self._track(self._matchmaker({}, url or self.target, **options))
