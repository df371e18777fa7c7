"""Where a transport finds its registries: the URL, a seed file, or the machine's embedded one.

=====================================  ========================================================
transport URL                          registries
=====================================  ========================================================
``zmq://host1:port1,host2:port2/``     the ones named in the URL (``[rpcmm] seed_file`` may
                                       still add a static ring)
``zmq://`` with ``seed_file`` set      the seed file's ``rpcmm-registry`` list (and its ring)
``zmq://`` alone                       the machine's embedded registry on
                                       ``127.0.0.1:<embedded_registry_port>``, served by
                                       whichever local process can bind it
``zmq+redis://host:6379/0``            no registries: the Redis backend on that server
``zmq+redis+sentinel://s1,s2/svc/0``   the Redis backend, its master found through Sentinel
=====================================  ========================================================

:func:`plan_for` only reads: it returns a :class:`Plan` saying which seed to use and whether
to run an :class:`~rpcmm.embedded.EmbeddedRegistry`. Nothing here opens a socket.
"""

import dataclasses
import urllib.parse

from rpcmm.addressing import Endpoint
from rpcmm.errors import ConfigurationError
from rpcmm.seed import Seed, load_seed

__all__ = ["Plan", "plan_for"]

_LOOPBACK = "127.0.0.1"


@dataclasses.dataclass(frozen=True)
class Plan:
    """The seed to build the matchmaker from; ``embedded`` is the endpoint this process should
    try to serve (the zero-configuration form), else None."""

    seed: Seed
    embedded: Endpoint | None = None


def plan_for(url, options):
    """The :class:`Plan` for a parsed oslo TransportURL and the ``[rpcmm]`` option group.

    Raises ConfigurationError for a URL host without a port, SeedError for a bad seed file.
    """
    from_file = load_seed(options.seed_file) if options.seed_file else None
    ring = {t: list(h) for t, h in from_file.ring.items()} if from_file else None
    hosts = list(getattr(url, "hosts", None) or [])
    backend = (getattr(url, "transport", None) or "zmq").partition("+")[2]
    if backend:
        return Plan(Seed.build(ring=ring, redis=_backend_url(backend, hosts, url), source="transport_url"))
    if hosts:
        registries = []
        for host in hosts:
            if not host.hostname or not host.port:
                shown = host.hostname or "(no host)"
                raise ConfigurationError(
                    f"zmq transport URL hosts are registry servers and need a port: {shown} "
                    f"(zmq://{shown}:7701/, say)")
            registries.append(Endpoint(host.hostname, int(host.port)))
        return Plan(Seed.build(ring=ring, registries=registries, source="transport_url"))
    if from_file is not None:
        return Plan(from_file)
    embedded = Endpoint(_LOOPBACK, options.embedded_registry_port)
    return Plan(Seed.build(registries=[embedded], source="embedded registry"), embedded=embedded)


def _backend_url(backend, hosts, url):
    """The ``redis://`` (or ``redis+sentinel://``) URL a ``zmq+redis...`` transport URL names."""
    if not backend.startswith("redis"):
        raise ConfigurationError(f"zmq+{backend}:// is not a known backend: use zmq+redis:// or zmq+redis+sentinel://")
    if not hosts:
        raise ConfigurationError(f"zmq+{backend}:// needs the Redis (or Sentinel) hosts: zmq+{backend}://host:port/")
    netlocs = []
    for host in hosts:
        auth = ""
        if host.password:
            auth = f"{urllib.parse.quote(host.username or '', safe='')}:{urllib.parse.quote(host.password, safe='')}@"
        address = f"[{host.hostname}]" if ":" in (host.hostname or "") else host.hostname
        netlocs.append(f"{auth}{address}:{host.port}" if host.port else f"{auth}{address}")
    # Credentials go with the first host only, as in a Redis URL.
    tail = ",".join([netlocs[0]] + [n.rpartition("@")[2] for n in netlocs[1:]])
    return f"{backend}://{tail}/{getattr(url, 'virtual_host', None) or ''}".rstrip("/")
