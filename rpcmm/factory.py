"""Choosing a backend from a seed."""

from rpcmm.backends.registry import RegistryMatchmaker
from rpcmm.backends.static import StaticMatchmaker
from rpcmm.errors import ConfigurationError
from rpcmm.seed import Seed, load_seed

__all__ = ["matchmaker_for_seed"]


def matchmaker_for_seed(seed, **kwargs):
    """The matchmaker a seed asks for: the in-band registry if it lists registries, Redis if it
    names a Redis URL, else the static ring. ``seed`` is a :class:`~rpcmm.seed.Seed` or a path;
    ``kwargs`` go to the backend (options it has no use for are dropped)."""
    if not isinstance(seed, Seed):
        seed = load_seed(seed)
    if seed.registries:
        return RegistryMatchmaker(seed, **kwargs)
    if seed.redis is not None:
        from rpcmm.backends.redis import RedisMatchmaker

        if kwargs.get("curve") is not None:
            raise ConfigurationError(
                f"{seed.source} selects Redis: CURVE keys secure rpcmm registries; "
                "secure Redis with its own TLS and ACLs")
        for name in _REGISTRY_ONLY_OPTIONS:
            kwargs.pop(name, None)
        return RedisMatchmaker(seed.redis, seed=seed, **kwargs)
    # Options about talking to registries mean nothing to a static ring.
    for name in _REGISTRY_OPTIONS:
        kwargs.pop(name, None)
    return StaticMatchmaker(seed, **kwargs)


_REGISTRY_ONLY_OPTIONS = ("context", "live", "live_max_age", "cache_file", "curve")
_REGISTRY_OPTIONS = ("lookup_timeout", "cache_max_age", "cache_max_entries") + _REGISTRY_ONLY_OPTIONS
