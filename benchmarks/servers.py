"""Start and stop every process a benchmark needs, on 127.0.0.1 only.

Each server is started here and recorded in :data:`STARTED`; :func:`stop_all` (called from
``finally`` in the entry point, also on Ctrl-C and SIGTERM) stops whatever is still running, by
the PID this module got when it started it. Nothing is installed: a missing program raises
:class:`Missing`, which the caller turns into a "skipped: ..." row.

- :func:`start_registry`: ``python -m rpcmm registry`` in its own process;
- :func:`start_role`: a child ``python -m benchmarks.roles ROLE`` (echo servers, load
  generators, oslo.messaging servers) that prints ``READY`` once listening;
- :func:`start_redis`: a throwaway redis-server (no persistence);
- :func:`start_rabbit`: epmd plus a throwaway RabbitMQ node with its own data directory.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

__all__ = ["Missing", "Server", "STARTED", "stop_all", "free_port", "start_registry", "start_role",
           "registry_and_loadgen", "start_redis", "start_rabbit", "child_env", "read_line", "LOG_DIR"]

#: Where servers' own logs go (removed at exit unless KEEP_BENCH_LOGS=1).
LOG_DIR = tempfile.mkdtemp(prefix="rpcmm-bench-")
#: Every server started and not yet stopped, newest last.
STARTED = []
_RABBIT_BIN = "/usr/lib/rabbitmq/bin/rabbitmq-server"


class Missing(Exception):
    """A program or package the benchmark needs is not installed; the message says which."""


class Server:
    """A process started by this module. ``group`` means it leads its own process group
    (RabbitMQ's launcher forks beam.smp and friends), which :meth:`stop` kills as a whole."""

    def __init__(self, name, popen, group=False, cleanup=None, **info):
        self.name, self.popen, self.group, self.cleanup = name, popen, group, cleanup
        self.info = info
        STARTED.append(self)

    @property
    def pid(self):
        return self.popen.pid

    def stop(self, timeout=15):
        """SIGTERM, wait, then SIGKILL (the whole group if it has one); idempotent."""
        p = self.popen
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.group:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for stream in (p.stdin, p.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        if self.cleanup:
            self.cleanup()
            self.cleanup = None
        if self in STARTED:
            STARTED.remove(self)


def stop_all():
    """Stop every server still running, newest first."""
    for server in reversed(list(STARTED)):
        try:
            server.stop()
        except Exception as exc:  # keep stopping the others
            print(f"warning: could not stop {server.name} (pid {server.pid}): {exc}", file=sys.stderr)
    if not os.environ.get("KEEP_BENCH_LOGS"):
        shutil.rmtree(LOG_DIR, ignore_errors=True)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env():
    """The environment for child Python processes: this checkout's packages first."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.environ.get("PYTHONPATH", "")
    return dict(os.environ, PYTHONPATH=root + (os.pathsep + path if path else ""), PYTHONWARNINGS="ignore")


def read_line(popen, timeout, what):
    """The next line a child prints on stdout, within ``timeout`` seconds (else TimeoutError)."""
    import selectors
    with selectors.DefaultSelector() as sel:
        sel.register(popen.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise TimeoutError(f"{what} printed nothing within {timeout:g}s")
    line = popen.stdout.readline()
    if not line:
        raise RuntimeError(f"{what} exited (rc={popen.poll()}) before it was ready; see {LOG_DIR}")
    return line.strip()


def start_registry(name="registry", timeout=20, peers=()):
    """An rpcmm registry in its own process on 127.0.0.1:<free>; returns (Server, 'host:port').

    It runs the product's own command, ``rpcmm registry``, at log level warning: at the default
    (info) every host joining is a log line, which measures logging, not the registry. With
    ``peers`` ('host:port' of running registries) its seed lists them, and it warms up from them.
    """
    seed = os.path.join(LOG_DIR, f"{name}-seed.json")
    with open(seed, "w") as f:
        json.dump({"rpcmm-registry": list(peers) or ["127.0.0.1:7701"]}, f)
    log = open(os.path.join(LOG_DIR, f"{name}.log"), "w")
    popen = subprocess.Popen(
        [sys.executable, "-m", "rpcmm", "registry", "--seed", seed, "--endpoint", "127.0.0.1:0",
         "--log-level", "warning", *([] if peers else ["--no-warmup"])],
        stdout=subprocess.PIPE, stderr=log, text=True, env=child_env())
    log.close()
    server = Server(name, popen)
    line = read_line(popen, timeout, "rpcmm registry")
    prefix = "rpcmm registry: serving on "
    if not line.startswith(prefix):
        server.stop()
        raise RuntimeError(f"rpcmm registry said {line!r}")
    endpoint = line[len(prefix):]
    server.info["endpoint"] = endpoint
    return server, endpoint


@contextlib.contextmanager
def registry_and_loadgen(name, sockets):
    """``(registry Server, "host:port", loadgen.Generator)``: a registry process and a heartbeat
    load generator process with ``sockets`` sockets to it, both stopped on leaving."""
    from benchmarks import loadgen
    registry, endpoint = start_registry(name=name)
    gen = None
    try:
        gen = loadgen.spawn(endpoint, sockets, name=f"{name}-loadgen")
        yield registry, endpoint, gen
    finally:
        if gen is not None:
            gen.stop()
        registry.stop()


def start_role(role, *args, name=None, timeout=60, stdin=False):
    """``python -m benchmarks.roles ROLE ARGS`` ; returns the Server once it printed READY.

    Lines it prints after READY (results) are read by the caller from ``server.popen.stdout``.
    """
    name = name or role
    log = open(os.path.join(LOG_DIR, f"{name}.log"), "a")
    popen = subprocess.Popen([sys.executable, "-m", "benchmarks.roles", role, *map(str, args)],
                             stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=log, text=True, env=child_env())
    log.close()
    server = Server(name, popen)
    line = read_line(popen, timeout, role)
    if line != "READY":
        server.stop()
        raise RuntimeError(f"{role} said {line!r} instead of READY; see {LOG_DIR}/{name}.log")
    return server


def start_redis(timeout=10):
    """A redis-server on 127.0.0.1:<free>, no persistence; returns (Server, port)."""
    exe = shutil.which("redis-server")
    if not exe:
        raise Missing("redis-server not installed (Debian: apt-get install redis-server)")
    try:
        import redis
    except ImportError:
        raise Missing("redis-py not installed (pip install redis)") from None
    port = free_port()
    popen = subprocess.Popen(
        [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--protected-mode", "yes", "--daemonize", "no", "--logfile", os.path.join(LOG_DIR, "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Server("redis-server", popen, port=port)
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.ping():
                server.info["version"] = client.info("server")["redis_version"]
                client.close()
                return server, port
        except redis.ConnectionError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"redis-server did not answer within {timeout}s")


def start_rabbit(timeout=60):
    """epmd and a RabbitMQ node, both on 127.0.0.1 only; returns (Server, amqp_port, seconds to ready).

    The node gets a private data/log directory (removed when stopped), no plugins, and its own
    epmd port, so it never meets a system RabbitMQ. Stopping it kills its process group.
    """
    if not os.path.exists(_RABBIT_BIN) or not shutil.which("epmd"):
        raise Missing("rabbitmq-server not installed (Debian: apt-get install rabbitmq-server)")
    try:
        import amqp
    except ImportError:
        raise Missing("py-amqp not installed (it comes with oslo.messaging)") from None
    tmp = tempfile.mkdtemp(prefix="rabbit-", dir=LOG_DIR)
    epmd_port, amqp_port, dist_port = free_port(), free_port(), free_port()
    epmd = subprocess.Popen(["epmd", "-address", "127.0.0.1", "-port", str(epmd_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    Server("epmd", epmd, port=epmd_port)
    os.makedirs(os.path.join(tmp, "home"))
    with open(os.path.join(tmp, "enabled_plugins"), "w") as f:
        f.write("[].\n")
    with open(os.path.join(tmp, "rabbitmq-env.conf"), "w") as f:
        f.write("")
    with open(os.path.join(tmp, "rabbitmq.conf"), "w") as f:
        f.write(f"listeners.tcp.1 = 127.0.0.1:{amqp_port}\nloopback_users.guest = true\n"
                "log.console = false\nlog.file.level = warning\n")
    env = dict(os.environ, HOME=os.path.join(tmp, "home"), ERL_EPMD_ADDRESS="127.0.0.1",
               ERL_EPMD_PORT=str(epmd_port), RABBITMQ_NODENAME=f"rpcmmbench{amqp_port}@localhost",
               RABBITMQ_NODE_IP_ADDRESS="127.0.0.1", RABBITMQ_NODE_PORT=str(amqp_port),
               RABBITMQ_DIST_PORT=str(dist_port), RABBITMQ_CONFIG_FILE=os.path.join(tmp, "rabbitmq.conf"),
               RABBITMQ_CONF_ENV_FILE=os.path.join(tmp, "rabbitmq-env.conf"),
               RABBITMQ_MNESIA_BASE=os.path.join(tmp, "mnesia"), RABBITMQ_LOG_BASE=os.path.join(tmp, "log"),
               RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(tmp, "enabled_plugins"),
               RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}")
    t0 = time.perf_counter()
    with open(os.path.join(tmp, "stdout.log"), "w") as out:
        popen = subprocess.Popen([_RABBIT_BIN], env=env, start_new_session=True, stdout=out,
                                 stderr=subprocess.STDOUT)
    server = Server("rabbitmq-server", popen, group=True, port=amqp_port,
                    cleanup=lambda: shutil.rmtree(tmp, ignore_errors=True))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"rabbitmq-server exited rc={popen.returncode}; see {tmp}")
        try:
            conn = amqp.Connection(f"127.0.0.1:{amqp_port}", userid="guest", password="guest", connect_timeout=1)
            conn.connect()
            conn.close()
            return server, amqp_port, time.perf_counter() - t0
        except Exception:
            time.sleep(0.25)
    raise RuntimeError(f"rabbitmq-server not ready within {timeout}s")
