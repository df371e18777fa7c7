"""The registry wire protocol, version 1: encoding, decoding and validation.

Every message is one zmq frame holding one msgpack array ``[version, kind, field...]``. Clients
talk to a registry's ROUTER from a DEALER, so the ROUTER sees ``[identity, frame]`` and replies
on the same identity. ``doc/protocol.rst`` is the reference for operators and other
implementations; this module is the reference for the code.

On the registry's ROUTER (client DEALER -> registry):

==========  ====  ==================================================================  =======
kind        code  fields after ``[1, code]``                                          reply
==========  ====  ==================================================================  =======
HEARTBEAT   1     ``[[host, interval, ttl, [topic, ...]], ...]``                       none
UNREGISTER  2     ``[host, ...]``                                                      none
LOOKUP      3     ``request_id, topic``                                                HOSTS
LIST        4     ``request_id``                                                       TABLE
HOSTS       5     ``request_id, [host, ...], epoch, version, state, data_age``         -
TABLE       6     ``request_id, [[host, age, interval, ttl, [topic, ...]], ...], state``  -
ERROR       7     ``request_id, reason``                                               -
STATUS      11    ``request_id``                                                       HEALTH
HEALTH      12    ``request_id, state, epoch, seq, hosts, registrations, feed_port,``  -
                  ``data_age, synced_from, synced_age``
SUSPECT     13    ``[host, ...]``  (this client could not reach these hosts)          none
==========  ====  ==================================================================  =======

On the registry's live feed (XPUB -> client SUB; frame 1 is the subscription key, frame 2
the message; a topic's key is its UTF-8 name followed by a NUL byte, the tick's key a NUL):

==========  ====  ==================================================================
DELTA       8     ``epoch, version, previous, topic, [host, ...]``
SNAPSHOT    9     ``epoch, version, topic, [host, ...]``
TICK        10    ``epoch, seq, state, data_age, interval``
==========  ====  ==================================================================

A HEARTBEAT carries each host's *full* topic set: it registers, refreshes and replaces in one
idempotent message, which is why a registry that restarted or expired a host has all of it
back after one heartbeat. Registering or unregistering one topic is a HEARTBEAT sent at once
with the new set; UNREGISTER removes hosts entirely.

:func:`decode` validates everything (types, sizes, names) and raises
:class:`~rpcmm.errors.ProtocolError` with a reason; receivers log and drop such messages.
Fields appended after the ones listed are ignored, so version 1 can grow compatibly.
"""

import dataclasses
import enum
import math
import typing

import msgpack

from rpcmm.addressing import MAX_NAME_LENGTH, is_clean_text
from rpcmm.errors import ProtocolError

__all__ = [
    "VERSION",
    "unpack_versioned",
    "fast_limits",
    "check_page",
    "Kind",
    "State",
    "HostState",
    "TableRow",
    "Heartbeat",
    "Unregister",
    "Lookup",
    "ListHosts",
    "Hosts",
    "Table",
    "Error",
    "Delta",
    "Snapshot",
    "Tick",
    "Status",
    "Health",
    "Suspect",
    "topic_key",
    "TICK_KEY",
    "encode",
    "decode",
    "MAX_MESSAGE_BYTES",
    "MAX_REPLY_BYTES",
    "MAX_HOSTS_PER_MESSAGE",
    "MAX_TOPICS_PER_HOST",
    "MAX_RECORD_BYTES",
    "record_bytes",
    "heartbeats",
    "MAX_LISTED_HOSTS",
]

VERSION = 1
#: Largest frame a registry accepts (also set as the socket's ZMQ_MAXMSGSIZE).
MAX_MESSAGE_BYTES = 1 << 20
#: Largest frame a client accepts from a registry it asked or follows: an answer names every
#: host of a topic, and a fanout topic of a large region outgrows 1 MiB (100,000 hosts of
#: 25-character names take 2.7 MB). Registries are the peers a client's seed names (and, with
#: keys, the ones holding the registry key), so this bounds what one may cost, not who sends.
MAX_REPLY_BYTES = 64 << 20
#: Most host records one HEARTBEAT or UNREGISTER may carry.
MAX_HOSTS_PER_MESSAGE = 4096
#: Most topics one host may serve.
MAX_TOPICS_PER_HOST = 1024
#: Most bytes a host record's names (its host and topics, UTF-8) may add up to. A table row is
#: then at most half a message, so a listing page (``Table``) with any one row fits in one.
MAX_RECORD_BYTES = MAX_MESSAGE_BYTES // 2
#: Most hosts a registry's table is taken to list (by a client, or a registry warming up from
#: it): far beyond any table (its cap counts registrations, each host has one at least), so a
#: peer that lists more is listing without end.
MAX_LISTED_HOSTS = 50_000_000
_MAX_REQUEST_ID = (1 << 63) - 1
#: The longest ``host:port`` a registry may be named by in its seed: a name, brackets, a port.
_MAX_ENDPOINT_LENGTH = MAX_NAME_LENGTH + len("[]:65535")


class Kind(enum.IntEnum):
    HEARTBEAT = 1
    UNREGISTER = 2
    LOOKUP = 3
    LIST = 4
    HOSTS = 5
    TABLE = 6
    ERROR = 7
    DELTA = 8
    SNAPSHOT = 9
    TICK = 10
    STATUS = 11
    HEALTH = 12
    SUSPECT = 13


class State(enum.IntEnum):
    """A registry's state, carried in every answer so clients can prefer a healthy registry."""

    UP = 0
    #: Still loading its table from a peer; its answers may be incomplete.
    WARMING = 1
    #: Holding off a mass expiry it does not trust (it may be cut off); its data may be old.
    DEGRADED = 2


class HostState(typing.NamedTuple):
    """One host's declared state: its name, heartbeat interval and TTL, and every topic it serves.

    A named tuple rather than a dataclass: registries build one per host per heartbeat.
    """

    host: str
    interval: float
    ttl: float
    topics: tuple


class TableRow(typing.NamedTuple):
    """One row of a registry's table: ``age`` is seconds since the host's last heartbeat."""

    host: str
    age: float
    interval: float
    ttl: float
    topics: tuple


@dataclasses.dataclass(frozen=True, slots=True)
class Heartbeat:
    states: tuple  # of HostState


@dataclasses.dataclass(frozen=True, slots=True)
class Unregister:
    hosts: tuple


@dataclasses.dataclass(frozen=True, slots=True)
class Lookup:
    request_id: int
    topic: str


@dataclasses.dataclass(frozen=True, slots=True)
class ListHosts:
    """Asks for a page of the table: the hosts whose names sort after ``after`` ('' from the
    first). A table of any size comes in pages that each fit a message (see :class:`Table`).
    ``after`` is None for a LIST without the field (a client from before paging): it gets a
    first page as large as a message allows, which is the whole table it used to get."""

    request_id: int
    after: str | None = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Hosts:
    """The answer to a LOOKUP. ``version`` is the registry's sequence number of the topic's last
    change (0: never changed) within ``epoch`` (random per registry run); ``data_age`` is
    seconds since the registry last heard any heartbeat."""

    request_id: int
    hosts: tuple
    epoch: int = 0
    version: int = 0
    state: State = State.UP
    data_age: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Table:
    """A page of a registry's table, rows sorted by host name. ``next_after`` is '' on the last
    page, else the ``after`` to ask for the next one (the last row's host)."""

    request_id: int
    rows: tuple  # of TableRow
    state: State = State.UP
    next_after: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Delta:
    """A topic changed: its hosts are now ``hosts`` at ``version``; ``previous`` is the version
    it replaces, so a subscriber that holds another version knows it missed something."""

    epoch: int
    version: int
    previous: int
    topic: str
    hosts: tuple


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """A topic's whole state, sent when someone subscribes to it (no previous version)."""

    epoch: int
    version: int
    topic: str
    hosts: tuple


@dataclasses.dataclass(frozen=True, slots=True)
class Tick:
    """The feed's heartbeat: the registry is alive, in this epoch and state, and ticks every
    ``interval`` seconds (subscribers call the feed dead after a few missed ticks)."""

    epoch: int
    seq: int
    state: State
    data_age: float
    interval: float


@dataclasses.dataclass(frozen=True, slots=True)
class Status:
    request_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class Health:
    """The answer to STATUS. ``feed_port`` is the live feed's TCP port on the registry's host;
    ``synced_from`` the peer the table was loaded from at start ("" if none) and
    ``synced_age`` seconds since then (-1.0 if never); ``max_registrations`` the cap on the
    table (0: none, or a registry from before the cap) and ``refused`` how many heartbeat
    records it refused since it started because the table was full or their key at its quota."""

    request_id: int
    state: State
    epoch: int
    seq: int
    hosts: int
    registrations: int
    feed_port: int
    data_age: float
    synced_from: str
    synced_age: float
    max_registrations: int = 0
    refused: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Suspect:
    hosts: tuple


@dataclasses.dataclass(frozen=True, slots=True)
class Error:
    request_id: int
    reason: str


#: The live feed's subscription key for ticks. Names never start with a control character.
TICK_KEY = b"\x00"


def topic_key(topic):
    """The live feed's subscription key for ``topic``: its UTF-8 name and a NUL, so that
    subscribing to ``comp`` does not also receive ``compute`` (zmq matches prefixes)."""
    return topic.encode() + b"\x00"


# -- encoding ---------------------------------------------------------------------------------


def encode(message):
    """The wire frame (bytes) for a message object."""
    kind = type(message)
    if kind is Heartbeat:
        body = [Kind.HEARTBEAT, [[s.host, s.interval, s.ttl, list(s.topics)] for s in message.states]]
    elif kind is Unregister:
        body = [Kind.UNREGISTER, list(message.hosts)]
    elif kind is Lookup:
        body = [Kind.LOOKUP, message.request_id, message.topic]
    elif kind is ListHosts:
        body = [Kind.LIST, message.request_id] if message.after is None else [Kind.LIST, message.request_id,
                                                                              message.after]
    elif kind is Hosts:
        body = [Kind.HOSTS, message.request_id, list(message.hosts), message.epoch, message.version,
                int(message.state), message.data_age]
    elif kind is Table:
        body = [Kind.TABLE, message.request_id,
                [[r.host, r.age, r.interval, r.ttl, list(r.topics)] for r in message.rows], int(message.state),
                message.next_after]
    elif kind is Error:
        body = [Kind.ERROR, message.request_id, message.reason]
    elif kind is Delta:
        body = [Kind.DELTA, message.epoch, message.version, message.previous, message.topic, list(message.hosts)]
    elif kind is Snapshot:
        body = [Kind.SNAPSHOT, message.epoch, message.version, message.topic, list(message.hosts)]
    elif kind is Tick:
        body = [Kind.TICK, message.epoch, message.seq, int(message.state), message.data_age, message.interval]
    elif kind is Status:
        body = [Kind.STATUS, message.request_id]
    elif kind is Health:
        body = [Kind.HEALTH, message.request_id, int(message.state), message.epoch, message.seq, message.hosts,
                message.registrations, message.feed_port, message.data_age, message.synced_from,
                message.synced_age, message.max_registrations, message.refused]
    elif kind is Suspect:
        body = [Kind.SUSPECT, list(message.hosts)]
    else:
        raise TypeError(f"not a protocol message: {kind.__name__}")
    return msgpack.packb([VERSION, *body], use_bin_type=True)


# -- decoding ---------------------------------------------------------------------------------


_UNPACK_LIMITS = dict(
    max_bin_len=0,
    max_ext_len=0,
    max_map_len=0,
    max_str_len=4 * MAX_NAME_LENGTH,
    max_array_len=max(MAX_HOSTS_PER_MESSAGE, MAX_TOPICS_PER_HOST, 1 << 20),
)
#: Frames up to this many bytes are first unpacked directly, with every array and map capped at
#: _FAST_CONTAINER elements: msgpack allocates a container when it reads its header, and with
#: that cap a frame this size full of hostile headers costs at most ~200 kB and ~0.1 ms to
#: refuse (tests/fuzz, tests/oslo/test_wire.py). A valid frame with a longer container, or a
#: malformed one, is unpacked again the careful way, which accepts the first and names what
#: is wrong with the second.
_FAST_FRAME = 2048
_FAST_CONTAINER = 32


def fast_limits(limits):
    """The limits to try first on a frame of at most _FAST_FRAME bytes (see unpack_versioned):
    ``limits`` with arrays and maps capped at _FAST_CONTAINER elements. Build them once."""
    return dict(limits, max_array_len=min(limits.get("max_array_len", _FAST_CONTAINER), _FAST_CONTAINER),
                max_map_len=min(limits.get("max_map_len", _FAST_CONTAINER), _FAST_CONTAINER))


_DECODE_LIMITS = dict(_UNPACK_LIMITS, strict_map_key=True)
_FAST_DECODE_LIMITS = fast_limits(_DECODE_LIMITS)


def _unpack_checked(frame, **limits):
    """``msgpack.unpackb(frame, **limits)`` (strings as str, arrays as lists), walking the frame
    first so that hostile array headers cost nothing; raises what msgpack raises.

    msgpack allocates an array when it reads its header, before it knows the frame holds the
    elements: 5 kB of nested headers each claiming 2**20 elements would cost ~0.1 s of CPU and
    ~80 MB. skip() walks the frame without building anything and fails on a truncated one, so
    unpackb only runs on frames whose arrays are really there.
    """
    checker = msgpack.Unpacker(max_buffer_size=max(1, len(frame)), **limits)
    checker.feed(frame)
    checker.skip()
    return msgpack.unpackb(frame, raw=False, use_list=True, **limits)


def unpack_versioned(frame, version, what, limits, fast_limits, min_length):
    """The msgpack array in ``frame`` whose first element is the int ``version`` and which has
    at least ``min_length`` elements; ProtocolError naming ``what`` ("protocol", "envelope")
    for anything else. Shared by this protocol and the oslo driver's envelope.

    Frames of at most _FAST_FRAME bytes (lookups, replies, a host's heartbeat, most oslo
    calls) are first unpacked with ``fast_limits`` (made by :func:`fast_limits`), and no walk;
    a frame that fails that, and every larger frame, is unpacked with ``limits`` after the
    allocation-guarding walk of :func:`_unpack_checked`.
    Both dicts are passed to msgpack as they are (build them once: this runs for every message).
    """
    try:
        data = None
        if len(frame) <= _FAST_FRAME:
            try:
                data = msgpack.unpackb(frame, raw=False, use_list=True, **fast_limits)
            except ValueError:  # msgpack's limit, stack and format errors, UnicodeDecodeError
                pass  # a long container, or junk: the careful way below decides which
        if data is None:
            data = _unpack_checked(frame, **limits)
    except UnicodeDecodeError:
        raise ProtocolError("a string is not valid UTF-8") from None
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        # ExtraData, truncated input, a limit exceeded, nesting deeper than msgpack's stack, a
        # map or binary where none is allowed, an unhashable key.
        raise ProtocolError(f"not a msgpack {'message' if what == 'protocol' else what}: "
                            f"{type(exc).__name__}: {exc}") from None
    if type(data) is not list or len(data) < min_length:
        raise ProtocolError("expected an array [version, kind, ...]")
    if data[0] != version or type(data[0]) is not int:
        raise ProtocolError(f"unsupported {what} version {data[0]!r} (this side speaks {version})")
    return data


def decode(frame, max_bytes=MAX_MESSAGE_BYTES):
    """Decode and validate one frame; raise ProtocolError saying why it is unacceptable.

    ``max_bytes`` is the largest frame taken: MAX_MESSAGE_BYTES for what a registry receives,
    MAX_REPLY_BYTES for what a client receives from a registry."""
    if len(frame) > max_bytes:
        raise ProtocolError(f"message of {len(frame)} bytes exceeds {max_bytes}")
    data = unpack_versioned(frame, VERSION, "protocol", _DECODE_LIMITS, _FAST_DECODE_LIMITS, 2)
    kind = data[1]
    decoder = _DECODERS.get(kind) if type(kind) is int else None
    if decoder is None:
        raise ProtocolError(f"unknown message kind {kind!r}")
    message = decoder(data)
    if len(frame) > MAX_RECORD_BYTES and (kind == Kind.HEARTBEAT or kind == Kind.TABLE):
        # Only a frame this large can hold a record this large: the check costs nothing on
        # the hot path. A larger row could not be listed (it and its page would not fit in
        # a message), so it would stop every listing and warm-up at that host.
        for record in message.states if kind == Kind.HEARTBEAT else message.rows:
            size = record_bytes(record.host, record.topics)
            if size > MAX_RECORD_BYTES:
                raise ProtocolError(f"host {record.host!r:.60}: its names add up to {size} bytes, "
                                    f"above {MAX_RECORD_BYTES}")
    return message


def record_bytes(host, topics):
    """What a host record's names weigh against :data:`MAX_RECORD_BYTES` (UTF-8 bytes)."""
    return len(host.encode()) + sum(len(topic.encode()) for topic in topics)


#: Upper bounds of msgpack's framing around a HEARTBEAT's names: per record, its array header
#: (1), two float64s (9 each), the topic list's array header (at most 5) and a string header per
#: name (at most 5); per message, its array header, version, kind and the records' array header.
_RECORD_FRAMING_BYTES = 24
_NAME_HEADER_BYTES = 5
_HEARTBEAT_FRAMING_BYTES = 16


def heartbeats(states):
    """``states`` (HostState records) as HEARTBEAT messages: as few as fit, in order, each with at
    most :data:`MAX_HOSTS_PER_MESSAGE` records and encoding to at most :data:`MAX_MESSAGE_BYTES`.

    A registry refuses a bigger frame, and zmq then drops the connection it came on without a
    word to either side, so every host in it would expire. Sizes are upper bounds worked out
    from the names (no trial encoding); a record itself always fits (see :data:`MAX_RECORD_BYTES`).
    """
    batch, size = [], _HEARTBEAT_FRAMING_BYTES
    for state in states:
        weight = (record_bytes(state.host, state.topics) + _NAME_HEADER_BYTES * (len(state.topics) + 1)
                  + _RECORD_FRAMING_BYTES)
        if batch and (len(batch) == MAX_HOSTS_PER_MESSAGE or size + weight > MAX_MESSAGE_BYTES):
            yield Heartbeat(tuple(batch))
            batch, size = [], _HEARTBEAT_FRAMING_BYTES
        batch.append(state)
        size += weight
    if batch:
        yield Heartbeat(tuple(batch))


def _need(data, count, what):
    if len(data) < count:
        raise ProtocolError(f"{what} is truncated: {len(data)} fields, expected {count}")


def _request_id(value):
    if type(value) is not int or not 0 <= value <= _MAX_REQUEST_ID:
        raise ProtocolError(f"request id must be a non-negative 64-bit integer, got {value!r}")
    return value


def _seconds(value, what):
    if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
        raise ProtocolError(f"{what} must be a positive finite number of seconds, got {value!r}")
    return float(value)


def _age(value):
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise ProtocolError(f"age must be a non-negative number, got {value!r}")
    return float(value)


def _names(values, what, limit):
    """Validate a list of names in one pass; return them as a tuple."""
    if type(values) is not list:
        raise ProtocolError(f"{what} must be an array, got {type(values).__name__}")
    if len(values) > limit:
        raise ProtocolError(f"{len(values)} {what} exceed the limit of {limit}")
    for value in values:
        if type(value) is not str or not value or len(value) > MAX_NAME_LENGTH:
            raise ProtocolError(f"{what}: {value!r:.60} is not a name of 1 to {MAX_NAME_LENGTH} characters")
    # One C-speed scan over all names: white space or control characters anywhere are refused.
    if not is_clean_text("".join(values)):
        raise ProtocolError(f"{what}: a name contains white space or control characters")
    return tuple(values)


def _distinct(topics):
    """``topics``, refused if one is listed twice: a host's topics are a set, and a registry
    counts (and caps) registrations per distinct topic, so repeats would be stored uncounted."""
    if len(set(topics)) != len(topics):
        raise ProtocolError("a host record lists a topic more than once")
    return topics


def _name(value, what):
    return _names([value], what, 1)[0]


def _host_states(records):
    if type(records) is not list:
        raise ProtocolError("heartbeat hosts must be an array")
    if len(records) > MAX_HOSTS_PER_MESSAGE:
        raise ProtocolError(f"{len(records)} host records exceed the limit of {MAX_HOSTS_PER_MESSAGE}")
    states = []
    for record in records:
        if type(record) is not list or len(record) < 4:
            raise ProtocolError("a host record must be [host, interval, ttl, [topics]]")
        host, interval, ttl, topics = record[:4]
        if type(topics) is not list:
            raise ProtocolError("topics must be an array")
        # The host is checked with its topics in one pass (this is the registry's hot path).
        topics.append(host)
        _names(topics, "names in a host record (the host and its topics)", MAX_TOPICS_PER_HOST + 1)
        topics.pop()
        _distinct(topics)
        states.append(HostState(host, _seconds(interval, "interval"), _seconds(ttl, "ttl"), tuple(topics)))
    return tuple(states)


def _decode_heartbeat(data):
    _need(data, 3, "HEARTBEAT")
    return Heartbeat(_host_states(data[2]))


def _decode_unregister(data):
    _need(data, 3, "UNREGISTER")
    return Unregister(_names(data[2], "hosts", MAX_HOSTS_PER_MESSAGE))


def _decode_lookup(data):
    _need(data, 4, "LOOKUP")
    return Lookup(_request_id(data[2]), _name(data[3], "topic"))


def _decode_list(data):
    _need(data, 3, "LIST")
    # Without a cursor (an older client): after None, the first page, as large as it can be.
    return ListHosts(_request_id(data[2]), _cursor(data[3]) if len(data) > 3 else None)


def check_page(table, after):
    """Raise ProtocolError unless ``table`` (a Table) is a page that answers a LIST from
    ``after``: rows in strictly increasing host order, all after ``after``, and ``next_after``
    either '' (the last page) or the host of its last row. A reader that checks every page
    and moves ``after`` on to ``next_after`` lists each host once and always gets further."""
    previous = after
    for row in table.rows:
        if row.host <= previous:
            raise ProtocolError(f"a table page lists {row.host!r} after {previous!r}: not in order past the cursor")
        previous = row.host
    if table.next_after and (not table.rows or table.next_after != table.rows[-1].host):
        raise ProtocolError(f"a table page's cursor {table.next_after!r} is not its last host")


def _cursor(value):
    """A page cursor: '' (from the start, or no more pages) or a host name."""
    return "" if value == "" else _name(value, "page cursor")


def _counter(value, what):
    if type(value) is not int or not 0 <= value <= _MAX_REQUEST_ID:
        raise ProtocolError(f"{what} must be a non-negative 64-bit integer, got {value!r}")
    return value


def _state(value):
    try:
        return State(value) if type(value) is int else _bad_state(value)
    except ValueError:
        return _bad_state(value)


def _bad_state(value):
    raise ProtocolError(f"unknown registry state {value!r}")


def _decode_hosts(data):
    _need(data, 8, "HOSTS")
    return Hosts(_request_id(data[2]), _names(data[3], "hosts", 1 << 20), _counter(data[4], "epoch"),
                 _counter(data[5], "version"), _state(data[6]), _age(data[7]))


def _decode_delta(data):
    _need(data, 7, "DELTA")
    version, previous = _counter(data[3], "version"), _counter(data[4], "previous")
    if version <= previous:
        raise ProtocolError(f"a DELTA's version ({version}) must be above its previous ({previous})")
    return Delta(_counter(data[2], "epoch"), version, previous, _name(data[5], "topic"),
                 _names(data[6], "hosts", 1 << 20))


def _decode_snapshot(data):
    _need(data, 6, "SNAPSHOT")
    return Snapshot(_counter(data[2], "epoch"), _counter(data[3], "version"), _name(data[4], "topic"),
                    _names(data[5], "hosts", 1 << 20))


def _decode_tick(data):
    _need(data, 7, "TICK")
    return Tick(_counter(data[2], "epoch"), _counter(data[3], "seq"), _state(data[4]), _age(data[5]),
                _seconds(data[6], "tick interval"))


def _decode_status(data):
    _need(data, 3, "STATUS")
    return Status(_request_id(data[2]))


def _decode_health(data):
    _need(data, 12, "HEALTH")
    port = data[8]
    if type(port) is not int or not 0 <= port <= 65535:
        raise ProtocolError(f"feed port must be 0 to 65535, got {port!r}")
    synced_from, synced_age = data[10], data[11]
    if type(synced_from) is not str or len(synced_from) > _MAX_ENDPOINT_LENGTH:
        raise ProtocolError("synced_from must be a short string")
    if type(synced_age) not in (int, float) or not math.isfinite(synced_age) or synced_age < -1:
        raise ProtocolError(f"synced_age must be a number >= -1, got {synced_age!r}")
    # The last two came with the table's cap: a registry from before it sends neither.
    cap = _counter(data[12], "max_registrations") if len(data) > 12 else 0
    refused = _counter(data[13], "refused") if len(data) > 13 else 0
    return Health(_request_id(data[2]), _state(data[3]), _counter(data[4], "epoch"), _counter(data[5], "seq"),
                  _counter(data[6], "hosts"), _counter(data[7], "registrations"), port, _age(data[9]),
                  synced_from, float(synced_age), cap, refused)


def _decode_suspect(data):
    _need(data, 3, "SUSPECT")
    return Suspect(_names(data[2], "hosts", MAX_HOSTS_PER_MESSAGE))


def _decode_table(data):
    _need(data, 5, "TABLE")
    rows = data[3]
    if type(rows) is not list:
        raise ProtocolError("table rows must be an array")
    parsed = []
    for row in rows:
        if type(row) is not list or len(row) < 5:
            raise ProtocolError("a table row must be [host, age, interval, ttl, [topics]]")
        parsed.append(TableRow(
            host=_name(row[0], "host"),
            age=_age(row[1]),
            interval=_seconds(row[2], "interval"),
            ttl=_seconds(row[3], "ttl"),
            topics=_distinct(_names(row[4], "topics", MAX_TOPICS_PER_HOST)),
        ))
    # Without a cursor (an older registry): the whole table in one message.
    return Table(_request_id(data[2]), tuple(parsed), _state(data[4]), _cursor(data[5]) if len(data) > 5 else "")


def _decode_error(data):
    _need(data, 4, "ERROR")
    reason = data[3]
    if type(reason) is not str:
        raise ProtocolError("error reason must be a string")
    return Error(_request_id(data[2]), reason)


_DECODERS = {
    Kind.HEARTBEAT: _decode_heartbeat,
    Kind.UNREGISTER: _decode_unregister,
    Kind.LOOKUP: _decode_lookup,
    Kind.LIST: _decode_list,
    Kind.HOSTS: _decode_hosts,
    Kind.TABLE: _decode_table,
    Kind.ERROR: _decode_error,
    Kind.DELTA: _decode_delta,
    Kind.SNAPSHOT: _decode_snapshot,
    Kind.TICK: _decode_tick,
    Kind.STATUS: _decode_status,
    Kind.HEALTH: _decode_health,
    Kind.SUSPECT: _decode_suspect,
}
