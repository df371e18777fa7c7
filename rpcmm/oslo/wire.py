"""The driver's wire envelope: what travels between oslo.messaging peers over ZeroMQ.

Every message is one frame sent from a DEALER to a ROUTER (so the receiving ROUTER sees
``[identity, frame]``). The frame is a msgpack array whose first element is the envelope
version (:data:`VERSION`) and whose second is the kind:

=========  ==================================================================================
kind       array
=========  ==================================================================================
REQUEST 1  ``[2, 1, id, to, ctxt, msg, reply, monitor]``: ``id`` request id, ``to`` the rpcmm
           topic it was sent through, ``ctxt`` and ``msg`` maps, ``reply`` the caller's reply
           address (``host:port``) or nil for a cast, ``monitor`` the caller's call-monitor
           timeout in seconds or nil
REPLY 2    ``[2, 2, id, result, failure]``: ``failure`` is oslo's serialized remote exception
           (a string) or nil
BEAT 3     ``[2, 3, id]``: the call is still running (call monitoring)
=========  ==================================================================================

Why msgpack and positional arrays: the envelope is encoded and decoded once per message on
both ends, and on a 2-core machine JSON encoding and decoding was a fifth of the sender's and
of the receiving task's time (profiles in ``doc/performance.rst``); msgpack does the same work
several times faster. Values msgpack cannot hold (datetimes, sets, objects with ``to_dict``,
...) are converted by oslo.serialization's ``to_primitive``, as the JSON-based drivers convert
them, so a context encodes the same way on every driver. Unlike JSON, msgpack keeps bytes as
bytes and integer map keys as integers; integers beyond 64 bits are refused at the sender.

:func:`decode` validates types and sizes and raises :class:`~rpcmm.errors.ProtocolError`;
receivers log and drop such messages. A reply address is parsed as ``host:port`` here, so a
hostile request cannot make a server connect anywhere but to a TCP endpoint. Version 1 (two
frames, JSON) is refused with a message that says so.
"""

import dataclasses
import functools

import msgpack
from oslo_serialization import jsonutils

from rpcmm.addressing import Endpoint, validate_name
from rpcmm.errors import ConfigurationError, ProtocolError
from rpcmm.protocol import fast_limits, unpack_versioned

__all__ = ["VERSION", "MAX_MONITOR_SECONDS", "Request", "Reply", "Beat", "encode", "decode"]

#: The envelope version, first element of every frame.
VERSION = 2
_REQUEST, _REPLY, _BEAT = 1, 2, 3
_MAX_ID = 128
#: Longest call-monitor timeout a request carries (11.5 days: longer is no monitoring at all).
MAX_MONITOR_SECONDS = 999_999.0
_NO_LIMITS = {"strict_map_key": False}  # keys may be ints, as in any Python dict
#: For small frames, tried first (see unpack_versioned): containers capped, nothing else.
_FAST_LIMITS = fast_limits(_NO_LIMITS)
#: The frame that started every version 1 message (a JSON envelope in a second frame).
_VERSION_1_MAGIC = b"rpcmm-oslo/1"


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """An RPC call or cast, or a notification (``reply_to`` None: nobody waits)."""

    msg_id: str
    to: str
    ctxt: dict
    message: dict
    reply_to: str | None = None
    monitor: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """The answer to the call ``msg_id``: ``result``, or ``failure`` (a serialized exception)."""

    msg_id: str
    result: object = None
    failure: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Beat:
    """The call ``msg_id`` is still being worked on."""

    msg_id: str


def _primitive(value):
    """msgpack's hook for what it cannot pack: what the JSON drivers would send instead."""
    return jsonutils.to_primitive(value, convert_instances=True)


def encode(message):
    """The frames of ``message`` (Request, Reply or Beat). Raises TypeError/ValueError if its
    content cannot be serialized."""
    kind = type(message)
    if kind is Request:
        body = [VERSION, _REQUEST, message.msg_id, message.to, message.ctxt, message.message,
                message.reply_to, message.monitor]
    elif kind is Reply:
        body = [VERSION, _REPLY, message.msg_id, message.result, message.failure]
    elif kind is Beat:
        body = [VERSION, _BEAT, message.msg_id]
    else:
        raise TypeError(f"cannot encode {kind.__name__}")
    try:
        return [msgpack.packb(body, default=_primitive, use_bin_type=True)]
    except OverflowError as exc:  # an int beyond 64 bits: a ValueError like any unpackable value
        raise ValueError(f"cannot encode {kind.__name__}: {exc}") from None


def decode(frames):
    """Decode the frames after the ROUTER identity; raise ProtocolError if they are not ours."""
    if len(frames) != 1:
        if len(frames) == 2 and bytes(frames[0]) == _VERSION_1_MAGIC:
            raise ProtocolError("envelope version 1 (an older rpcmm): this side speaks version 2")
        raise ProtocolError(f"expected 1 frame, got {len(frames)}")
    # msgpack caps every length at the frame's size on its own; nothing more to limit here.
    body = unpack_versioned(bytes(frames[0]), VERSION, "envelope", _NO_LIMITS, _FAST_LIMITS, 3)
    kind = body[1]
    msg_id = _msg_id(body[2])
    if kind == _REQUEST and len(body) == 8:
        return Request(
            msg_id=msg_id,
            to=_name(body[3]),
            ctxt=_object(body[4], "ctxt"),
            message=_object(body[5], "msg"),
            reply_to=_address(body[6]),
            monitor=_seconds(body[7]),
        )
    if kind == _REPLY and len(body) == 5:
        failure = body[4]
        if failure is not None and type(failure) is not str:
            raise ProtocolError("failure must be a string or nil")
        return Reply(msg_id=msg_id, result=body[3], failure=failure)
    if kind == _BEAT and len(body) == 3:
        return Beat(msg_id=msg_id)
    raise ProtocolError(f"unknown kind {kind!r} with {len(body)} elements")


def _msg_id(value):
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_ID:
        raise ProtocolError("id must be a non-empty string of at most 128 characters")
    return value


def _name(value):
    try:
        return validate_name("topic", value)
    except ConfigurationError as exc:
        raise ProtocolError(str(exc)) from None


def _object(value, what):
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be a map")
    return value


def _address(value):
    if value is None:
        return None
    if type(value) is not str:
        raise ProtocolError("reply address must be a string or nil")
    return _parse_address(value)


@functools.lru_cache(maxsize=4096)
def _parse_address(value):
    """``host:port`` checked once per distinct address: a server hears from few callers, and
    each sends its one reply address with every call (errors are not cached)."""
    try:
        endpoint = Endpoint.parse(value)
    except ConfigurationError as exc:
        raise ProtocolError(f"reply address: {exc}") from None
    if endpoint.port == 0:
        raise ProtocolError("reply address has port 0")
    return str(endpoint)


def _seconds(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_MONITOR_SECONDS:
        raise ProtocolError("monitor must be a positive number of seconds or nil")
    return float(value)
