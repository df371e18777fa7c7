"""The static ring backend: answers come from the seed file alone.

This is the OpenStack ring matchmaker. Registrations are kept locally (so ``registrations()``
reports them) but nobody else sees them: the ring is the whole truth, and nothing expires.
"""

from rpcmm.backends.common import ring_of
from rpcmm.matchmaker import Capability, Matchmaker

__all__ = ["StaticMatchmaker"]


class StaticMatchmaker(Matchmaker):
    """Resolve topics from a :class:`~rpcmm.seed.Seed`'s ring (or a plain dict of topic -> hosts)."""

    capabilities = frozenset({Capability.STATIC_RING})

    def __init__(self, seed, **kwargs):
        super().__init__(**kwargs)
        self._ring = ring_of(seed)

    def _resolve(self, topic):
        return self._ring.get(topic, ())
