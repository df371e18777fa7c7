"""The envelope: round trips, and refusals of what is not ours."""

import datetime
import tracemalloc

import msgpack
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


def frame(*body):
    """One envelope frame holding ``body`` (not necessarily a valid one)."""
    return [msgpack.packb(list(body), use_bin_type=True)]


REQUEST_ID = "x"


@pytest.mark.parametrize("frames", [
    [],
    [b""],
    [b"\xc1"],  # a byte msgpack never uses
    [b"rpcmm-oslo/1", b'{"k": "beat", "id": "x"}'],  # version 1: two frames
    frame(2, 3, "x") + frame(2, 3, "x"),
    [msgpack.packb({"k": "beat"})],
    frame(2),
    frame(1, 3, "x"),
    frame("2", 3, "x"),
    frame(2, 9, "x"),
    frame(2, 3, ""),
    frame(2, 3, "x" * 200),
    frame(2, 3, 7),
    frame(2, 3, "x", "extra"),
    frame(2, 1, "x", "has space", {}, {}, None, None),
    frame(2, 1, "x", "t", [], {}, None, None),
    frame(2, 1, "x", "t", {}, "m", None, None),
    frame(2, 1, "x", "t", {}, {}, "ipc:///x", None),
    frame(2, 1, "x", "t", {}, {}, "h:0", None),
    frame(2, 1, "x", "t", {}, {}, ["h", 1], None),
    frame(2, 1, "x", "t", {}, {}, None, -1),
    frame(2, 1, "x", "t", {}, {}, None, True),
    frame(2, 1, "x", "t", {}, {}, None),
    frame(2, 2, "x", None, {}),
    [frame(2, 2, "x", None, None)[0] + b"\x00"],  # trailing bytes
    [frame(2, 2, "x", None, None)[0][:-1]],  # truncated
    [msgpack.packb([2, 1, "x", "t", {b"\xff\xfe": 1}, {}, None, None], use_bin_type=False)],  # bad UTF-8
])
def test_malformed_frames_are_protocol_errors(frames):
    with pytest.raises(ProtocolError):
        wire.decode(frames)


def test_version_1_is_refused_with_a_message_that_says_so():
    with pytest.raises(ProtocolError, match="version 1"):
        wire.decode([b"rpcmm-oslo/1", b"{}"])


@pytest.mark.parametrize("depth", [100, 250, 2_000, 100_000])
def test_deep_nesting_is_refused_not_a_crash(depth):
    with pytest.raises(ProtocolError):
        wire.decode([b"\x91" * depth + b"\xc0"])


def test_hostile_array_headers_are_refused_without_building_them():
    # Each header claims 2**20 elements that are not there: refused by the walk, cheaply.
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            wire.decode([b"\x93\x02\x01" + b"\xdd\x00\x10\x00\x00" * 1000])
        assert tracemalloc.get_traced_memory()[1] < 5_000_000
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("header, count", [
    (b"\xdc\x00\xff", 80), (b"\xde\x00\x7f", 80),  # array16, map16: a 240-byte frame
    (b"\x9f", 2000), (b"\x8f", 2000), (b"\xdc\x00\x20", 680), (b"\xde\x00\x20", 680),  # ~2 kB
    (b"\xdc\xff\xff", 680), (b"\xde\xff\xff", 680),
])
def test_small_frames_full_of_headers_are_refused_cheaply(header, count):
    # Frames up to 2 kB are unpacked without the walk, their containers capped instead.
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            wire.decode([header * count + b"\xc0"])
        assert tracemalloc.get_traced_memory()[1] < 400_000
    finally:
        tracemalloc.stop()


def test_a_small_frame_with_containers_longer_than_the_fast_paths_cap_still_decodes():
    # Under 2 kB, so tried the fast way first; its 40-element map and list exceed that cap.
    message = wire.Reply("id", result={"list": list(range(40)), "map": {str(i): i for i in range(40)}})
    frames = wire.encode(message)
    assert len(frames[0]) < 2048
    assert wire.decode(frames) == message


def test_bytes_and_integer_keys_survive_as_msgpack_keeps_them():
    message = wire.Reply("id", result={"raw": b"\x00\xff", 1: "one"})
    assert wire.decode(wire.encode(message)) == message


def test_integers_beyond_64_bits_are_refused_at_the_sender():
    with pytest.raises(ValueError):
        wire.encode(wire.Reply("id", result=2 ** 70))


def test_unserializable_content_raises_at_the_sender():
    with pytest.raises((TypeError, ValueError)):
        wire.encode(wire.Reply("id", result=object()))
