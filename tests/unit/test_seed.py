import pathlib

import pytest

from rpcmm.addressing import Endpoint
from rpcmm.errors import SeedError
from rpcmm.seed import REGISTRY_KEY, Seed, load_seed, parse_seed

SEEDS = pathlib.Path(__file__).resolve().parents[2] / "seeds"


def test_registries_and_ring_are_read():
    seed = parse_seed('{"rpcmm-registry": ["10.0.0.1:7701", "[fd00::3]:7702"], "scheduler": ["c1", "c2"]}')
    assert seed.registries == (Endpoint("10.0.0.1", 7701), Endpoint("fd00::3", 7702))
    assert seed.static_hosts("scheduler") == ("c1", "c2")
    assert seed.static_hosts("compute") == ()
    assert REGISTRY_KEY not in seed.ring


def test_a_plain_openstack_ring_is_a_valid_seed():
    seed = parse_seed('{"scheduler": ["c1"], "compute": ["n1", "n2"]}')
    assert seed.registries == ()
    assert dict(seed.ring) == {"scheduler": ("c1",), "compute": ("n1", "n2")}


def test_the_ring_is_read_only():
    seed = parse_seed('{"scheduler": ["c1"]}')
    with pytest.raises(TypeError):
        seed.ring["x"] = ("y",)


@pytest.mark.parametrize("path", sorted(SEEDS.glob("*.json")), ids=lambda p: p.name)
def test_every_example_seed_loads(path):
    assert isinstance(load_seed(path), Seed)


@pytest.mark.parametrize("text, key, value, reason", [
    ('["a"]', None, None, "must be a JSON object"),
    ('{"t": "host"}', "t", "host", "must be a list of host names, not a string"),
    ('{"t": [1]}', "t", 1, "host must be a string"),
    ('{"t": [""]}', "t", "", "must not be empty"),
    ('{"t": ["a b"]}', "t", "a b", "white space"),
    ('{"t": ["a", "a"]}', "t", "a", "listed twice"),
    ('{"": ["a"]}', "", None, "topic must not be empty"),
    ('{"rpcmm-registry": "h:1"}', REGISTRY_KEY, "h:1", "must be a list"),
    ('{"rpcmm-registry": ["h"]}', REGISTRY_KEY, "h", "is not HOST:PORT"),
    ('{"rpcmm-registry": ["h:99999"]}', REGISTRY_KEY, "h:99999", "above 65535"),
    ('{"rpcmm-registry": ["h:0"]}', REGISTRY_KEY, "h:0", "port 0"),
    ('{"rpcmm-registry": ["::1:7701"]}', REGISTRY_KEY, "::1:7701", "in brackets"),
    ('{"rpcmm-registry": ["h:1", "h:1"]}', REGISTRY_KEY, "h:1", "listed twice"),
    ('{"rpcmm-registry": ["*:7701"]}', REGISTRY_KEY, "*:7701", "binds every interface"),
    ('{"rpcmm-registry": ["_reg:7701"]}', REGISTRY_KEY, "_reg:7701", "is not HOST:PORT"),
    ('{"rpcmm-registry": []}', REGISTRY_KEY, [], "lists no registries"),
    ('{"rpcmm-registry": ["999.1.1.1:7701"]}', REGISTRY_KEY, "999.1.1.1:7701", "is not an IPv4 address"),
    ('{"rpcmm-registry": ["[fd00:::1:2]:7701"]}', REGISTRY_KEY, "[fd00:::1:2]:7701", "is not an IPv6 address"),
    ('{"rpcmm-regisrty": ["h:1"]}', "rpcmm-regisrty", None, "unknown reserved key"),
    ('{"rpcmm-registry": ["h:1"], "t": [], "rpcmm-registry": ["h:2"]}', REGISTRY_KEY, None, "appears twice"),
    ('{"t": {}}', "t", {}, "not an object"),
    ('{"t": null}', "t", None, "not null"),
])
def test_errors_name_the_key_the_value_and_why(text, key, value, reason):
    with pytest.raises(SeedError) as caught:
        parse_seed(text, source="ring.json")
    error = caught.value
    assert (error.path, error.key, error.value) == ("ring.json", key, value)
    assert reason in str(error)
    assert str(error).startswith("ring.json")


@pytest.mark.parametrize("text, reason", [
    ("[" * 100_000 + "]" * 100_000, "nested too deep"),
    ('{"t": [' + "9" * 5000 + "]}", "invalid JSON"),
], ids=["deep", "huge-number"])
def test_json_python_cannot_read_is_a_seed_error(text, reason):
    with pytest.raises(SeedError, match=reason):
        parse_seed(text, source="x.json")


def test_invalid_json_gives_line_and_column():
    with pytest.raises(SeedError, match=r"line 2 column 1"):
        parse_seed('{"a": ["b"],\n}', source="x.json")


def test_unreadable_and_non_utf8_files(tmp_path):
    with pytest.raises(SeedError, match="cannot read"):
        load_seed(tmp_path / "missing.json")
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'{"t\xe9": []}')
    with pytest.raises(SeedError, match="not UTF-8"):
        load_seed(bad)


def test_to_json_round_trips():
    seed = parse_seed('{"rpcmm-registry": ["[::1]:7701"], "t": ["h1"]}')
    again = parse_seed(seed.to_json())
    assert again.registries == seed.registries and dict(again.ring) == dict(seed.ring)


def test_build_validates_like_a_file():
    with pytest.raises(SeedError):
        Seed.build(ring={"t": ["bad host"]})


def test_a_seed_may_select_redis_instead_of_registries():
    seed = parse_seed('{"rpcmm-redis": "redis://127.0.0.1:6379/0", "t": ["h"]}')
    assert seed.redis == "redis://127.0.0.1:6379/0" and seed.registries == ()
    assert parse_seed(seed.to_json()).redis == seed.redis


@pytest.mark.parametrize("text, reason", [
    ('{"rpcmm-redis": 5}', "rpcmm-redis"),
    ('{"rpcmm-redis": "http://x"}', "rpcmm-redis"),
    ('{"rpcmm-redis": "redis://h:1", "rpcmm-registry": ["h:2"]}', "selects one backend"),
    ('{"rpcmm-redis": "redis://h:1/\u00b2"}', "must be a number"),
    ('{"rpcmm-redis": "redis://h:1/' + "1" * 5000 + '"}', "must be a number"),
])
def test_bad_redis_selections(text, reason):
    with pytest.raises(SeedError, match=reason):
        parse_seed(text)
