"""The driver with CURVE keys: authenticated, encrypted RPC; strangers refused on every path."""

import contextlib
import pathlib
import shutil

import pytest

import oslo_messaging
from rpcmm.errors import ConfigurationError
from rpcmm.security import CurveServerConfig, generate_keypair
from rpcmm.server import RegistryServer
from tests.oslo.test_rpc import Endpoint, client

pytestmark = [pytest.mark.functional, pytest.mark.timeout(60)]


@pytest.fixture
def keys(tmp_path):
    """Key pairs and the directories that admit them.

    ``svc-a`` and ``svc-b`` are trusted everywhere; ``registry-only`` may use the registry but
    not call anyone; ``stranger`` is known nowhere. ``rpc`` is the cluster-wide RPC pair.
    """
    pairs = tmp_path / "keys"
    for name in ("registry", "rpc", "svc-a", "svc-b", "registry-only", "stranger"):
        generate_keypair(pairs, name)

    def admit(directory, *names):
        directory.mkdir()
        for name in names:
            shutil.copy(pairs / f"{name}.key", directory / f"{name}.key")
        return str(directory)

    return {
        "pairs": pairs,
        "registry_authorized": admit(tmp_path / "registry-authorized", "svc-a", "svc-b", "registry-only"),
        "rpc_authorized": admit(tmp_path / "rpc-authorized", "svc-a", "svc-b"),
    }


@pytest.fixture
def registry(keys):
    """Overrides conftest's registry: a CURVE registry admitting the registry-authorized keys."""
    pairs = keys["pairs"]
    curve = CurveServerConfig(str(pairs / "registry.key_secret"), keys["registry_authorized"]).load()
    server = RegistryServer("127.0.0.1:0", sweep_interval=0.05, curve=curve).start()
    yield server
    server.stop()


def options(keys, name, rpc_authorized=True):
    pairs = keys["pairs"]
    return {
        "secret_key_file": str(pairs / f"{name}.key_secret"),
        "rpc_secret_key_file": str(pairs / "rpc.key_secret"),
        "registry_key_file": str(pairs / "registry.key"),
        "authorized_keys_dir": keys["rpc_authorized"],
    }


def serve(transports, keys, name, topic="secured"):
    endpoint = Endpoint(name)
    transport = transports.rpc(**options(keys, name))
    transports.server(oslo_messaging.Target(topic=topic, server=name), [endpoint], transport=transport)
    return endpoint


def test_trusted_peers_call_cast_and_fan_out_over_curve(transports, keys):
    serve(transports, keys, "svc-b")
    transport = transports.rpc(**options(keys, "svc-a"))
    assert client(transport, topic="secured").call({}, "whoami") == "svc-b"
    assert client(transport, topic="secured", server="svc-b").call({}, "add", a=1, b=2) == 3


@pytest.mark.parametrize("caller", ["no keys", "stranger", "registry-only"])
def test_callers_without_an_admitted_key_get_nothing_through(transports, keys, caller):
    endpoint = serve(transports, keys, "svc-b")
    transport = transports.rpc() if caller == "no keys" else transports.rpc(**options(keys, caller))
    c = client(transport, timeout=1.0, topic="secured")
    # Refused by the registry (no lookup answers: MessageDeliveryFailure, or MessagingTimeout
    # when the call's deadline comes first) or, with a key the registry admits, by the listener
    # (the call never arrives: MessagingTimeout).
    refused = (oslo_messaging.MessagingTimeout,)
    if caller != "registry-only":
        refused += (oslo_messaging.MessageDeliveryFailure,)
    with pytest.raises(refused):
        c.call({}, "whoami")
    with contextlib.suppress(oslo_messaging.MessageDeliveryFailure):
        c.cast({}, "record", value="sneaky")
    # A trusted call made after the cast arrives, so the cast would have arrived before it.
    trusted = client(transports.rpc(**options(keys, "svc-a")), topic="secured")
    assert trusted.call({}, "whoami") == "svc-b"
    assert endpoint.casts == []


def test_a_stranger_cannot_become_a_listener(transports, keys):
    # Its listener starts, but its registration never reaches the registry: nobody is sent to it.
    serve(transports, keys, "stranger", topic="hijack")
    trusted = client(transports.rpc(**options(keys, "svc-a")), timeout=1.0, topic="hijack")
    with pytest.raises(oslo_messaging.MessagingTimeout):
        trusted.call({}, "whoami")


def test_half_configured_keys_are_a_clear_error(transports, keys):
    transport = transports.rpc(secret_key_file=str(pathlib.Path(keys["pairs"]) / "svc-a.key_secret"))
    with pytest.raises(ConfigurationError, match="rpc_secret_key_file"):
        client(transport, timeout=1.0, topic="secured").call({}, "whoami")
