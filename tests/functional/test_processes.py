"""End to end with real processes: the CLI contract, kill -9, registry death and restart."""

import json
import signal
import subprocess
import sys
import time

import pytest

from rpcmm.testing import start_register, start_registry, wait_for, write_seed


def rpcmm(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "rpcmm", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def cluster(tmp_path):
    """Two registry processes on OS-picked ports and the seed that lists them."""
    bootstrap = write_seed(tmp_path / "bootstrap.json")
    with start_registry(bootstrap, extra_args=["--sweep-interval", "0.05"]) as first, \
            start_registry(bootstrap, extra_args=["--sweep-interval", "0.05"]) as second:
        seed = write_seed(tmp_path / "seed.json", [first.endpoint, second.endpoint], ring={"ringed": ["s1"]})
        yield seed, first, second


def lookup(seed, topic):
    result = rpcmm("lookup", "--seed", str(seed), "--json", "--timeout", "0.3", topic)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_cli_contract_end_to_end(cluster):
    seed, first, second = cluster
    with start_register(seed, "c1.example.org", ["scheduler", "compute"], interval=0.1, ttl=0.5) as host:
        wait_for(lambda: lookup(seed, "scheduler") == ["c1.example.org"], timeout=10)
        plain = rpcmm("lookup", "--seed", str(seed), "compute")
        assert plain.returncode == 0 and plain.stdout == "c1.example.org\n" and plain.stderr == ""
        as_json = rpcmm("lookup", "--seed", str(seed), "--json", "compute")
        assert json.loads(as_json.stdout) == ["c1.example.org"] and as_json.stderr == ""
        table = rpcmm("hosts", "--seed", str(seed), "--json")
        document = json.loads(table.stdout)
        assert document["registry"] in (str(first.endpoint), str(second.endpoint))
        (row,) = document["hosts"]
        assert row["host"] == "c1.example.org" and row["topics"] == ["compute", "scheduler"]
        assert 0 <= row["age"] < 2
        text = rpcmm("hosts", "--seed", str(seed))
        assert "c1.example.org" in text.stdout and "compute scheduler" in text.stdout
        assert host.stop() == 0  # SIGTERM: unregisters, then exits 0
    # Unregistered at once, not after its TTL.
    assert lookup(seed, "scheduler") == []
    assert lookup(seed, "ringed") == ["s1"]


def test_status_shows_every_registry_and_warm_up(cluster, tmp_path):
    seed, first, second = cluster
    with start_register(seed, "h1", ["t"], interval=0.1, ttl=0.5):
        wait_for(lambda: lookup(seed, "t") == ["h1"], timeout=10)
        result = rpcmm("status", "--seed", str(seed), "--json")
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)["registries"]
        assert [r["registry"] for r in rows] == [str(first.endpoint), str(second.endpoint)]
        assert all(r["state"] == "up" and r["hosts"] == 1 and r["behind"] == 0 for r in rows)
        assert all(r["max_registrations"] == 5_000_000 and r["refused"] == 0 for r in rows)
        text = rpcmm("status", "--seed", str(seed)).stdout
        assert " FULL REFUSED " in text and " 0% " in text  # 1 registration of 5M: 0 %
        first.kill()
        rows = json.loads(rpcmm("status", "--seed", str(seed), "--json", "--timeout", "0.2").stdout)["registries"]
        assert rows[0]["state"] == "unreachable" and rows[1]["state"] == "up"
        text = rpcmm("status", "--seed", str(seed), "--timeout", "0.2").stdout
        assert "unreachable" in text and str(second.endpoint) in text


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_sigint_and_sighup_also_end_register_and_registry_cleanly(tmp_path, sig):
    bootstrap = write_seed(tmp_path / "bootstrap.json")
    with start_registry(bootstrap) as registry:
        seed = write_seed(tmp_path / "seed.json", [registry.endpoint])
        with start_register(seed, "h1", ["t"]) as host:
            wait_for(lambda: lookup(seed, "t") == ["h1"], timeout=10)
            host.signal(sig)
            assert host.process.wait(10) == 0
        assert lookup(seed, "t") == []  # it unregistered on its way out
        registry.signal(sig)
        assert registry.process.wait(10) == 0


@pytest.mark.parametrize("args, code, message", [
    (["lookup", "--seed", "/nonexistent.json", "t"], 1, "cannot read"),
    (["lookup", "--seed", "{seed}", "bad topic"], 1, "white space"),
    (["hosts", "--seed", "{ring}"], 1, "lists no registries"),
    (["status", "--seed", "{ring}"], 1, "it is a plain static ring"),
    (["register", "--seed", "{ring}", "--host", "h", "t"], 1, "nothing to register with"),
    (["lookup", "--seed", "{seed}", "--timeout", "0.1", "t"], 1, "do they need CURVE keys"),
    (["lookup", "--seed", "{seed}", "--timeout", "0.1", "t"], 1, "no registry answered"),
    (["registry", "--seed", "{seed}", "--endpoint", "127.0.0.1:1"], 1, "is not one of the registries"),
    (["registry", "--seed", "{seed}", "--endpoint", "bogus"], 1, "--endpoint bogus: 'bogus' is not HOST:PORT"),
    (["registry", "--seed", "{seed}", "--endpoint", "127.0.0.1:9", "--bind", "[::1]:7701"], 1,
     "an address without a port"),
    (["status", "--seed", "{seed}", "--timeout", "0.1"], 1, "no registry answered within 0.1s"),
    (["registry", "--seed", "{seed}", "--endpoint", "127.0.0.1:9", "--bind", "127.0.0.1:17800"], 1,
     "an address without a port"),
    (["register", "--seed", "{seed}", "--host", "h", "--interval", "2", "--ttl", "1", "t"], 1, "must be longer"),
    (["lookup", "--seed"], 2, "usage:"),
    (["registry", "--seed", "{seed}"], 2, "--endpoint"),
    (["lookup", "--seed", "{seed}", "--timeout", "-1", "t"], 2, "must be positive"),
    (["registry", "--seed", "{seed}", "--endpoint", "127.0.0.1:0", "--max-registrations", "0"], 2,
     "must be at least 1"),
    (["registry", "--seed", "{seed}", "--endpoint", "127.0.0.1:0", "--max-registrations", "1e6"], 2,
     "not a whole number"),
    ([], 2, "usage:"),
])
def test_errors_are_one_line_and_usage_is_status_2(tmp_path, args, code, message):
    seed = write_seed(tmp_path / "seed.json", ["127.0.0.1:9"])  # nothing listens on port 9
    ring = write_seed(tmp_path / "ring.json", ring={"t": ["h"]})
    result = rpcmm(*[a.format(seed=seed, ring=ring) for a in args])
    assert result.returncode == code, result
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    if code == 1:
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("rpcmm: error: ")


def test_lookup_of_a_plain_ring_needs_no_registry(tmp_path):
    ring = write_seed(tmp_path / "ring.json", ring={"t": ["h1", "h2"]})
    result = rpcmm("lookup", "--seed", str(ring), "--json", "t")
    assert json.loads(result.stdout) == ["h1", "h2"]


def test_kill_9_host_leaves_lookups_within_its_ttl(cluster):
    seed, _, _ = cluster
    ttl = 0.6
    with start_register(seed, "victim", ["t"], interval=0.1, ttl=ttl) as victim, \
            start_register(seed, "survivor", ["t"], interval=0.1, ttl=ttl):
        wait_for(lambda: sorted(lookup(seed, "t")) == ["survivor", "victim"], timeout=10)
        victim.kill()
        killed_at = time.monotonic()
        wait_for(lambda: lookup(seed, "t") == ["survivor"], timeout=10, poll=0.02)
        # TTL + one sweep (0.05 s) + the time one `rpcmm lookup` process takes to answer.
        assert time.monotonic() - killed_at < ttl + 0.05 + 1.0


def test_lookups_continue_when_a_registry_is_killed_and_it_comes_back_whole(cluster, tmp_path):
    seed, first, second = cluster
    interval = 0.2
    with start_register(seed, "h1", ["a", "b", "c"], interval=interval, ttl=1.0):
        wait_for(lambda: lookup(seed, "a") == ["h1"], timeout=10)
        first.kill()
        for _ in range(5):
            assert lookup(seed, "b") == ["h1"]
        # Restart it on the same port; ask it alone for its table.
        only_first = write_seed(tmp_path / "first.json", [first.endpoint])
        with start_registry(only_first, endpoint=first.endpoint):
            restarted_at = time.monotonic()
            wait_for(lambda: json.loads(rpcmm("hosts", "--seed", str(only_first), "--json").stdout)["hosts"],
                     timeout=10, poll=0.01)
            rows = json.loads(rpcmm("hosts", "--seed", str(only_first), "--json").stdout)["hosts"]
            assert rows[0]["topics"] == ["a", "b", "c"]
            # This registry has no peer in its seed, so heartbeats alone refill it: within one
            # interval of its hosts' sockets reconnecting (a random 100-300 ms), plus the
            # start-up of one `rpcmm hosts` process (~0.3 s, more on a loaded machine).
            assert time.monotonic() - restarted_at < interval + 0.6 + 1.0


def test_a_restarted_registry_answers_with_its_full_table_before_any_heartbeat(cluster, tmp_path):
    seed, first, second = cluster
    # A heartbeat every 30 s: nothing but the warm-up from the peer can refill the table in time.
    with start_register(seed, "h1", ["a", "b"], interval=30, ttl=90):
        wait_for(lambda: lookup(seed, "a") == ["h1"], timeout=10)
        first.kill()
        with start_registry(seed, endpoint=first.endpoint):
            only_first = write_seed(tmp_path / "first.json", [first.endpoint])
            rows = json.loads(rpcmm("hosts", "--seed", str(only_first), "--json").stdout)["hosts"]
            assert [(r["host"], r["topics"]) for r in rows] == [("h1", ["a", "b"])]
            status = json.loads(rpcmm("status", "--seed", str(only_first), "--json").stdout)["registries"][0]
            assert status["state"] == "up" and status["synced_from"] == str(second.endpoint)


def _ignoring(*signals):
    def ignore():
        for sig in signals:
            signal.signal(sig, signal.SIG_IGN)
    return ignore


def test_a_registry_started_with_sighup_ignored_outlives_its_terminal(tmp_path):
    # nohup: SIGHUP ignored from the start stays ignored. SIGINT, which shells ignore in
    # background jobs, still stops it cleanly (kill -INT).
    seed = write_seed(tmp_path / "seed.json", ["127.0.0.1:9"])
    process = subprocess.Popen(
        [sys.executable, "-m", "rpcmm", "registry", "--seed", str(seed), "--endpoint", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
        preexec_fn=_ignoring(signal.SIGHUP, signal.SIGINT))
    try:
        assert process.stdout.readline().startswith("rpcmm registry: serving on ")
        process.send_signal(signal.SIGHUP)
        with pytest.raises(subprocess.TimeoutExpired):  # still running half a second later
            process.wait(0.5)
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        process.stdout.close()


def test_register_warns_when_no_registry_lists_the_host(tmp_path):
    # Nothing listens on the seed's registry: the host is registered with nobody, and says so
    # (it goes on heartbeating, so a registry that comes up later gets it).
    seed = write_seed(tmp_path / "seed.json", ["127.0.0.1:9"])
    process = subprocess.Popen([sys.executable, "-m", "rpcmm", "register", "--seed", str(seed), "--host", "lonely",
                                "--timeout", "0.1", "compute"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout.readline() == "rpcmm register: lonely serves compute\n"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert "rpcmm: warning: after 2s no registry lists lonely for compute" in stderr
    assert "Traceback" not in stderr


def test_register_says_when_registries_would_clamp_its_timing(tmp_path):
    bootstrap = write_seed(tmp_path / "bootstrap.json")
    with start_registry(bootstrap) as registry:
        seed = write_seed(tmp_path / "seed.json", [registry.endpoint])
        with start_register(seed, "fast", ["t"], interval=0.01, ttl=1000, stderr=subprocess.PIPE) as host:
            host.signal(signal.SIGTERM)
            assert host.process.wait(10) == 0
            stderr = host.process.stderr.read()
    assert "apply interval 0.05s and TTL 600s, not 0.01s and 1000s" in stderr


def test_check_seed_says_which_backend_a_seed_selects(tmp_path):
    redis_seed = tmp_path / "redis.json"
    redis_seed.write_text(json.dumps({"rpcmm-redis": "redis://:s3cret@127.0.0.1:6379/2", "t": ["h"]}))
    result = rpcmm("check-seed", str(redis_seed))
    assert result.returncode == 0, result.stderr
    assert "Redis: redis://:***@127.0.0.1:6379/2" in result.stdout and "s3cret" not in result.stdout
    ring = write_seed(tmp_path / "ring.json", ring={"t": ["h"]})
    assert "no registries (a plain static ring)" in rpcmm("check-seed", str(ring)).stdout
    typo = tmp_path / "typo.json"
    typo.write_text('{"rpcmm-regisrty": ["127.0.0.1:7701"]}')
    result = rpcmm("check-seed", str(typo))
    assert result.returncode == 1 and "unknown reserved key" in result.stderr
