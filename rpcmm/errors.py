"""Every exception rpcmm raises, under one root.

::

    RpcmmError
    ├── SeedError              a seed file is unreadable or invalid (file, key, value, why)
    ├── ConfigurationError     an argument or option is out of range or inconsistent
    ├── LifecycleError         an object was used before start() or after stop()
    ├── RegistryUnavailable    no registry answered, and nothing cached or static could answer
    ├── EndpointInUse          a registry could not bind its endpoint (another process has it)
    └── ProtocolError          a wire message is malformed (servers log and drop these)

"Nobody serves this topic" is not an error: lookups return an empty tuple. "No registry
answered" is :class:`RegistryUnavailable`, and only when no cache entry and no static ring
entry can answer instead.
"""

__all__ = [
    "RpcmmError",
    "SeedError",
    "ConfigurationError",
    "LifecycleError",
    "RegistryUnavailable",
    "EndpointInUse",
    "ProtocolError",
]


class RpcmmError(Exception):
    """Root of every exception rpcmm raises on purpose."""


class SeedError(RpcmmError):
    """A seed file could not be read or does not validate.

    ``path`` is the file (or ``"<string>"``), ``key`` the JSON key at fault (or None for the
    whole document), ``value`` the offending value (or None), ``reason`` a sentence.
    """

    def __init__(self, path, reason, key=None, value=None):
        self.path = str(path)
        self.key = key
        self.value = value
        self.reason = reason
        where = self.path
        if key is not None:
            where += f": key {key!r}"
        if value is not None:
            where += f", value {value!r}"
        super().__init__(f"{where}: {reason}")


class ConfigurationError(RpcmmError, ValueError):
    """An argument or option is out of range or inconsistent with another."""


class LifecycleError(RpcmmError, RuntimeError):
    """An object was used outside its start()/stop() lifetime."""


class RegistryUnavailable(RpcmmError):
    """No registry answered a lookup, and there was no cache or static entry to fall back on.

    ``topic`` is what was looked up (None for a table listing), ``endpoints`` the registries
    tried in order, ``timeout`` the per-registry timeout in seconds.
    """

    def __init__(self, topic, endpoints, timeout):
        self.topic = topic
        self.endpoints = tuple(endpoints)
        self.timeout = timeout
        tried = ", ".join(str(e) for e in self.endpoints) or "none listed"
        what = f"looking up {topic!r}" if topic is not None else "listing hosts"
        super().__init__(
            f"no registry answered {what} within {timeout:g}s each (tried: {tried})"
        )


class EndpointInUse(RpcmmError, OSError):
    """A registry could not bind its endpoint because something else holds it."""

    def __init__(self, endpoint, reason):
        self.endpoint = endpoint
        self.reason = reason
        super().__init__(f"cannot serve on {endpoint}: {reason}")


class ProtocolError(RpcmmError, ValueError):
    """A wire message is malformed, truncated, of an unknown version or wrongly typed."""
