"""The oslo driver's envelope decoder: anything at all, and near-valid envelopes, give either a
message or ProtocolError, never another exception."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpcmm.errors import ProtocolError
from rpcmm.oslo import wire

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)

near_valid_bodies = st.fixed_dictionaries(
    {"k": st.sampled_from(["req", "rep", "beat", "other"]) | json_values},
    optional={"id": st.text(max_size=200) | json_values, "to": st.text(max_size=300) | json_values,
              "ctxt": json_values, "msg": json_values, "reply": st.text(max_size=60) | json_values,
              "monitor": json_values, "result": json_values, "failure": json_values},
)


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
    message = decode_or_refuse([wire.MAGIC, json.dumps(body).encode()])
    if isinstance(message, wire.Request):
        assert isinstance(message.ctxt, dict) and isinstance(message.message, dict)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bodies_behind_the_right_magic(raw):
    decode_or_refuse([wire.MAGIC, raw])


@pytest.mark.parametrize("depth", [10_000, 100_000])
def test_deeply_nested_json_is_refused_not_a_recursion_error(depth):
    with pytest.raises(ProtocolError):
        wire.decode([wire.MAGIC, b"[" * depth + b"]" * depth])
