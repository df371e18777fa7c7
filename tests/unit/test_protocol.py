import math

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpcmm import protocol as p
from rpcmm.errors import ProtocolError

MESSAGES = [
    p.Heartbeat((p.HostState("h1", 1.0, 3.0, ("a", "b")), p.HostState("h2.example.org", 0.5, 2.0, ()))),
    p.Unregister(("h1", "h2")),
    p.Lookup(7, "scheduler"),
    p.ListHosts(2**63 - 1),
    p.ListHosts(1, after="h1.example.org"),
    p.Hosts(0, ("h1", "10.0.0.1:9501")),
    p.Hosts(9, (), epoch=2**62, version=17, state=p.State.DEGRADED, data_age=4.5),
    p.Table(3, (p.TableRow("h1", 0.25, 1.0, 3.0, ("a",)),), p.State.WARMING),
    p.Table(3, (p.TableRow("h1", 0.25, 1.0, 3.0, ("a",)),), next_after="h1"),
    p.Error(4, "no"),
    p.Delta(5, 10, 7, "t", ("h1", "h2")),
    p.Snapshot(5, 10, "t", ()),
    p.Tick(5, 10, p.State.UP, 0.0, 0.5),
    p.Status(11),
    p.Health(11, p.State.UP, 5, 10, 3, 7, 40123, 0.2, "10.0.0.1:7701", 12.5),
    p.Health(12, p.State.WARMING, 5, 0, 0, 0, 1, 0.0, "", -1.0),
    p.Health(13, p.State.UP, 5, 10, 3, 7, 40123, 0.2, "", -1.0, max_registrations=5_000_000, refused=12),
    # synced from a peer whose name is as long as names go, with its port
    p.Health(14, p.State.UP, 5, 10, 3, 7, 40123, 0.2, "r" * 255 + ":65535", 1.0),
    p.Suspect(("h1",)),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message):
    assert p.decode(p.encode(message)) == message


@pytest.mark.parametrize("count", [p._FAST_CONTAINER, p._FAST_CONTAINER + 1, 300])
def test_a_small_frame_with_an_array_longer_than_the_fast_paths_cap_still_decodes(count):
    # Short names keep these frames under _FAST_FRAME: the fast unpack refuses the long array,
    # and the careful one, which takes over, must accept it.
    reply = p.Hosts(1, tuple(f"h{i}" for i in range(count)))
    frame = p.encode(reply)
    assert len(frame) <= p._FAST_FRAME
    assert p.decode(frame) == reply


def test_a_health_from_before_the_table_cap_still_decodes():
    old = pack(1, p.Kind.HEALTH, 7, 0, 5, 10, 3, 7, 40123, 0.2, "", -1.0)
    assert p.decode(old) == p.Health(7, p.State.UP, 5, 10, 3, 7, 40123, 0.2, "", -1.0, 0, 0)


def test_list_and_table_without_a_page_cursor_still_decode():
    # What registries and clients from before paging send: LIST for the whole table (after None:
    # answered with as much as a message holds), and TABLE as the whole table.
    assert p.decode(pack(1, p.Kind.LIST, 9)) == p.ListHosts(9, None)
    assert p.decode(p.encode(p.ListHosts(9, None))) == p.ListHosts(9, None)
    assert p.decode(pack(1, p.Kind.TABLE, 9, [["h", 0.5, 1.0, 3.0, ["t"]]], 0)) == \
        p.Table(9, (p.TableRow("h", 0.5, 1.0, 3.0, ("t",)),), p.State.UP, "")


@pytest.mark.parametrize("cursor, reason", [
    (7, "cursor"), ("bad cursor", "cursor"), ("x" * 256, "cursor"), (None, "cursor"), (b"h", "bin"),
])
def test_a_bad_page_cursor_is_refused(cursor, reason):
    with pytest.raises(ProtocolError, match=reason):
        p.decode(pack(1, p.Kind.LIST, 9, cursor))
    with pytest.raises(ProtocolError, match=reason):
        p.decode(pack(1, p.Kind.TABLE, 9, [], 0, cursor))


def _page(*hosts, next_after=""):
    return p.Table(1, tuple(p.TableRow(h, 0.0, 1.0, 3.0, ("t",)) for h in hosts), p.State.UP, next_after)


@pytest.mark.parametrize("page, after", [
    (_page("a", "b", next_after="b"), ""), (_page("c"), "b"), (_page(), ""), (_page(), "zzz"),
])
def test_a_proper_page_passes_the_check(page, after):
    p.check_page(page, after)


@pytest.mark.parametrize("page, after, reason", [
    (_page("b", "a"), "", "not in order"),
    (_page("a", "a"), "", "not in order"),
    (_page("a"), "a", "not in order"),  # the cursor's own host again
    (_page("a", "b", next_after="a"), "", "not its last host"),
    (_page(next_after="x"), "", "not its last host"),
])
def test_a_page_that_could_make_a_reader_loop_or_repeat_fails_the_check(page, after, reason):
    with pytest.raises(ProtocolError, match=reason):
        p.check_page(page, after)


def test_a_heartbeat_is_compact():
    frame = p.encode(p.Heartbeat((p.HostState("compute-017.example.org", 1.0, 3.0,
                                              tuple(f"topic-{i}" for i in range(10))),)))
    assert len(frame) < 140


def _records(count, topics, topic_chars, host_chars=12):
    return [p.HostState(f"h{i:0{host_chars - 1}d}", 1.0, 3.0,
                        tuple(f"t{j:03d}" + "é" * ((topic_chars - 4) // 2) for j in range(topics)))
            for i in range(count)]


@pytest.mark.parametrize("records", [
    _records(500, 10, 252),  # 2.5 kB records: 1.3 MB in one message before batching by bytes
    _records(3, 1024, 500),  # records of about half a message each
    _records(9000, 1, 4),  # small records: the count limit splits them
    _records(1, 1, 4),
], ids=["many-large", "half-message", "many-small", "one"])
def test_heartbeats_fit_the_registry_s_limits_and_keep_every_record_in_order(records):
    messages = list(p.heartbeats(records))
    assert [r for m in messages for r in m.states] == records
    for message in messages:
        assert len(message.states) <= p.MAX_HOSTS_PER_MESSAGE
        assert len(p.encode(message)) <= p.MAX_MESSAGE_BYTES
        assert p.decode(p.encode(message)) == message  # the registry takes each
    # As few as fit: any two neighbours together would break a limit.
    for first, second in zip(messages, messages[1:]):
        joined = p.Heartbeat(first.states + second.states)
        assert (len(joined.states) > p.MAX_HOSTS_PER_MESSAGE
                or len(p.encode(joined)) > p.MAX_MESSAGE_BYTES * 0.9)


def pack(*fields):
    return msgpack.packb(list(fields), use_bin_type=True)


@pytest.mark.parametrize("frame, reason", [
    (b"", "not a msgpack message"),
    (pack(1, 3, 7, "t")[:-1], "not a msgpack message"),  # truncated
    (pack(1, 3, 7, "t") + b"\x00", "not a msgpack message"),  # trailing bytes
    (msgpack.packb({"v": 1}), "not a msgpack message"),  # maps are not used
    (pack(1), "expected an array"),
    (msgpack.packb(5), "expected an array"),
    (pack(2, 3, 7, "t"), "unsupported protocol version 2"),
    (pack(True, 3, 7, "t"), "unsupported protocol version"),
    (pack(1, 99), "unknown message kind 99"),
    (pack(1, "3", 7, "t"), "unknown message kind"),
    (pack(1, 3, 7), "truncated"),
    (pack(1, 3, -1, "t"), "request id"),
    (pack(1, 3, 7, 5), "not a name"),
    (pack(1, 3, 7, ""), "not a name"),
    (pack(1, 3, 7, "a b"), "white space"),
    (pack(1, 3, 7, b"bytes"), "not a msgpack message"),  # binary is refused outright
    (b"\x94\x01\x03\x07\xa2\xff\xfe", "UTF-8"),
    (pack(1, 1, "hosts"), "must be an array"),
    (pack(1, 1, [["h", 1.0, 3.0]]), "host record"),
    (pack(1, 1, [["h", 0, 3.0, []]]), "interval"),
    (pack(1, 1, [["h", 1.0, math.inf, []]]), "ttl"),
    (pack(1, 1, [["h", 1.0, math.nan, []]]), "ttl"),
    (pack(1, 1, [["h", True, 3.0, []]]), "interval"),
    (pack(1, 1, [["h", 1.0, 3.0, "t"]]), "topics must be an array"),
    (pack(1, 1, [["h", 1.0, 3.0, [1]]]), "not a name"),
    (pack(1, 1, [["h h", 1.0, 3.0, ["t"]]]), "white space"),
    (pack(1, 1, [["h", 1.0, 3.0, ["t"] * (p.MAX_TOPICS_PER_HOST + 1)]]), "exceed the limit"),
    (pack(1, 1, [["h", 1.0, 3.0, []]] * (p.MAX_HOSTS_PER_MESSAGE + 1)), "exceed the limit"),
    (pack(1, 3, 7, "x" * 256), "not a name"),
    (pack(1, 3, 7, "x" * 5000), "not a msgpack message"),  # beyond the string limit
    (b"\x00" * (p.MAX_MESSAGE_BYTES + 1), "exceeds"),
    (pack(1, 5, 1, ["h"], 1, 1, 9, 0.0), "unknown registry state 9"),
    (pack(1, 5, 1, ["h"], 1, 1, True, 0.0), "unknown registry state"),
    (pack(1, 5, 1, ["h"], -1, 1, 0, 0.0), "epoch"),
    (pack(1, 8, 1, 2, 1, "t"), "truncated"),
    (pack(1, 8, 1, 2, 2, "t", []), "must be above its previous"),
    (pack(1, 10, 1, 2, 0, 0.0, 0.0), "tick interval"),
    (pack(1, 12, 1, 0, 1, 1, 1, 1, 70000, 0.0, "", -1.0), "feed port"),
    (pack(1, 12, 1, 0, 1, 1, 1, 1, 1, 0.0, "", -2.0), "synced_age"),
    (pack(1, 13, "h"), "must be an array"),
])
def test_malformed_frames_raise_protocol_error_with_a_reason(frame, reason):
    with pytest.raises(ProtocolError, match=reason):
        p.decode(frame)


@pytest.mark.parametrize("message", [
    p.Heartbeat((p.HostState("h1", 1.0, 3.0, ("a", "b", "a")),)),
    p.Table(3, (p.TableRow("h1", 0.25, 1.0, 3.0, ("a", "a")),)),
], ids=["heartbeat", "table"])
def test_a_topic_listed_twice_for_one_host_is_refused(message):
    # A registry counts (and caps) distinct topics: repeats would be stored and never counted.
    with pytest.raises(ProtocolError, match="more than once"):
        p.decode(p.encode(message))


def _record(topic_count):
    """A host and ``topic_count`` topics of 255 four-byte characters (1,020 bytes each): with
    ASCII names the topic cap keeps a record far below MAX_RECORD_BYTES, with these not."""
    return "h", tuple(f"{i:04d}" + "\U0001f600" * 251 for i in range(topic_count))


def test_a_host_record_too_large_to_list_is_refused():
    host, topics = _record(p.MAX_TOPICS_PER_HOST)  # 1 MB of names, in a frame under 1 MiB
    frame = p.encode(p.Heartbeat((p.HostState(host, 1.0, 3.0, topics),)))
    assert len(frame) <= p.MAX_MESSAGE_BYTES
    with pytest.raises(ProtocolError, match="add up to"):
        p.decode(frame)
    with pytest.raises(ProtocolError, match="add up to"):  # a peer's page may not bring one either
        p.decode(p.encode(p.Table(1, (p.TableRow(host, 0.0, 1.0, 3.0, topics),))))


def test_a_host_record_under_the_bound_decodes():
    host, topics = _record(p.MAX_RECORD_BYTES // 1020 - 1)
    message = p.Heartbeat((p.HostState(host, 1.0, 3.0, topics),))
    assert p.decode(p.encode(message)) == message


def test_extra_trailing_fields_are_ignored_for_forward_compatibility():
    assert p.decode(pack(1, 3, 7, "t", "future")) == p.Lookup(7, "t")


def test_encode_refuses_non_messages():
    with pytest.raises(TypeError):
        p.encode(object())


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_but_protocol_error(frame):
    try:
        p.decode(frame)
    except ProtocolError:
        pass


json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 8), json_like, json_like, json_like)
def test_well_framed_but_wrongly_typed_fields_raise_protocol_error(kind, a, b, c):
    try:
        p.decode(pack(1, kind, a, b, c))
    except ProtocolError:
        pass
