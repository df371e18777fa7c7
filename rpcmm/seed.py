"""The seed file: tier one of every lookup.

A seed file is a JSON object compatible with the OpenStack matchmaker ring file: each key is a
topic and each value the list of hosts that serve it statically. The reserved key
``"rpcmm-registry"`` lists the registry servers as ``"host:port"`` strings. A file without it
is a plain static ring. Reading a seed never touches the network, which is what breaks the
circular dependency between RPC and the matchmaker: a process learns where the registries are
from a file, then asks them over zmq.

Example::

    {
        "rpcmm-registry": ["10.0.0.1:7701", "10.0.0.2:7701", "[fd00::3]:7701"],
        "scheduler": ["controller-1"]
    }
"""

import dataclasses
import json
import types

from rpcmm.addressing import Endpoint, validate_name
from rpcmm.errors import ConfigurationError, SeedError

__all__ = ["REGISTRY_KEY", "REDIS_KEY", "Seed", "load_seed", "parse_seed"]

#: The reserved key that lists registry servers.
REGISTRY_KEY = "rpcmm-registry"
#: The reserved key that selects the Redis backend instead: a ``redis://`` or
#: ``redis+sentinel://`` URL (see :mod:`rpcmm.backends.redis_location`).
REDIS_KEY = "rpcmm-redis"

#: Keys beginning with this are rpcmm's, never topics: a misspelt reserved key is an error,
#: not a topic nobody serves.
RESERVED_PREFIX = "rpcmm-"

#: A seed file larger than this is refused before parsing: seeds are meant to be small.
MAX_SEED_BYTES = 4 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Seed:
    """A validated seed: the static ring and the registry endpoints.

    ``ring`` maps each topic to a tuple of host names (read-only); ``registries`` is a tuple of
    :class:`~rpcmm.addressing.Endpoint` in file order; ``source`` names where it came from;
    ``redis`` is the validated ``rpcmm-redis`` URL, or None.
    """

    ring: types.MappingProxyType
    registries: tuple
    source: str = "<string>"
    redis: str | None = None

    @classmethod
    def build(cls, ring=None, registries=(), source="<memory>", redis=None):
        """Make a seed from Python values, validated like a file would be."""
        document = {topic: list(hosts) for topic, hosts in dict(ring or {}).items()}
        if registries:
            document[REGISTRY_KEY] = [str(e) for e in registries]
        if redis is not None:
            document[REDIS_KEY] = redis
        return _validate(document, source)

    def static_hosts(self, topic):
        """The hosts the ring lists for ``topic`` (an empty tuple if none)."""
        return self.ring.get(topic, ())

    def to_json(self):
        """The seed as a JSON document (what :func:`parse_seed` reads back)."""
        document = {REGISTRY_KEY: [str(e) for e in self.registries]} if self.registries else {}
        if self.redis is not None:
            document[REDIS_KEY] = self.redis
        document.update({topic: list(hosts) for topic, hosts in self.ring.items()})
        return json.dumps(document, indent=2) + "\n"


def load_seed(path):
    """Read and validate the seed file at ``path``; raise SeedError saying what is wrong."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SEED_BYTES + 1)
    except OSError as exc:
        raise SeedError(path, f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_SEED_BYTES:
        raise SeedError(path, f"larger than {MAX_SEED_BYTES} bytes; a seed names a few hosts")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SeedError(path, f"not UTF-8 (byte {exc.start})") from exc
    return parse_seed(text, source=str(path))


class _DuplicateKey(Exception):
    pass


def _refuse_duplicates(pairs):
    """json's object hook: JSON itself keeps the last of two equal keys without a word, which
    would silently drop, say, the first list of registries."""
    document = {}
    for key, value in pairs:
        if key in document:
            raise _DuplicateKey(key)
        document[key] = value
    return document


def parse_seed(text, source="<string>"):
    """Parse and validate a seed document given as a string."""
    try:
        document = json.loads(text, object_pairs_hook=_refuse_duplicates)
    except _DuplicateKey as exc:
        raise SeedError(source, "appears twice (JSON would keep only the last)", key=exc.args[0]) from None
    except json.JSONDecodeError as exc:
        raise SeedError(source, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    except RecursionError:
        raise SeedError(source, "invalid JSON: nested too deep") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise SeedError(source, f"invalid JSON: {exc}") from None
    return _validate(document, source)


def _validate(document, source):
    if not isinstance(document, dict):
        raise SeedError(source, f"must be a JSON object of topic -> [hosts], not {_json_type(document)}")
    ring = {}
    registries = ()
    redis = None
    for key, value in document.items():
        if key == REGISTRY_KEY:
            registries = _validate_registries(value, source)
            continue
        if key == REDIS_KEY:
            from rpcmm.backends.redis_location import location_from_seed_value

            location_from_seed_value(value, source)  # raises SeedError if malformed
            redis = value
            continue
        if key.startswith(RESERVED_PREFIX):
            raise SeedError(source, f"unknown reserved key (the keys beginning with {RESERVED_PREFIX!r} are "
                            f"{REGISTRY_KEY!r} and {REDIS_KEY!r}; topics cannot begin with it)", key=key)
        try:
            validate_name("topic", key)
        except ConfigurationError as exc:
            raise SeedError(source, str(exc), key=key) from None
        ring[key] = _validate_hosts(key, value, source)
    if registries and redis is not None:
        raise SeedError(source, f"names both {REGISTRY_KEY!r} and {REDIS_KEY!r}; a seed selects one backend",
                        key=REDIS_KEY)
    return Seed(ring=types.MappingProxyType(ring), registries=registries, source=source, redis=redis)


def _validate_hosts(key, value, source):
    if not isinstance(value, list):
        raise SeedError(source, f"must be a list of host names, not {_json_type(value)}", key=key, value=value)
    hosts, seen = [], set()
    for host in value:
        try:
            validate_name("host", host)
        except ConfigurationError as exc:
            raise SeedError(source, str(exc), key=key, value=host) from None
        if host in seen:
            raise SeedError(source, "listed twice", key=key, value=host)
        seen.add(host)
        hosts.append(host)
    return tuple(hosts)


def _validate_registries(value, source):
    if not isinstance(value, list):
        raise SeedError(
            source, f"must be a list of \"host:port\" strings, not {_json_type(value)}",
            key=REGISTRY_KEY, value=value,
        )
    if not value:
        raise SeedError(source, "lists no registries (leave the key out for a plain static ring)",
                        key=REGISTRY_KEY, value=value)
    endpoints, seen = [], set()
    for item in value:
        try:
            endpoint = Endpoint.parse(item)
        except ConfigurationError as exc:
            raise SeedError(source, str(exc), key=REGISTRY_KEY, value=item) from None
        if endpoint.port == 0:
            raise SeedError(source, "port 0 is not a registry's port", key=REGISTRY_KEY, value=item)
        if endpoint.host == "*":
            raise SeedError(source, "'*' binds every interface; a registry's address is one to connect to",
                            key=REGISTRY_KEY, value=item)
        if endpoint in seen:
            raise SeedError(source, "listed twice", key=REGISTRY_KEY, value=item)
        seen.add(endpoint)
        endpoints.append(endpoint)
    return tuple(endpoints)


def _json_type(value):
    """The JSON type of ``value``, with its article: "an object", "null", ..."""
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
