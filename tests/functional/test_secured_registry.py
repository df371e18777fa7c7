"""A registry under CURVE with a topic policy: who gets in, on every path, and what they may claim."""

import json
import pathlib
import subprocess
import sys

import pytest
import zmq

from rpcmm import protocol
from rpcmm.errors import RegistryUnavailable
from rpcmm.policy import TopicPolicy
from rpcmm.security import (
    CurveClientConfig,
    CurveServerConfig,
    generate_keypair,
    secure_client_socket,
)
from rpcmm.testing import start_register, start_registry, wait_for, write_seed


@pytest.fixture
def keys(tmp_path):
    """Key pairs: the registries', an authorized client's, and a stranger's (not authorized)."""
    authorized = tmp_path / "authorized"
    for name in ("registry", "client"):
        public, _ = generate_keypair(tmp_path / "keys", name)
        authorized.mkdir(exist_ok=True)
        (authorized / f"{name}.key").write_bytes(pathlib.Path(public).read_bytes())
    generate_keypair(tmp_path / "keys", "stranger")
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"keys": {"client": {"hosts": ["compute-*"], "topics": ["compute", "compute.*"]}}}))
    k = tmp_path / "keys"
    return {
        "server": CurveServerConfig(str(k / "registry.key_secret"), str(authorized)),
        "client": CurveClientConfig(str(k / "client.key_secret"), str(k / "registry.key")),
        "stranger": CurveClientConfig(str(k / "stranger.key_secret"), str(k / "registry.key")),
        "policy": str(policy),
        "dir": tmp_path,
        "authorized": str(authorized),
    }


@pytest.fixture
def secured(start_server, keys):
    policy = TopicPolicy.load(keys["policy"], authorized_keys_dir=keys["authorized"])
    return start_server(curve=keys["server"].load(), policy=policy)


def test_an_authorized_key_registers_looks_up_lists_and_follows_the_feed(secured, seed_for, make_matchmaker, keys):
    seed = seed_for(secured)
    client = keys["client"].load()
    host_side = make_matchmaker(seed, curve=client, live=False)
    watcher = make_matchmaker(seed, curve=client, cache_max_age=60.0)
    host_side.register("compute", "compute-1")
    wait_for(lambda: watcher.hosts("compute") == ("compute-1",))
    wait_for(lambda: watcher._feed.live_epoch == secured.epoch)
    host_side.register("compute", "compute-2")  # arrives through the (secured) live feed
    wait_for(lambda: watcher.hosts("compute") == ("compute-1", "compute-2"), timeout=2)
    assert [r.host for r in watcher.table()[0]] == ["compute-1", "compute-2"]
    assert watcher.status()[0][1].hosts == 2


@pytest.mark.parametrize("who", ["nobody", "stranger"])
def test_unauthenticated_and_unknown_keys_get_nothing_on_any_path(secured, seed_for, make_matchmaker, keys, who):
    seed = seed_for(secured)
    curve = None if who == "nobody" else keys[who].load()
    outsider = make_matchmaker(seed, curve=curve, live=False, lookup_timeout=0.2)
    outsider.register("compute", "compute-9")  # register and heartbeat: casts that never land
    outsider.start_heartbeat()
    with pytest.raises(RegistryUnavailable):
        outsider.hosts("compute")  # lookup
    with pytest.raises(RegistryUnavailable):
        outsider.table()  # list
    assert outsider.status() == [(secured.endpoint, None)]  # status
    assert len(secured.table) == 0 and secured.stats.received == 0
    # The live feed refuses the handshake too: a SUB without the right key receives nothing.
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        secure_client_socket(sub, curve)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"tcp://127.0.0.1:{secured.feed_port}")
    assert not sub.poll(3 * 1000 * secured.tick_interval)  # ticks are flowing, just not to it
    sub.close()
    context.term()


def test_the_policy_refuses_other_hosts_and_topics_per_record(secured, seed_for, make_matchmaker, keys, caplog):
    seed = seed_for(secured)
    client = make_matchmaker(seed, curve=keys["client"].load(), live=False, cache_max_age=0.0)
    client._client.cast(protocol.Heartbeat((
        protocol.HostState("compute-1", 1.0, 3.0, ("compute",)),  # allowed
        protocol.HostState("compute-2", 1.0, 3.0, ("scheduler",)),  # topic not granted
        protocol.HostState("sched-1", 1.0, 3.0, ("compute",)),  # host not granted
        # One topic not granted: it serves the others (every full heartbeat would otherwise be
        # refused, and the host expire after joining topic by topic).
        protocol.HostState("compute-3", 1.0, 3.0, ("compute", "scheduler")),
    )))
    wait_for(lambda: secured.stats.refused == 3)
    assert client.hosts("compute") == ("compute-1", "compute-3") and client.hosts("scheduler") == ()
    # Logs name the key as the policy does (its .key file's name), with the key itself.
    assert "refused key client (" in caplog.text and "host compute-3 for topics scheduler" in caplog.text
    client._client.cast(protocol.Unregister(("sched-1",)))  # may not unregister others' hosts
    wait_for(lambda: secured.stats.refused == 4)


def test_keys_granted_nothing_cannot_drop_a_host_by_reporting_it(start_server, seed_for, make_matchmaker, keys):
    # Two reports drop a host at once; keys that may not unregister it may not report it either.
    k, authorized = keys["dir"] / "keys", pathlib.Path(keys["authorized"])
    for name in ("watcher-a", "watcher-b"):  # authorized to connect, granted nothing by the policy
        public, _ = generate_keypair(k, name)
        (authorized / f"{name}.key").write_bytes(pathlib.Path(public).read_bytes())
    policy = TopicPolicy.load(keys["policy"], authorized_keys_dir=keys["authorized"])
    server = start_server(curve=keys["server"].load(), policy=policy)
    seed = seed_for(server)
    make_matchmaker(seed, curve=keys["client"].load(), live=False).register("compute", "compute-1")
    wait_for(lambda: "compute-1" in server.table)
    for name in ("watcher-a", "watcher-b"):
        curve = CurveClientConfig(str(k / f"{name}.key_secret"), str(k / "registry.key")).load()
        make_matchmaker(seed, curve=curve, live=False).report_unreachable("compute-1")
    wait_for(lambda: server.stats.refused >= 2)
    assert "compute-1" in server.table and server.stats.dropped_suspects == 0


def test_a_key_at_its_host_quota_gets_no_more_hosts_until_one_leaves(start_server, seed_for, make_matchmaker,
                                                                       keys):
    policy_file = keys["dir"] / "quota.json"
    policy_file.write_text(json.dumps({"keys": {
        "client": {"hosts": ["compute-*"], "topics": ["compute"], "max_hosts": 2},
        "registry": {"hosts": ["*"], "topics": ["*"]},  # no quota: another key's hosts never count
    }}))
    policy = TopicPolicy.load(str(policy_file), authorized_keys_dir=keys["authorized"])
    server = start_server(curve=keys["server"].load(), policy=policy)
    seed = seed_for(server)
    client = make_matchmaker(seed, curve=keys["client"].load(), live=False, cache_max_age=0.0)
    client._client.cast(protocol.Heartbeat(tuple(
        protocol.HostState(f"compute-{i}", 1.0, 30.0, ("compute",)) for i in range(3))))
    wait_for(lambda: server.stats.refused_quota == 1)
    assert client.hosts("compute") == ("compute-0", "compute-1")
    client._client.cast(protocol.Unregister(("compute-0",)))  # frees one place
    client._client.cast(protocol.Heartbeat((protocol.HostState("compute-2", 1.0, 30.0, ("compute",)),)))
    wait_for(lambda: client.hosts("compute") == ("compute-1", "compute-2"))
    assert server.stats.refused_quota == 1


def rpcmm(*args):
    return subprocess.run([sys.executable, "-m", "rpcmm", *args], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)


def test_the_cli_forms_with_keys(keys):
    k = keys["dir"] / "keys"
    registry_keys = ["--secret-key", str(k / "registry.key_secret"), "--authorized-keys", keys["authorized"]]
    client_keys = ["--secret-key", str(k / "client.key_secret"), "--server-key", str(k / "registry.key")]
    bootstrap = write_seed(keys["dir"] / "bootstrap.json")
    with start_registry(bootstrap, extra_args=registry_keys + ["--policy", keys["policy"]]) as registry:
        seed = str(write_seed(keys["dir"] / "seed.json", [registry.endpoint]))
        with start_register(seed, "compute-1", ["compute"], interval=0.2, ttl=1.0, extra=client_keys):
            wait_for(lambda: json.loads(rpcmm("lookup", "--seed", seed, "--json", *client_keys, "compute").stdout
                                        or "[]") == ["compute-1"], timeout=10)
            assert json.loads(rpcmm("hosts", "--seed", seed, "--json", *client_keys).stdout)["hosts"][0]["host"] \
                == "compute-1"
            assert rpcmm("status", "--seed", seed, *client_keys).returncode == 0
            plain = rpcmm("lookup", "--seed", seed, "--timeout", "0.2", "compute")
            assert plain.returncode == 1 and "no registry answered" in plain.stderr
        half = rpcmm("lookup", "--seed", seed, "--secret-key", str(k / "client.key_secret"), "compute")
        assert half.returncode == 1 and "go together" in half.stderr
