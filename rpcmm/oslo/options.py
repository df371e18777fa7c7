"""The ``[rpcmm]`` configuration options of the oslo.messaging driver.

Options are registered on the ``conf`` object the driver is given, when the driver is built
(:func:`register_opts`), never at import time and never on the global ``cfg.CONF`` unless that
is the object oslo.messaging hands over. :func:`list_opts` is the ``oslo.config.opts`` entry
point that oslo-config-generator reads.
"""

import copy

from oslo_config import cfg

__all__ = ["GROUP", "OPTS", "register_opts", "list_opts", "DEFAULT_EMBEDDED_PORT"]

GROUP = "rpcmm"

#: The loopback port of the per-machine registry that ``zmq://`` (no host) shares.
DEFAULT_EMBEDDED_PORT = 7710

OPTS = [
    cfg.StrOpt(
        "seed_file",
        help="Path of an rpcmm seed file (JSON: the registry servers under the key "
        "'rpcmm-registry', plus an optional static topic ring). Its registries are used when "
        "the transport URL names none; its static ring is used in every case.",
    ),
    cfg.PortOpt(
        "embedded_registry_port",
        default=DEFAULT_EMBEDDED_PORT,
        help="Loopback port of the per-machine registry used by 'zmq://' with no hosts and no "
        "seed_file. The first process that needs it serves it; the others use it, and take it "
        "over when its owner exits. Every process on a machine must agree on it.",
    ),
    cfg.HostAddressOpt(
        "listen_host",
        default="127.0.0.1",
        help="Address the driver's sockets (RPC/notification listeners and reply sockets) bind "
        "to, on a port the OS picks. Use a routable address (or 0.0.0.0 with "
        "advertise_host) when peers run on other machines.",
    ),
    cfg.HostAddressOpt(
        "advertise_host",
        help="Address peers use to reach this process's sockets. Defaults to listen_host; "
        "required when listen_host is a wildcard address.",
    ),
    cfg.FloatOpt(
        "heartbeat_interval",
        default=1.0,
        min=0.05,
        help="Seconds between two heartbeats that re-announce this process's topics.",
    ),
    cfg.FloatOpt(
        "heartbeat_ttl",
        default=3.0,
        min=0.1,
        help="Seconds a registry keeps this process's topics after its last heartbeat; after "
        "a crash, peers stop choosing it within this time. Must exceed heartbeat_interval.",
    ),
    cfg.FloatOpt(
        "lookup_timeout",
        default=0.5,
        min=0.01,
        help="Seconds to wait for one registry to answer a lookup before trying the next; "
        "also the longest a starting listener waits until lookups see its registration.",
    ),
    cfg.FloatOpt(
        "cache_max_age",
        default=1.0,
        min=0.0,
        help="Seconds a lookup answer is reused before a registry is asked again.",
    ),
    cfg.IntOpt(
        "max_message_bytes",
        default=64 * 1024 * 1024,
        min=1024,
        help="Largest message (bytes) a listener or reply socket accepts; larger ones are "
        "dropped by ZeroMQ before they are read.",
    ),
    cfg.IntOpt(
        "max_peers",
        default=1024,
        min=1,
        help="Most outgoing connections kept open at once; the least recently used one is "
        "closed beyond that.",
    ),
    cfg.StrOpt(
        "secret_key_file",
        help="CURVE: this process's secret certificate (NAME.key_secret, from 'rpcmm keys "
        "generate'), presented to registries and RPC peers. Setting the key options makes every "
        "socket of the driver CURVE; see rpcmm's doc/security.rst.",
    ),
    cfg.StrOpt(
        "rpc_secret_key_file",
        help="CURVE: the cluster-wide RPC key pair (secret certificate) that listeners and reply "
        "sockets serve with; callers use its public half.",
    ),
    cfg.StrOpt(
        "registry_key_file",
        help="CURVE: the registries' public certificate (NAME.key). Not needed with zmq:// (the "
        "embedded registry serves with the RPC key pair).",
    ),
    cfg.StrOpt(
        "authorized_keys_dir",
        help="CURVE: directory of the public certificates (*.key) of the processes allowed to "
        "call this one and to reply to its calls.",
    ),
    cfg.IntOpt(
        "listener_backlog",
        default=100000,
        min=1,
        help="Most received messages a batch notification listener (batch_size other than 1) "
        "holds for its polling thread; beyond that new messages are dropped and logged. RPC "
        "servers and plain notification listeners hand each message to oslo.messaging's "
        "executor as it arrives, and its queue is oslo.messaging's to bound.",
    ),
    cfg.FloatOpt(
        "stop_drain_timeout",
        default=2.0,
        min=0.0,
        help="Longest time (seconds) a stopping RPC server or notification listener goes on "
        "receiving after it unregistered, so that what peers sent before they saw it leave "
        "is still handled; it stops sooner, once nothing arrived for 0.25 s. 0 closes the "
        "socket at once, losing what is on its way.",
    ),
]


def register_opts(conf):
    """Register the ``[rpcmm]`` options on ``conf`` (idempotent) and return its group view."""
    conf.register_opts(OPTS, group=GROUP)
    return conf[GROUP]


def list_opts():
    """The ``oslo.config.opts`` entry point: ``[(group, [options])]`` for the generator."""
    return [(GROUP, copy.deepcopy(OPTS))]
