"""Typed values for what is looked up and where registries listen.

A lookup key says how to resolve a topic, so nothing depends on string conventions such as
``topic.host`` (which break on fully qualified host names):

- :class:`Anycast` ``(topic)``: one host serving the topic, chosen by strict per-client round
  robin;
- :class:`Directed` ``(topic, host)``: that host, if it serves the topic;
- :class:`Fanout` ``(topic)``: every live host serving the topic.

An :class:`Endpoint` is a registry's ``host:port`` (``[v6addr]:port`` for IPv6).
"""

import dataclasses
import ipaddress
import re

from rpcmm.errors import ConfigurationError

__all__ = [
    "Anycast",
    "Directed",
    "Fanout",
    "LookupKey",
    "Endpoint",
    "validate_name",
    "is_clean_text",
    "MAX_NAME_LENGTH",
]

#: Longest topic or host name accepted anywhere (bytes of UTF-8 are bounded by the wire codec).
MAX_NAME_LENGTH = 255

def is_clean_text(text):
    """True if ``text`` has no white space and no control or other unprintable characters."""
    # str.isprintable() refuses control, format and separator characters except the ASCII
    # space, which is refused separately; it runs in C, which matters on the registry's hot path.
    return text.isprintable() and " " not in text


def validate_name(kind, name):
    """Return ``name`` if it is a usable topic or host name, else raise ConfigurationError.

    A name is a non-empty string of at most MAX_NAME_LENGTH characters with no white space or
    control characters. Host names are opaque to rpcmm: ``compute-1``, ``10.0.0.5:9501`` and
    ``node.example.org`` are all fine.
    """
    if not isinstance(name, str):
        raise ConfigurationError(f"{kind} must be a string, not {type(name).__name__}")
    if not name:
        raise ConfigurationError(f"{kind} must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigurationError(f"{kind} {name[:40]!r}... is longer than {MAX_NAME_LENGTH}")
    if not is_clean_text(name):
        raise ConfigurationError(f"{kind} {name!r} contains white space or control characters")
    return name


@dataclasses.dataclass(frozen=True, slots=True)
class Anycast:
    """Resolve to one live host of ``topic``, rotating per client."""

    topic: str

    def __post_init__(self):
        validate_name("topic", self.topic)


@dataclasses.dataclass(frozen=True, slots=True)
class Directed:
    """Resolve to ``host`` if it serves ``topic``, else to nothing."""

    topic: str
    host: str

    def __post_init__(self):
        validate_name("topic", self.topic)
        validate_name("host", self.host)


@dataclasses.dataclass(frozen=True, slots=True)
class Fanout:
    """Resolve to every live host serving ``topic``."""

    topic: str

    def __post_init__(self):
        validate_name("topic", self.topic)


LookupKey = Anycast | Directed | Fanout

# A host is what libzmq's tcp transport accepts: a name or IPv4 address that starts with a
# letter or digit and goes on with letters, digits, '.', '-' and '_' (libzmq refuses anything
# else with EINVAL at connect time, so it is refused here, when the seed is read), '*' (bind
# on every interface), or an IPv6 address in brackets.
_ENDPOINT = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>\*|[A-Za-z0-9][A-Za-z0-9._-]{0,252})):(?P<port>[0-9]{1,5})$")


_ALL_NUMERIC = re.compile(r"^[0-9.]+$")


def _check_address(text, host, kind):
    try:
        kind(host)
    except ValueError:
        version = "IPv6" if kind is ipaddress.IPv6Address else "IPv4"
        raise ConfigurationError(f"{text!r}: {host!r} is not an {version} address") from None


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    """A registry's address: ``host`` (a name, IPv4 or IPv6 address) and TCP ``port``.

    ``port`` 0 means "any free port" and is only meaningful for binding.
    """

    host: str
    port: int

    @classmethod
    def parse(cls, text):
        """Parse ``host:port`` or ``[v6addr]:port``; raise ConfigurationError if malformed."""
        if not isinstance(text, str):
            raise ConfigurationError(f"expected a HOST:PORT string, got {type(text).__name__}")
        match = _ENDPOINT.fullmatch(text)
        if not match:
            raise ConfigurationError(
                f"{text!r} is not HOST:PORT (a host name or address of letters, digits, '.', '-' "
                f"and '_', starting with a letter or digit; IPv6 addresses go in brackets: [::1]:7701)"
            )
        port = int(match["port"])
        if port > 65535:
            raise ConfigurationError(f"{text!r}: port {port} is above 65535")
        host = match["v6"] or match["host"]
        if match["v6"]:
            _check_address(text, host, ipaddress.IPv6Address)
        elif _ALL_NUMERIC.match(host):  # no name is all digits and dots: an IPv4 address, or a typo
            _check_address(text, host, ipaddress.IPv4Address)
        return cls(host=host, port=port)

    @property
    def is_ipv6(self):
        return ":" in self.host

    def zmq_address(self):
        """The ``tcp://`` address zmq binds or connects to."""
        host = f"[{self.host}]" if self.is_ipv6 else self.host
        return f"tcp://{host}:{self.port}"

    def __str__(self):
        host = f"[{self.host}]" if self.is_ipv6 else self.host
        return f"{host}:{self.port}"
