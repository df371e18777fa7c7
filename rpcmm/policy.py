"""Topic authorization: which authenticated client keys may register which hosts and topics.

CurveZMQ (:mod:`rpcmm.security`) says *who* a peer is; a :class:`TopicPolicy` says what that
peer may claim. Without one, any admitted key could register any host for any topic and so
receive that topic's RPCs. A policy file is JSON::

    {
      "keys": {
        "rJ6e1.OY&XSKg*!9yC]mw(zPc8AWfBe0-%Y&<mRS": {"topics": ["compute", "compute.*"],
                                                     "hosts": ["compute-*"]},
        "scheduler": {"topics": ["scheduler"], "hosts": ["sched-?"]}
      },
      "default": {"topics": [], "hosts": []}
    }

- A key under ``"keys"`` is either a 40-character Z85 public key, or the NAME of a
  ``NAME.key`` certificate in the authorized-keys directory given to :meth:`TopicPolicy.load`
  (friendlier, and renaming nothing when a key is rotated: replace the file, keep the name).
  A name whose ``.key`` file exists wins over reading it as Z85. Any other string is an error.
- ``topics`` and ``hosts`` are lists of shell-style patterns (:mod:`fnmatch`, case-sensitive):
  ``*`` any run of characters (dots included), ``?`` one character, ``[abc]`` a set.
- A key may register (heartbeat) host H for topic T only if H matches one of its ``hosts``
  patterns and T one of its ``topics`` patterns; it may unregister H only if H matches. A key
  not listed, and an unauthenticated peer (key None), gets ``"default"``; a file without
  ``"default"`` denies them everything.
- ``max_hosts`` (optional, a whole number from 1) caps how many hosts the key may have in a
  registry's table at once: beyond it a new host is refused, while the ones it holds keep
  refreshing. A host counts against the key that registered it first, until it leaves the
  table (unregistered, expired or dropped); hosts a registry loaded from a peer at warm-up
  count against the first key with a quota that refreshes them. Without ``max_hosts`` a key
  is limited only by the registry's own cap on its table (``--max-registrations``), which
  every key shares: a quota keeps one key, compromised or misconfigured with a wide ``hosts``
  pattern, from filling it for the others.
- A key may report hosts unreachable (SUSPECT) only if it is granted some ``hosts``.
- Lookups are not governed here: any peer that got through CURVE may look up.

Decisions are cached per ``(key, host, topics)`` in a dict bounded by decisions and by the
names they hold (see :meth:`TopicPolicy.check_heartbeat`): a host heartbeats the same state
every interval, so the registry's hot path pays one dict lookup per host record.
"""

import dataclasses
import fnmatch
import json
import pathlib
import re
import typing

from rpcmm.addressing import validate_name
from rpcmm.errors import ConfigurationError

__all__ = ["TopicPolicy", "Grant", "Verdict", "ALLOWED", "DEFAULT_CACHE_SIZE"]

#: Decisions remembered per policy; beyond this the oldest is forgotten (and recomputed if asked).
DEFAULT_CACHE_SIZE = 65_536
#: Names (hosts and topics) the decision cache may hold per decision it may hold, on average:
#: each decision keeps its record's topics alive, so the count alone did not bound memory.
_CACHED_NAMES_PER_DECISION = 12
#: A record with more topics than this is decided afresh each time, never cached.
_MAX_CACHED_TOPICS = 64
_Z85_KEY_LENGTH = 40
_Z85_ALPHABET = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")
_MAX_PATTERNS = 1024


class Verdict(typing.NamedTuple):
    """What a policy says about one heartbeat record: ``allowed`` if all of it may be applied.

    ``host_refused`` is True if the key may not register this host at all (then every topic
    is refused too); ``refused_topics`` are the topics it may not register, in record order,
    and ``permitted_topics`` the others (what the registry applies of a partly refused record;
    the whole record when ``allowed``, which leaves it None).
    """

    allowed: bool
    host_refused: bool
    refused_topics: tuple
    permitted_topics: tuple | None = None


#: The verdict of a record the policy allows (shared: the hot path allocates nothing).
ALLOWED = Verdict(True, False, ())


@dataclasses.dataclass(frozen=True)
class Grant:
    """What one key may register: compiled ``hosts`` and ``topics`` patterns, and at most
    ``max_hosts`` hosts at once (None: no quota)."""

    hosts: tuple
    topics: tuple
    _host_match: typing.Callable = dataclasses.field(repr=False, compare=False)
    _topic_match: typing.Callable = dataclasses.field(repr=False, compare=False)
    max_hosts: int | None = None

    @classmethod
    def build(cls, hosts, topics, max_hosts=None):
        return cls(tuple(hosts), tuple(topics), _compile(hosts), _compile(topics), max_hosts)

    def may_host(self, host):
        return self._host_match(host) is not None

    def may_topic(self, topic):
        return self._topic_match(topic) is not None


def _compile(patterns):
    """One regex matching any of ``patterns`` (fnmatch semantics, case-sensitive)."""
    if not patterns:
        return lambda text: None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns), re.DOTALL).match


_DENY_ALL = Grant.build((), ())
_ALLOW_ALL = Grant.build(("*",), ("*",))


class TopicPolicy:
    """Who may register what; see the module docstring for the file format and the rules.

    Build one with :meth:`load` (a file), :meth:`from_document` (parsed JSON) or
    :meth:`allow_all` (no policy: every peer may register anything). Not thread-safe (the
    decision cache is a plain dict): one per registry loop.
    """

    def __init__(self, grants, default, cache_size=DEFAULT_CACHE_SIZE, allow_all=False, names=None):
        self._grants = dict(grants)  # Z85 key (str) -> Grant
        self._default = default
        self._allow_all = allow_all
        #: Whether any grant has a ``max_hosts`` quota (if not, the registry counts nothing).
        self.has_quotas = any(g.max_hosts is not None for g in (default, *self._grants.values()))
        self._cache_size = cache_size
        self._cache = {}  # (key, host, topics) -> Verdict
        self._cached_names = 0  # hosts and topics in the cache's keys
        self._names_budget = cache_size * _CACHED_NAMES_PER_DECISION
        self._names = dict(names or {})  # Z85 key -> how the policy file named it (see name_of)

    @classmethod
    def allow_all(cls):
        """The policy of a registry without one: everything is allowed, nothing is cached."""
        return cls({}, _ALLOW_ALL, allow_all=True)

    @classmethod
    def load(cls, path, authorized_keys_dir=None, cache_size=DEFAULT_CACHE_SIZE):
        """Read a policy file; key names resolve to ``authorized_keys_dir/NAME.key``."""
        path = pathlib.Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"{path}: cannot read the policy file: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigurationError(f"{path}: the policy file is not UTF-8") from None
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{path}: not JSON: {exc}") from None
        return cls.from_document(document, source=str(path), authorized_keys_dir=authorized_keys_dir,
                                 cache_size=cache_size)

    @classmethod
    def from_document(cls, document, source="<policy>", authorized_keys_dir=None, cache_size=DEFAULT_CACHE_SIZE):
        """Validate a parsed policy document; ConfigurationError names ``source``, the key and the value."""
        if type(document) is not dict:
            raise ConfigurationError(f"{source}: a policy is a JSON object with \"keys\" and \"default\"")
        unknown = set(document) - {"keys", "default"}
        if unknown:
            raise ConfigurationError(f"{source}: unknown entries {sorted(unknown)} (expected \"keys\", \"default\")")
        keys = document.get("keys", {})
        if type(keys) is not dict:
            raise ConfigurationError(f"{source}: \"keys\" must be an object mapping keys to grants")
        grants, names = {}, {}
        for reference, entry in keys.items():
            key = _resolve_key(source, reference, authorized_keys_dir)
            if key in grants:
                raise ConfigurationError(f"{source}: key {reference!r} is listed twice (under another name)")
            grants[key] = _grant(source, f"keys.{reference}", entry)
            names[key] = reference
        default = _grant(source, "default", document["default"]) if "default" in document else _DENY_ALL
        return cls(grants, default, cache_size=cache_size, names=names)

    def name_of(self, key_z85):
        """How logs name ``key_z85``: its name in the policy file (a ``.key`` file's NAME, or the
        Z85 key it was written as) with the key, the bare key if unlisted, "no key" for None."""
        if key_z85 is None:
            return "no key"
        name = self._names.get(key_z85)
        return key_z85 if name is None or name == key_z85 else f"{name} ({key_z85})"

    def grant_for(self, key_z85):
        """The :class:`Grant` that applies to ``key_z85`` (None: an unauthenticated peer)."""
        return self._grants.get(key_z85, self._default)

    def may_register(self, key_z85, host, topic):
        """May ``key_z85`` register ``host`` for ``topic``?"""
        if self._allow_all:
            return True
        grant = self.grant_for(key_z85)
        return grant.may_host(host) and grant.may_topic(topic)

    def max_hosts(self, key_z85):
        """The most hosts ``key_z85`` may have in the table at once (None: no quota)."""
        return self.grant_for(key_z85).max_hosts

    def may_unregister(self, key_z85, host):
        """May ``key_z85`` remove ``host`` (UNREGISTER, or a HEARTBEAT with no topics)?"""
        return self._allow_all or self.grant_for(key_z85).may_host(host)

    def may_report(self, key_z85):
        """May ``key_z85`` report hosts unreachable (SUSPECT)? Only a key the policy grants
        something: two reports drop a host at once, so keys that may register nothing must
        not be able to do by reporting what they cannot do by unregistering."""
        return self._allow_all or bool(self.grant_for(key_z85).hosts)

    def check_heartbeat(self, key_z85, host, topics):
        """The :class:`Verdict` on one heartbeat record (``topics`` a tuple, as decoded).

        Cached: a repeated heartbeat costs one dict lookup. The cache holds at most
        ``cache_size`` decisions and 12 names (hosts and topics) per decision on average, the
        oldest forgotten first; a record of more than 64 topics is not cached at all. So its
        memory is bounded by names, not just by decisions each of which may keep a large
        record alive (about 240 MB at the default size if every name were 255 characters).
        """
        if self._allow_all:
            return ALLOWED
        cache_key = (key_z85, host, topics)
        cache = self._cache
        verdict = cache.get(cache_key)
        if verdict is None:
            verdict = self._decide(key_z85, host, topics)
            if len(topics) <= _MAX_CACHED_TOPICS:
                cache[cache_key] = verdict
                self._cached_names += len(topics) + 1
                while len(cache) > self._cache_size or self._cached_names > self._names_budget:
                    oldest = next(iter(cache))  # dicts keep insertion order: oldest first
                    del cache[oldest]
                    self._cached_names -= len(oldest[2]) + 1
        return verdict

    def _decide(self, key_z85, host, topics):
        grant = self.grant_for(key_z85)
        if not grant.may_host(host):
            return Verdict(False, True, tuple(topics), ())
        refused = tuple(t for t in topics if not grant.may_topic(t))
        if not refused:
            return ALLOWED
        return Verdict(False, False, refused, tuple(t for t in topics if grant.may_topic(t)))

    @property
    def cached_decisions(self):
        return len(self._cache)

    def __repr__(self):
        if self._allow_all:
            return "<TopicPolicy allow-all>"
        return f"<TopicPolicy {len(self._grants)} key(s)>"


def _resolve_key(source, reference, authorized_keys_dir):
    """A reference's Z85 key: a NAME.key file in the directory wins, else a Z85 key itself."""
    named = None
    if authorized_keys_dir is not None and reference and "/" not in reference and reference not in (".", ".."):
        named = pathlib.Path(authorized_keys_dir) / f"{reference}.key"
    if named is not None and named.exists():
        from rpcmm.security import load_public_key  # zmq only when names are used

        return load_public_key(named).decode("ascii")
    if len(reference) == _Z85_KEY_LENGTH and set(reference) <= _Z85_ALPHABET:
        return reference
    if authorized_keys_dir is None:
        raise ConfigurationError(
            f"{source}: key {reference!r} is not a 40-character Z85 public key "
            "(names of .key files need the authorized-keys directory)")
    raise ConfigurationError(
        f"{source}: key {reference!r} is neither a Z85 public key nor the name of a .key file in {authorized_keys_dir}")


def _grant(source, where, entry):
    if type(entry) is not dict:
        raise ConfigurationError(
            f"{source}: {where} must be an object with \"topics\" and \"hosts\", got {entry!r:.60}")
    unknown = set(entry) - {"topics", "hosts", "max_hosts"}
    if unknown:
        raise ConfigurationError(
            f"{source}: {where}: unknown entries {sorted(unknown)} (expected \"topics\", \"hosts\", \"max_hosts\")")
    max_hosts = entry.get("max_hosts")
    if max_hosts is not None and (type(max_hosts) is not int or max_hosts < 1):
        raise ConfigurationError(f"{source}: {where}.max_hosts must be a whole number from 1, got {max_hosts!r:.60}")
    return Grant.build(hosts=_patterns(source, f"{where}.hosts", entry.get("hosts", [])),
                       topics=_patterns(source, f"{where}.topics", entry.get("topics", [])), max_hosts=max_hosts)


def _patterns(source, where, patterns):
    if type(patterns) is not list:
        raise ConfigurationError(f"{source}: {where} must be a list of patterns, got {patterns!r:.60}")
    if len(patterns) > _MAX_PATTERNS:
        raise ConfigurationError(f"{source}: {where} has {len(patterns)} patterns, more than {_MAX_PATTERNS}")
    for pattern in patterns:
        try:
            validate_name("pattern", pattern)  # patterns obey the rules of the names they match
        except ConfigurationError as exc:
            raise ConfigurationError(f"{source}: {where}: {exc}") from None
    return patterns
