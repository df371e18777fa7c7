"""The driver's wire envelope: what travels between oslo.messaging peers over ZeroMQ.

Every message is two frames, ``[MAGIC, body]``, sent from a DEALER to a ROUTER (so the
receiving ROUTER sees ``[identity, MAGIC, body]``). ``MAGIC`` names the envelope version;
``body`` is a JSON object (oslo.serialization's encoder, so contexts with datetimes and the like
encode as they do on every other oslo.messaging driver) whose ``"k"`` key is the kind:

=======  ==============================================================================
kind     fields
=======  ==============================================================================
``req``  ``id`` request id, ``to`` the rpcmm topic it was sent through, ``ctxt``, ``msg``,
         ``reply`` the caller's reply address (``host:port``) or null for a cast, ``monitor``
         the caller's call-monitor timeout in seconds or null
``rep``  ``id``, ``result``, ``failure`` (oslo's serialized remote exception) or null
``beat`` ``id``: the call is still running (call monitoring)
=======  ==============================================================================

:func:`decode` validates types and sizes and raises :class:`~rpcmm.errors.ProtocolError`;
receivers log and drop such messages. A reply address is parsed as ``host:port`` here, so a
hostile request cannot make a server connect anywhere but to a TCP endpoint.
"""

import dataclasses

from oslo_serialization import jsonutils

from rpcmm.addressing import Endpoint, validate_name
from rpcmm.errors import ConfigurationError, ProtocolError

__all__ = ["MAGIC", "Request", "Reply", "Beat", "encode", "decode"]

MAGIC = b"rpcmm-oslo/1"
_MAX_ID = 128


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


def encode(message):
    """The frames of ``message`` (Request, Reply or Beat). Raises TypeError/ValueError if its
    content cannot be serialized."""
    if isinstance(message, Request):
        body = {"k": "req", "id": message.msg_id, "to": message.to, "ctxt": message.ctxt,
                "msg": message.message, "reply": message.reply_to, "monitor": message.monitor}
    elif isinstance(message, Reply):
        body = {"k": "rep", "id": message.msg_id, "result": message.result,
                "failure": message.failure}
    elif isinstance(message, Beat):
        body = {"k": "beat", "id": message.msg_id}
    else:
        raise TypeError(f"cannot encode {type(message).__name__}")
    return [MAGIC, jsonutils.dump_as_bytes(body)]


def decode(frames):
    """Decode the frames after the ROUTER identity; raise ProtocolError if they are not ours."""
    if len(frames) != 2:
        raise ProtocolError(f"expected 2 frames, got {len(frames)}")
    magic, raw = frames
    if bytes(magic) != MAGIC:
        raise ProtocolError(f"unknown envelope {bytes(magic)[:32]!r}")
    try:
        body = jsonutils.loads(bytes(raw))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"body is not JSON: {exc}") from None
    except RecursionError:  # a few kB of "[[[[..." would otherwise escape as a crash
        raise ProtocolError("body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ProtocolError("body is not a JSON object")
    kind = body.get("k")
    msg_id = _msg_id(body.get("id"))
    if kind == "req":
        return Request(
            msg_id=msg_id,
            to=_name(body.get("to")),
            ctxt=_object(body.get("ctxt"), "ctxt"),
            message=_object(body.get("msg"), "msg"),
            reply_to=_address(body.get("reply")),
            monitor=_seconds(body.get("monitor")),
        )
    if kind == "rep":
        failure = body.get("failure")
        if failure is not None and not isinstance(failure, str):
            raise ProtocolError("failure must be a string or null")
        return Reply(msg_id=msg_id, result=body.get("result"), failure=failure)
    if kind == "beat":
        return Beat(msg_id=msg_id)
    raise ProtocolError(f"unknown kind {kind!r}")


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
        raise ProtocolError(f"{what} must be a JSON object")
    return value


def _address(value):
    if value is None:
        return None
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
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e6:
        raise ProtocolError("monitor must be a positive number of seconds or null")
    return float(value)
