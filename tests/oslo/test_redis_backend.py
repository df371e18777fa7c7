"""The driver with the Redis backend: transport_url = zmq+redis://host:port/db."""

import pytest

import oslo_messaging
from tests.contract.redis_process import RedisProcess, redis_executable
from tests.oslo.test_rpc import Endpoint, client

pytestmark = [pytest.mark.functional, pytest.mark.timeout(60)]


@pytest.fixture
def url(tmp_path):
    """Overrides conftest's registry URL: peers are found through a redis-server on loopback."""
    server = RedisProcess(redis_executable(), tmp_path).start()
    yield f"zmq+redis://127.0.0.1:{server.port}/0"
    server.stop()


def test_calls_casts_fanout_and_named_servers_through_redis(transports):
    names = ["node-1.example.org", "node-2"]
    endpoints = {name: Endpoint(name) for name in names}
    for name, endpoint in endpoints.items():
        transports.server(oslo_messaging.Target(topic="work", server=name), [endpoint])
    transport = transports.rpc()
    answers = [client(transport, topic="work").call({}, "whoami") for _ in range(6)]
    assert sorted(answers[:2]) == names and answers == answers[:2] * 3  # strict round robin
    assert {client(transport, topic="work", server="node-2").call({}, "whoami") for _ in range(4)} == {"node-2"}
    client(transport, topic="work", fanout=True).cast({}, "record", value="all")
    for endpoint in endpoints.values():
        assert endpoint.cast_arrived.wait(5)
        assert endpoint.casts == ["all"]


def test_a_topic_nobody_serves_times_out_in_time(transports):
    with pytest.raises(oslo_messaging.MessagingTimeout):
        client(transports.rpc(), timeout=0.5, topic="nobody").call({}, "whoami")
