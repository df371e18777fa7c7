"""rpcmm: an in-band matchmaker for brokerless RPC over ZeroMQ.

A seed file names a few registry servers; every host registers the topics it serves and
heartbeats to them with zmq casts; any process finds the hosts serving a topic with a two-tier
lookup (seed file, then a registry) behind a local cache. See ``doc/architecture.rst``.

The public API is re-exported here; the submodules are the reference.
"""

__version__ = "0.1.0"

from rpcmm.addressing import Anycast, Directed, Endpoint, Fanout
from rpcmm.backends.localhost import LocalhostMatchmaker
from rpcmm.backends.registry import RegistryMatchmaker
from rpcmm.backends.static import StaticMatchmaker
from rpcmm.clock import Clock, ManualClock, SystemClock
from rpcmm.errors import (
    ConfigurationError,
    EndpointInUse,
    LifecycleError,
    ProtocolError,
    RegistryUnavailable,
    RpcmmError,
    SeedError,
)
from rpcmm.factory import matchmaker_for_seed
from rpcmm.matchmaker import Capability, Matchmaker
from rpcmm.seed import Seed, load_seed, parse_seed
from rpcmm.server import RegistryServer
from rpcmm.timing import HeartbeatTiming, TimingBounds

__all__ = [
    "Anycast",
    "Capability",
    "Clock",
    "ConfigurationError",
    "Directed",
    "Endpoint",
    "EndpointInUse",
    "Fanout",
    "HeartbeatTiming",
    "LifecycleError",
    "LocalhostMatchmaker",
    "ManualClock",
    "Matchmaker",
    "ProtocolError",
    "RegistryMatchmaker",
    "RegistryServer",
    "RegistryUnavailable",
    "RpcmmError",
    "Seed",
    "SeedError",
    "StaticMatchmaker",
    "SystemClock",
    "TimingBounds",
    "load_seed",
    "matchmaker_for_seed",
    "parse_seed",
]
