"""The envelope: round trips, and refusals of what is not ours."""

import datetime

import pytest

from rpcmm.errors import ProtocolError
from rpcmm.oslo import wire

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize("message", [
    wire.Request("id1", "rpc/openstack/t", {"user": "u"}, {"method": "m", "args": {}}),
    wire.Request("id2", "rpc/x/t", {}, {"method": "m"}, reply_to="127.0.0.1:5000", monitor=2.0),
    wire.Request("id3", "rpc/x/t", {}, {}, reply_to="[::1]:5000"),
    wire.Reply("id4", result={"a": [1, 2]}),
    wire.Reply("id5", failure='{"class": "ValueError"}'),
    wire.Beat("id6"),
])
def test_round_trip(message):
    assert wire.decode(wire.encode(message)) == message


def test_contexts_encode_like_oslo_does():
    when = datetime.datetime(2024, 1, 2, 3, 4, 5)
    decoded = wire.decode(wire.encode(wire.Request("id", "t", {"when": when}, {})))
    assert decoded.ctxt["when"].startswith("2024-01-02T03:04:05")


@pytest.mark.parametrize("frames", [
    [],
    [b"rpcmm-oslo/1"],
    [b"other/1", b"{}"],
    [b"rpcmm-oslo/1", b"\xff\xfe"],
    [b"rpcmm-oslo/1", b"[]"],
    [b"rpcmm-oslo/1", b'{"k": "what", "id": "x"}'],
    [b"rpcmm-oslo/1", b'{"k": "beat"}'],
    [b"rpcmm-oslo/1", b'{"k": "beat", "id": ""}'],
    [b"rpcmm-oslo/1", b'{"k": "beat", "id": "' + b"x" * 200 + b'"}'],
    [b"rpcmm-oslo/1", b'{"k": "req", "id": "x", "to": "has space", "ctxt": {}, "msg": {}}'],
    [b"rpcmm-oslo/1", b'{"k": "req", "id": "x", "to": "t", "ctxt": [], "msg": {}}'],
    [b"rpcmm-oslo/1", b'{"k": "req", "id": "x", "to": "t", "ctxt": {}, "msg": "m"}'],
    [b"rpcmm-oslo/1", b'{"k": "req", "id": "x", "to": "t", "ctxt": {}, "msg": {}, "reply": "ipc:///x"}'],
    [b"rpcmm-oslo/1", b'{"k": "req", "id": "x", "to": "t", "ctxt": {}, "msg": {}, "reply": "h:0"}'],
    [b"rpcmm-oslo/1", b'{"k": "req", "id": "x", "to": "t", "ctxt": {}, "msg": {}, "monitor": -1}'],
    [b"rpcmm-oslo/1", b'{"k": "req", "id": "x", "to": "t", "ctxt": {}, "msg": {}, "monitor": true}'],
    [b"rpcmm-oslo/1", b'{"k": "rep", "id": "x", "failure": {}}'],
])
def test_malformed_frames_are_protocol_errors(frames):
    with pytest.raises(ProtocolError):
        wire.decode(frames)


def test_unserializable_content_raises_at_the_sender():
    with pytest.raises((TypeError, ValueError)):
        wire.encode(wire.Reply("id", result=object()))
