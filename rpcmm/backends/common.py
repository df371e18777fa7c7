"""Helpers shared by backends."""

from rpcmm.seed import Seed

__all__ = ["ring_of"]


def ring_of(seed):
    """The topic -> tuple-of-hosts mapping of a Seed or a plain dict (validated)."""
    if isinstance(seed, Seed):
        return seed.ring
    return Seed.build(ring=seed).ring
