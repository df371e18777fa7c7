"""oslo addresses as rpcmm names: typed, unambiguous, valid."""

import pytest

from rpcmm.addressing import MAX_NAME_LENGTH, validate_name
from rpcmm.errors import ProtocolError
from rpcmm.oslo.names import NotifyTopic, PoolMember, RpcServer, RpcTopic

pytestmark = pytest.mark.timeout(10)


def test_names_are_valid_and_distinct_by_kind():
    names = [RpcTopic("nova", "compute").name, RpcServer("nova", "compute", "host").name,
             NotifyTopic("nova", "compute").name]
    assert len(set(names)) == 3
    for name in names:
        validate_name("topic", name)


@pytest.mark.parametrize("a, b", [
    # Dots and slashes inside components never make two addresses collide.
    (RpcServer("x", "compute.host", "a"), RpcServer("x", "compute", "host.a")),
    (RpcServer("x", "a/b", "c"), RpcServer("x", "a", "b/c")),
    (RpcTopic("a/b", "c"), RpcTopic("a", "b/c")),
    (RpcServer("x", "t", "node-1.example.org"), RpcServer("x", "t", "node-1.example")),
])
def test_components_cannot_run_into_each_other(a, b):
    assert a.name != b.name


def test_white_space_and_long_names_still_make_valid_names():
    spaced = RpcServer("ex", "my topic", "a host\twith tabs").name
    validate_name("topic", spaced)
    long_a = RpcServer("ex", "t", "h" * 400).name
    long_b = RpcServer("ex", "t", "h" * 401).name
    assert len(long_a) <= MAX_NAME_LENGTH and long_a != long_b
    validate_name("topic", long_a)


def test_pool_members_split_back_into_pool_and_address():
    default = PoolMember(None, "127.0.0.1:4000").host
    named = PoolMember("p@ol", "127.0.0.1:4000").host
    other = PoolMember("-", "127.0.0.1:4000").host
    assert len({PoolMember.split(h)[0] for h in (default, named, other)}) == 3
    assert {PoolMember.split(h)[1] for h in (default, named, other)} == {"127.0.0.1:4000"}
    long_pool = PoolMember("p" * 400, "[::1]:4000").host
    validate_name("host", long_pool)
    assert PoolMember.split(long_pool)[1] == "[::1]:4000"


@pytest.mark.parametrize("bad", ["no-separator", "@127.0.0.1:1", "-@"])
def test_foreign_host_names_are_refused(bad):
    with pytest.raises(ProtocolError):
        PoolMember.split(bad)


def test_one_pool_gets_one_token_whatever_its_members_addresses():
    addresses = ("10.0.0.5:40000", "10.0.0.15:40000", "[fd00:1234:5678:9abc:def0:1234:5678:9abc]:40000")
    for length in range(1, 300):
        hosts = [PoolMember("p" * length, address).host for address in addresses]
        assert len({PoolMember.split(host)[0] for host in hosts}) == 1, length
        for host in hosts:
            validate_name("host", host)
