"""The driver's CURVE keys: who this transport is, and whom it serves and trusts.

With the ``[rpcmm]`` key options set, every socket the driver opens is CURVE: listeners and
reply sockets serve with one **cluster-wide RPC key pair** (``rpc_secret_key_file``; callers
use its public half as the server key), admit only the client keys in
``authorized_keys_dir``, and every process presents **its own key pair** (``secret_key_file``)
to RPC peers and to registries (whose public key is ``registry_key_file``). With ``zmq://``
(the embedded registry) the embedded registry serves with the RPC key pair too, so
``registry_key_file`` is not needed.

Why a cluster-wide RPC pair: a caller must know a listener's public key before it connects,
and the registry hands out host names, not keys. One shared server pair needs no protocol
change; its cost is that any process holding the RPC secret could pose as another process's
listener to callers (the authorized-keys check still keeps strangers out entirely). Per-host
server keys carried in lookup answers would remove that; see ``doc/security.rst``.
"""

import dataclasses

from rpcmm.errors import ConfigurationError
from rpcmm.security import (
    LoadedCurveClientConfig,
    LoadedCurveServerConfig,
    load_authorized_keys,
    load_public_key,
    load_secret_keypair,
)

__all__ = ["TransportKeys", "load_transport_keys"]


@dataclasses.dataclass(frozen=True)
class TransportKeys:
    """What each kind of socket of one transport presents or serves with."""

    #: Listeners and reply sockets: the RPC pair, admitting the authorized client keys.
    listen: LoadedCurveServerConfig
    #: Outgoing RPC sockets: this process's pair, the RPC public key as server key.
    connect: LoadedCurveClientConfig
    #: Matchmaker sockets: this process's pair, the registries' public key.
    registry: LoadedCurveClientConfig


def load_transport_keys(options, embedded):
    """The TransportKeys the ``[rpcmm]`` options name, or None when none is set.

    ``embedded``: the transport uses the embedded registry (which then serves with the RPC
    pair). Raises ConfigurationError naming what is missing or wrong.
    """
    names = ("secret_key_file", "rpc_secret_key_file", "authorized_keys_dir")
    given = {name: getattr(options, name) for name in names}
    if not any(given.values()) and not options.registry_key_file:
        return None
    missing = [name for name, value in given.items() if not value]
    if not embedded and not options.registry_key_file:
        missing.append("registry_key_file")
    if missing:
        raise ConfigurationError(f"[rpcmm] CURVE needs {', '.join(missing)} too (see doc/security.rst)")
    own_public, own_secret = load_secret_keypair(options.secret_key_file)
    rpc_public, rpc_secret = load_secret_keypair(options.rpc_secret_key_file)
    registry_public = rpc_public if embedded else load_public_key(options.registry_key_file)
    return TransportKeys(
        listen=LoadedCurveServerConfig(rpc_public, rpc_secret, load_authorized_keys(options.authorized_keys_dir)),
        connect=LoadedCurveClientConfig(own_public, own_secret, rpc_public),
        registry=LoadedCurveClientConfig(own_public, own_secret, registry_public),
    )
