import pytest

from rpcmm.addressing import Anycast, Directed, Endpoint, Fanout, is_clean_text, validate_name
from rpcmm.errors import ConfigurationError


@pytest.mark.parametrize("text, host, port, address", [
    ("127.0.0.1:7701", "127.0.0.1", 7701, "tcp://127.0.0.1:7701"),
    ("registry-1.example.org:1", "registry-1.example.org", 1, "tcp://registry-1.example.org:1"),
    ("[::1]:7701", "::1", 7701, "tcp://[::1]:7701"),
    ("[fd00::a:3]:65535", "fd00::a:3", 65535, "tcp://[fd00::a:3]:65535"),
    ("reg_a.example:7701", "reg_a.example", 7701, "tcp://reg_a.example:7701"),
    ("*:7701", "*", 7701, "tcp://*:7701"),
])
def test_endpoint_parse_and_format(text, host, port, address):
    endpoint = Endpoint.parse(text)
    assert (endpoint.host, endpoint.port) == (host, port)
    assert endpoint.zmq_address() == address
    assert str(endpoint) == text


@pytest.mark.parametrize("text", ["", "host", ":1", "host:", "host:port", "::1:7701", "[::1]", "a b:1",
                                  "host:65536", "tcp://h:1", None, 7701,
                                  # names libzmq refuses to connect to (EINVAL), refused when read
                                  "_reg:7701", "-reg:7701", "reg~1:7701", "reg+1:7701", "régistry.example:7701"])
def test_endpoint_rejects(text):
    with pytest.raises(ConfigurationError):
        Endpoint.parse(text)


def test_keys_are_typed_values():
    assert Anycast("t") == Anycast("t")
    assert Directed("t", "h.example.org") != Directed("t", "h")
    assert len({Fanout("t"), Fanout("t"), Anycast("t")}) == 2
    with pytest.raises(ConfigurationError):
        Directed("t", "")
    with pytest.raises(ConfigurationError):
        Anycast("two words")


@pytest.mark.parametrize("name, ok", [
    ("compute.node-1.example.org", True), ("10.0.0.5:9501", True), ("züri", True),
    ("a b", False), ("a\tb", False), ("a\nb", False), ("a\x00", False), ("zero\u200bwidth", False),
    ("x" * 255, True), ("x" * 256, False),
])
def test_names(name, ok):
    if ok:
        assert validate_name("host", name) == name
        assert is_clean_text(name)
    else:
        with pytest.raises(ConfigurationError):
            validate_name("host", name)
