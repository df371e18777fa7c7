"""The oslo driver's envelope decoder: anything at all, and near-valid envelopes, give either a
message or ProtocolError, never another exception."""

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpcmm.errors import ProtocolError
from rpcmm.oslo import wire

values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 64 - 1) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)

near_valid_bodies = st.tuples(
    st.sampled_from([2]) | values,
    st.sampled_from([1, 2, 3]) | values,
    st.text(max_size=200) | values,
    st.lists(values | st.text(max_size=300) | st.binary(max_size=20), max_size=6),
).map(lambda parts: [parts[0], parts[1], parts[2], *parts[3]])


def decode_or_refuse(frames):
    try:
        return wire.decode(frames)
    except ProtocolError:
        return None


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=4))
def test_arbitrary_frames(frames):
    decode_or_refuse(frames)


@settings(max_examples=400, deadline=None)
@given(near_valid_bodies)
def test_near_valid_envelopes(body):
    message = decode_or_refuse([msgpack.packb(body, use_bin_type=True)])
    if isinstance(message, wire.Request):
        assert isinstance(message.ctxt, dict) and isinstance(message.message, dict)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_a_valid_header(raw):
    decode_or_refuse([b"\x98\x02\x01" + raw])


@pytest.mark.parametrize("depth", [10_000, 100_000])
def test_deeply_nested_arrays_are_refused_not_a_crash(depth):
    with pytest.raises(ProtocolError):
        wire.decode([b"\x91" * depth + b"\xc0"])
