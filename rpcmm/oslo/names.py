"""How oslo.messaging addresses become rpcmm topic and host names.

oslo.messaging addresses a message by (exchange, topic), plus a server name for a call to a
named server, plus a pool for notification listeners. rpcmm only knows opaque topic and host
names, so each kind of address is a small typed value here with one reversible encoding:
every component is percent-encoded (so no separator inside a component can be mistaken for a
boundary, whatever dots or slashes a fully qualified server name holds) and the kind is the
first component. Joining strings such as ``topic + "." + server`` is exactly what this module
exists to avoid.

- :class:`RpcTopic` ``(exchange, topic)``: every RPC server of a topic registers it; an
  anycast lookup picks one (round robin), a fanout lookup returns all.
- :class:`RpcServer` ``(exchange, topic, server)``: the server named ``server`` registers it
  too, so a call to a named server resolves to that server only. (oslo's server name is a
  logical name, not an address, which is why it is part of the topic rather than the host.)
- :class:`NotifyTopic` ``(exchange, topic)``: every notification listener registers it with a
  :class:`PoolMember` host name, so one fanout lookup yields every pool and its members.

Names longer than rpcmm accepts (255 characters) are replaced by a digest of their full text,
which every process computes the same way.
"""

import dataclasses
import functools
import hashlib
import urllib.parse

from rpcmm.addressing import MAX_NAME_LENGTH
from rpcmm.errors import ProtocolError

__all__ = ["RpcTopic", "RpcServer", "NotifyTopic", "PoolMember"]

_SEPARATOR = "/"


def _quote(text):
    return urllib.parse.quote(text, safe="")


@functools.lru_cache(maxsize=4096)  # senders name the same few addresses over and over
def _join(kind, *parts):
    name = _SEPARATOR.join([kind, *(_quote(p) for p in parts)])
    if len(name) > MAX_NAME_LENGTH:
        # Still unique in practice, still a valid name, and the same in every process.
        name = f"{kind}{_SEPARATOR}#{hashlib.sha256(name.encode()).hexdigest()}"
    return name


class _Address:
    """A typed oslo address whose fields, in order, make its rpcmm topic name."""

    __slots__ = ()
    _KIND = ""

    @property
    def name(self):
        # __slots__ lists a slotted dataclass's fields in order; dataclasses.fields() would cost
        # a microsecond on every send.
        return _join(self._KIND, *(getattr(self, f) for f in self.__slots__))


@dataclasses.dataclass(frozen=True, slots=True)
class RpcTopic(_Address):
    """Every RPC server of ``topic`` in ``exchange``."""

    _KIND = "rpc"
    exchange: str
    topic: str


@dataclasses.dataclass(frozen=True, slots=True)
class RpcServer(_Address):
    """The RPC server called ``server`` of ``topic`` in ``exchange``."""

    _KIND = "rpc-server"
    exchange: str
    topic: str
    server: str


@dataclasses.dataclass(frozen=True, slots=True)
class NotifyTopic(_Address):
    """Every notification listener of ``topic`` (already suffixed with its priority)."""

    _KIND = "notify"
    exchange: str
    topic: str


#: The longest pool token kept readable: it leaves a listener's address (``host:port``) up to
#: MAX_NAME_LENGTH - 97 characters in the host name.
_LONGEST_POOL_TOKEN = 96


@dataclasses.dataclass(frozen=True, slots=True)
class PoolMember:
    """A notification listener as a host name: its pool and the address it receives on.

    ``pool`` None is the default pool. The host name is ``<pool token>@<address>``: the pool
    token is percent-encoded (so it holds no ``@``) or, when that is over _LONGEST_POOL_TOKEN
    characters, a digest; senders only group by it and never need the pool back. The token
    depends on the pool alone: members of one pool with addresses of different lengths must
    get the same one, or senders take them for two pools and deliver twice.
    """

    pool: str | None
    address: str

    @property
    def host(self):
        if self.pool is None:
            token = "-"
        else:
            token = "=" + _quote(self.pool)
            if len(token) > _LONGEST_POOL_TOKEN:
                token = "#" + hashlib.sha256(self.pool.encode()).hexdigest()[:32]
        return f"{token}@{self.address}"

    @staticmethod
    def split(host):
        """``(pool token, address)`` of a host name made by :attr:`host`; ProtocolError if not one."""
        token, sep, address = host.partition("@")
        if not sep or not token or not address:
            raise ProtocolError(f"{host!r} is not a notification listener's host name")
        return token, address
