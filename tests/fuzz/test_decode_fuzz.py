"""Property-based fuzzing of ``protocol.decode``: near-valid messages, structural and byte mutations.

The contract: for any bytes, ``decode`` returns a message or raises ProtocolError, and never
anything else; whatever it returns satisfies the protocol's invariants (clean bounded names,
positive finite timings, bounded counts) and survives a re-encode unchanged.
"""

import dataclasses
import math
import tracemalloc

import msgpack
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rpcmm import protocol as p
from rpcmm.addressing import MAX_NAME_LENGTH, is_clean_text
from rpcmm.errors import ProtocolError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies ---------------------------------------------------------------------------------

# Names near the edges: clean ASCII, unicode, white space and control characters, length 0/255/256.
names = st.one_of(
    st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20),
    st.text(min_size=0, max_size=12),  # any unicode, including separators and surrogate-free oddities
    st.sampled_from(["", " ", "a b", "a\tb", "a\x00b", "\u200b", "\u2028", "x" * MAX_NAME_LENGTH,
                     "x" * (MAX_NAME_LENGTH + 1), "é" * MAX_NAME_LENGTH, "\U0001f600"]),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([0, 0.0, -0.0, 5e-324, 1e308, True, False, None]),
)
scalars = st.one_of(names, numbers, st.binary(max_size=8), st.none())
# Arbitrary msgpack values (maps and binary included: decode must refuse them with ProtocolError).
values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=6),
                               st.dictionaries(st.text(max_size=4), children, max_size=3)),
    max_leaves=30,
)
# The same without maps and binary (which decode refuses outright): for fields of near-valid messages.
wire_values = st.recursive(st.one_of(names, numbers, st.none()), lambda children: st.lists(children, max_size=6),
                           max_leaves=20)
request_ids = st.one_of(st.integers(0, 2**63 - 1), numbers)


_names_ok = st.sampled_from(["h1", "h-2", "10.0.0.1:1", "node.example.org", "t", "compute.x", "a" * 255])
_ids = st.integers(0, 2**63 - 1)
_ages = st.floats(0, 1e6)
valid_messages = st.one_of(
    st.builds(p.Lookup, _ids, _names_ok),
    st.builds(p.ListHosts, _ids, st.one_of(st.just(""), st.none(), _names_ok)),
    st.builds(p.Unregister, st.lists(_names_ok, max_size=4).map(tuple)),
    st.builds(p.Heartbeat, st.lists(st.builds(
        p.HostState, _names_ok, st.floats(0.05, 60), st.floats(0.2, 600),
        st.lists(_names_ok, max_size=5, unique=True).map(tuple)), max_size=4).map(tuple)),
    st.builds(p.Hosts, _ids, st.lists(_names_ok, max_size=3).map(tuple)),
    st.builds(p.Table, _ids, st.lists(st.builds(p.TableRow, _names_ok, _ages, st.floats(0.05, 60),
                                                st.floats(0.2, 600),
                                                st.lists(_names_ok, max_size=3, unique=True).map(tuple)),
                                      max_size=3).map(tuple),
              st.sampled_from(p.State), st.one_of(st.just(""), _names_ok)),
    st.builds(p.Error, _ids, st.text(max_size=30)),
    # Kinds added by later issues, when this version of the protocol has them.
    *([st.builds(p.Status, _ids)] if hasattr(p, "Status") else []),
    *([st.builds(p.Suspect, st.lists(_names_ok, max_size=4).map(tuple))] if hasattr(p, "Suspect") else []),
    *([st.builds(p.Snapshot, _ids, _ids, _names_ok, st.lists(_names_ok, max_size=3).map(tuple))]
      if hasattr(p, "Snapshot") else []),
)


def _slots(value, path=()):
    """Every (path) to an element of nested lists, the top level included."""
    yield path
    if type(value) is list:
        for i, item in enumerate(value):
            yield from _slots(item, (*path, i))


@st.composite
def near_valid_messages(draw):
    """A valid message's wire array with 0 to 3 structural mutations: an element replaced by a
    hostile value, deleted, duplicated, wrapped in an array, or an element appended."""
    fields = msgpack.unpackb(p.encode(draw(valid_messages)), raw=False)
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(list(_slots(fields))[1:]))
        parent = fields
        for i in path[:-1]:
            parent = parent[i]
        i = path[-1]
        op = draw(st.sampled_from(["replace", "replace", "delete", "duplicate", "wrap", "append"]))
        if op == "replace":
            parent[i] = draw(st.one_of(names, numbers, wire_values, values))
        elif op == "delete":
            del parent[i]
        elif op == "duplicate":
            parent.insert(i, parent[i])
        elif op == "wrap":
            parent[i] = [parent[i]]
        elif type(parent[i]) is list:
            parent[i].append(draw(wire_values))
    return fields


@st.composite
def mutated_frames(draw):
    """A valid frame with byte-level damage: flips, inserts, deletes, truncation, splices."""
    frame = bytearray(p.encode(draw(valid_messages)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "splice", "header"]))
        at = draw(st.integers(0, max(0, len(frame) - 1)))
        if op == "flip" and frame:
            frame[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and frame:
            frame[at] = draw(st.integers(0, 255))
        elif op == "insert":
            frame[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del frame[at:at + draw(st.integers(1, 4))]
        elif op == "truncate":
            del frame[at:]
        elif op == "splice":
            frame[at:at] = p.encode(draw(valid_messages))
        elif op == "header":
            # msgpack headers that claim huge lengths: array32, str32, map32, bin32, ext32.
            frame[at:at] = bytes([draw(st.sampled_from([0xDD, 0xDB, 0xDF, 0xC6, 0xC9]))]) + \
                draw(st.binary(min_size=4, max_size=4))
    return bytes(frame)


# -- the contract -------------------------------------------------------------------------------


def check_invariants(message):
    """What every decoded message guarantees to the code that uses it."""

    def name_ok(name):
        return type(name) is str and 0 < len(name) <= MAX_NAME_LENGTH and is_clean_text(name)

    def seconds_ok(value, zero_ok=False):
        return type(value) is float and math.isfinite(value) and (value >= 0 if zero_ok else value > 0)

    if hasattr(message, "request_id"):
        assert type(message.request_id) is int and 0 <= message.request_id < 2**63
    kind = type(message)
    if kind is p.Heartbeat:
        assert len(message.states) <= p.MAX_HOSTS_PER_MESSAGE
        for state in message.states:
            assert name_ok(state.host) and seconds_ok(state.interval) and seconds_ok(state.ttl)
            assert type(state.topics) is tuple and len(state.topics) <= p.MAX_TOPICS_PER_HOST
            assert all(map(name_ok, state.topics))
    elif kind in (p.Unregister, p.Hosts):
        assert type(message.hosts) is tuple and all(map(name_ok, message.hosts))
    elif kind is p.Lookup:
        assert name_ok(message.topic)
    elif kind is p.ListHosts:
        assert message.after in ("", None) or name_ok(message.after)
    elif kind is p.Table:
        assert message.next_after == "" or name_ok(message.next_after)
        for row in message.rows:
            assert name_ok(row.host) and seconds_ok(row.age, zero_ok=True)
            assert seconds_ok(row.interval) and seconds_ok(row.ttl) and all(map(name_ok, row.topics))
    elif kind is p.Error:
        assert type(message.reason) is str
    else:
        # Kinds added since these checks were written: the generic bounds still hold.
        check_bounded(message)
    assert p.decode(p.encode(message)) == message


def check_bounded(value):
    """Any decoded value: finite numbers, 64-bit non-negative integers, bounded strings and tuples."""
    if dataclasses.is_dataclass(value):
        value = [getattr(value, f.name) for f in dataclasses.fields(value)]
    if type(value) in (list, tuple):
        assert len(value) <= 1 << 20
        for item in value:
            check_bounded(item)
    elif type(value) is float:
        assert math.isfinite(value)
    elif isinstance(value, int):  # IntEnum states included
        assert 0 <= value < 2**64
    elif type(value) is str:
        assert len(value) <= 4 * MAX_NAME_LENGTH
    else:
        raise AssertionError(f"unexpected decoded value {value!r:.60}")


def decode_or_refuse(frame):
    """Decode ``frame``; any exception but ProtocolError fails the test (with the frame)."""
    try:
        message = p.decode(frame)
    except ProtocolError as exc:
        assert str(exc), "a ProtocolError must say why"
        event(f"refused: {str(exc)[:24]}")
        return None
    event(f"decoded: {type(message).__name__}")
    check_invariants(message)
    return message


@FUZZ
@given(near_valid_messages())
def test_near_valid_messages(fields):
    decode_or_refuse(msgpack.packb(fields, use_bin_type=True))


@FUZZ
@given(values)
def test_any_msgpack_value(value):
    decode_or_refuse(msgpack.packb(value, use_bin_type=True))


@FUZZ
@given(mutated_frames())
def test_mutated_valid_frames(frame):
    decode_or_refuse(frame)


@FUZZ
@given(st.binary(max_size=256))
def test_random_bytes(frame):
    decode_or_refuse(frame)


@FUZZ
@given(valid_messages)
def test_valid_messages_round_trip(message):
    assert decode_or_refuse(p.encode(message)) == message


def test_decode_never_mutates_what_it_was_given():
    frame = p.encode(p.Heartbeat((p.HostState("h", 1.0, 3.0, ("a",)),)))
    before = bytes(frame)
    p.decode(frame)
    assert frame == before


# -- resource bounds ----------------------------------------------------------------------------


def _nested_huge_arrays(depth):
    """[1, 3, [[[...]]]] where every nested array header claims 2**20 - 1 elements (5 bytes each)."""
    return b"\x93\x01\x03" + b"\xdd\x00\x0f\xff\xff" * depth


def test_a_frame_of_nested_huge_array_headers_is_refused():
    with pytest.raises(ProtocolError):
        p.decode(_nested_huge_arrays(1000))


def test_refusing_a_frame_allocates_in_proportion_to_the_frame():
    """Finding F1: msgpack allocated each array when it read its header, so 5 kB of nested
    headers claiming 2**20 elements each cost ~80 MB to refuse. Measured in bytes allocated
    (deterministic), not in time."""
    frame = _nested_huge_arrays(1000)  # 5 kB
    peak = _peak_bytes_to_refuse(frame)
    assert peak < 1_000_000, f"{peak} bytes allocated to refuse a {len(frame)}-byte frame"


def _peak_bytes_to_refuse(frame):
    """Peak bytes allocated while decode() refuses ``frame`` (which it must)."""
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            p.decode(frame)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("header", [b"\x9f", b"\xdc\x00\x20", b"\xdc\xff\xff"],
                         ids=["fixarray", "array16-at-cap", "array16-huge"])
def test_a_frame_just_under_the_fast_path_limit_full_of_headers_is_refused_cheaply(header):
    """Frames up to _FAST_FRAME skip the walk: their arrays are capped at _FAST_CONTAINER
    instead, which must keep the worst of them cheap to refuse. (The protocol refuses maps
    outright; the envelope's capped maps are tested in tests/oslo/test_wire.py.)"""
    frame = b"\x93\x01\x03" + header * ((p._FAST_FRAME - 3) // len(header))
    assert len(frame) <= p._FAST_FRAME
    peak = _peak_bytes_to_refuse(frame)
    assert peak < 400_000, f"{peak} bytes allocated to refuse a {len(frame)}-byte frame"
