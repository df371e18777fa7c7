"""Where the Redis backend's server is: one Redis server, or the Sentinels that know it.

A location is written as a URL, in a seed file (the reserved key ``"rpcmm-redis"``) or in a
transport URL:

- ``redis://[[user]:password@]host:port[/db]``: one Redis server;
- ``rediss://...``: the same over TLS;
- ``redis+sentinel://[[user]:password@]host:port,host:port,.../service[/db]``: ask these
  Sentinels which server is the master of ``service`` (and ask again after a failover).

A ``zmq+`` prefix is accepted and ignored, so an oslo.messaging transport URL such as
``zmq+redis://10.0.0.1:6379`` selects the Redis backend at that server. The port may be left out
(6379 for a server, 26379 for a Sentinel); IPv6 addresses go in brackets.

Parsing is pure: it imports neither redis nor anything that touches the network, so a seed file
naming a Redis location validates on a machine without redis-py.
"""

import dataclasses
import urllib.parse

from rpcmm.addressing import Endpoint
from rpcmm.errors import ConfigurationError, SeedError

__all__ = ["REDIS_SEED_KEY", "RedisLocation", "parse_redis_url", "location_from_seed_value"]

#: The reserved seed key whose value is a Redis location URL (proposed for rpcmm.seed).
REDIS_SEED_KEY = "rpcmm-redis"

_DEFAULT_SERVER_PORT = 6379
_DEFAULT_SENTINEL_PORT = 26379
_SCHEMES = {
    # scheme: (uses Sentinel, uses TLS)
    "redis": (False, False),
    "rediss": (False, True),
    "redis+sentinel": (True, False),
    "rediss+sentinel": (True, True),
}


@dataclasses.dataclass(frozen=True)
class RedisLocation:
    """A parsed Redis location.

    ``endpoints`` is the one server (direct) or the Sentinels (``service`` set), in URL order;
    ``service`` is the Sentinel master name or None; ``db`` the database number; ``username``
    and ``password`` are None when not given; ``tls`` says whether to connect with TLS.
    """

    endpoints: tuple
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    tls: bool = False

    @property
    def uses_sentinel(self):
        return self.service is not None

    def __str__(self):
        """The URL, without the password (safe to log)."""
        scheme = ("rediss" if self.tls else "redis") + ("+sentinel" if self.uses_sentinel else "")
        auth = ""
        if self.username or self.password:
            auth = (urllib.parse.quote(self.username or "", safe="")) + (":***" if self.password else "") + "@"
        path = f"/{urllib.parse.quote(self.service, safe='')}" if self.uses_sentinel else ""
        return f"{scheme}://{auth}{','.join(str(e) for e in self.endpoints)}{path}/{self.db}"


def parse_redis_url(text):
    """Parse a Redis location URL (see the module docstring); raise ConfigurationError if malformed."""
    if not isinstance(text, str):
        raise ConfigurationError(f"a Redis location is a URL string, not {type(text).__name__}")
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower().removeprefix("zmq+")
    if not sep or scheme not in _SCHEMES:
        raise ConfigurationError(
            f"{_redact(text)!r} is not a Redis URL: use redis://host:port[/db] or "
            "redis+sentinel://host:port,host:port/service[/db]"
        )
    uses_sentinel, tls = _SCHEMES[scheme]
    rest, has_query, _ = rest.partition("?")
    netloc, _, path = rest.partition("/")
    if has_query:
        raise ConfigurationError(f"{_redact(text)!r}: query options are not supported")
    auth, _, hosts = netloc.rpartition("@")
    username, password = _parse_auth(auth) if auth else (None, None)
    default_port = _DEFAULT_SENTINEL_PORT if uses_sentinel else _DEFAULT_SERVER_PORT
    endpoints = tuple(_parse_endpoint(item, default_port, text) for item in hosts.split(","))
    segments = [urllib.parse.unquote(s) for s in path.split("/")] if path else []
    if uses_sentinel:
        if not segments or not segments[0]:
            raise ConfigurationError(f"{_redact(text)!r}: a Sentinel URL names the service: .../service[/db]")
        service, segments = segments[0], segments[1:]
    else:
        service = None
        if len(endpoints) != 1:
            raise ConfigurationError(
                f"{_redact(text)!r}: names {len(endpoints)} servers; list several only with redis+sentinel://"
            )
    if len(segments) > 1:
        raise ConfigurationError(f"{_redact(text)!r}: unexpected path {path!r}")
    db = _parse_db(segments[0], text) if segments and segments[0] else 0
    return RedisLocation(endpoints, service, db, username, password, tls)


def location_from_seed_value(value, source="<string>"):
    """Validate the value of a seed's ``"rpcmm-redis"`` key; raise SeedError saying what is wrong."""
    try:
        return parse_redis_url(value)
    except ConfigurationError as exc:
        raise SeedError(source, str(exc), key=REDIS_SEED_KEY) from None


def _parse_auth(auth):
    username, has_password, password = auth.partition(":")
    username = urllib.parse.unquote(username) or None
    password = urllib.parse.unquote(password) if has_password else None
    return username, password


def _parse_endpoint(item, default_port, text):
    if not item:
        raise ConfigurationError(f"{_redact(text)!r}: an empty host in the host list")
    # A bare IPv6 address needs brackets; "host" or "[v6]" alone takes the default port.
    has_port = item.rsplit("]", 1)[-1].count(":") == 1
    try:
        endpoint = Endpoint.parse(item if has_port else f"{item}:{default_port}")
    except ConfigurationError as exc:
        raise ConfigurationError(f"{_redact(text)!r}: {exc}") from None
    if endpoint.port == 0:
        raise ConfigurationError(f"{_redact(text)!r}: port 0 is not a server's port")
    return endpoint


def _parse_db(segment, text):
    # isdigit() alone admits '²' and other digits int() refuses; Redis numbers its databases
    # from 0 to a few thousand at most.
    if not (segment.isascii() and segment.isdigit() and len(segment) <= 9):
        raise ConfigurationError(f"{_redact(text)!r}: the database must be a number, not {segment!r}")
    return int(segment)


def _redact(text):
    """``text`` with any password replaced, for error messages."""
    scheme, sep, rest = text.partition("://")
    netloc, slash, path = rest.partition("/")
    auth, at, hosts = netloc.rpartition("@")
    if at and ":" in auth:
        netloc = auth.split(":", 1)[0] + ":***@" + hosts
    return f"{scheme}{sep}{netloc}{slash}{path}"
