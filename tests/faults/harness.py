"""The fault-injection harness: a real cluster of processes, clients that never stop, and a record.

A :class:`Cluster` runs registries (``rpcmm registry`` processes, one of them optionally in a
network namespace so it can be cut off) and service hosts (``service.py`` processes that
register and answer calls). :class:`Client` threads look topics up through their own
RegistryMatchmaker (live feed on) and call the host they get, continuously, writing every
outcome to a :class:`Record`. Scenarios (``scenarios.py``) break things and read the record.

Everything is bounded: clients stop when told or after their deadline, every process the
cluster starts is stopped by :meth:`Cluster.close`, and the namespace is deleted.
"""

import os
import pathlib
import select
import signal
import subprocess
import sys
import threading
import time

import zmq

from rpcmm.addressing import Anycast, Endpoint
from rpcmm.backends.registry import RegistryMatchmaker
from rpcmm.errors import RegistryUnavailable
from rpcmm.seed import load_seed
from rpcmm.testing import TimedOut, start_registry, wait_for, write_seed

SERVICE = pathlib.Path(__file__).with_name("service.py")


class Timing:
    """The cluster's timing, fast so that scenarios take seconds."""

    interval = 0.2
    ttl = 0.6
    sweep = 0.05
    tick = 0.1

    @classmethod
    def expiry_bound(cls):
        """Latest a dead host may still be handed out, after it died: TTL plus one sweep."""
        return cls.ttl + cls.sweep


class Record:
    """Every lookup and call the clients made, with the time it happened (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.lookups = []  # (time, client, topic, hosts or None if it failed)
        self.calls = []  # (time, client, host, ok)

    def lookup(self, when, client, topic, hosts):
        with self._lock:
            self.lookups.append((when, client, topic, hosts))

    def call(self, when, client, host, ok):
        with self._lock:
            self.calls.append((when, client, host, ok))

    def between(self, start, end):
        with self._lock:
            lookups = [e for e in self.lookups if start <= e[0] < end]
            calls = [e for e in self.calls if start <= e[0] < end]
        return lookups, calls


class NetworkNamespace:
    """A namespace joined to this one by a veth pair: ``inside`` is the address in it.

    :meth:`cut` takes the link down (packets vanish, connections hang, nothing is reset: a
    partition), :meth:`heal` brings it back.
    """

    def __init__(self, index):
        self.name = f"rpcmm-fault-{os.getpid()}-{index}"
        self.outer_link = f"rpf{os.getpid() % 100000}{index}"[:15]
        self.inner_link = self.outer_link + "i"
        subnet = 200 + index
        self.outside = f"10.213.{subnet}.1"
        self.inside = f"10.213.{subnet}.2"

    @staticmethod
    def available():
        if os.geteuid() != 0:
            return "needs root for ip netns"
        try:
            subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"ip netns does not work here: {exc}"
        return None

    def create(self):
        commands = [
            ["ip", "netns", "add", self.name],
            ["ip", "link", "add", self.outer_link, "type", "veth", "peer", "name", self.inner_link],
            ["ip", "link", "set", self.inner_link, "netns", self.name],
            ["ip", "addr", "add", f"{self.outside}/30", "dev", self.outer_link],
            ["ip", "link", "set", self.outer_link, "up"],
            ["ip", "netns", "exec", self.name, "ip", "addr", "add", f"{self.inside}/30", "dev", self.inner_link],
            ["ip", "netns", "exec", self.name, "ip", "link", "set", self.inner_link, "up"],
            ["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up"],
        ]
        for command in commands:
            subprocess.run(command, check=True, capture_output=True, timeout=10)
        return self

    @property
    def prefix(self):
        return ("ip", "netns", "exec", self.name)

    def cut(self):
        subprocess.run(["ip", "link", "set", self.outer_link, "down"], check=True, timeout=10)

    def heal(self):
        subprocess.run(["ip", "link", "set", self.outer_link, "up"], check=True, timeout=10)

    def delete(self):
        subprocess.run(["ip", "link", "del", self.outer_link], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)


class Service:
    """A service host process; ``host`` is the name it registered (its call address)."""

    def __init__(self, name, topics, seed_path):
        self.name = name
        self.topics = topics
        self.process = subprocess.Popen(
            [sys.executable, str(SERVICE), "--seed", str(seed_path), "--name", name,
             "--interval", str(Timing.interval), "--ttl", str(Timing.ttl), *topics],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
        )
        self.host = None
        self.registered_at = None

    def wait_ready(self, timeout=20.0):
        readable, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if readable else ""
        if not line.startswith("service ready "):
            self.kill()
            raise RuntimeError(f"service {self.name} did not start: {line!r}")
        _, _, self.host, registered_wall = line.split()
        # When it registered, on this process's monotonic clock (both read the same machine).
        self.registered_at = time.monotonic() - (time.time() - float(registered_wall))
        return self

    def signal(self, signum):
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def kill(self):
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        self.process.wait(10)
        self.process.stdout.close()


class Client(threading.Thread):
    """Looks up its topics in turn and calls the host it gets, until stopped or its deadline."""

    def __init__(self, index, seed, topics, record, deadline):
        super().__init__(name=f"fault-client-{index}", daemon=True)
        self.index = index
        self.topics = topics
        self.record = record
        self.deadline = deadline
        self.stopping = threading.Event()
        self.matchmaker = RegistryMatchmaker(seed, lookup_timeout=0.25, cache_max_age=1.0)
        self.context = zmq.Context()
        self.sockets = {}

    def run(self):
        with self.matchmaker:
            try:
                turn = 0
                while not self.stopping.is_set() and time.monotonic() < self.deadline:
                    topic = self.topics[turn % len(self.topics)]
                    turn += 1
                    self._lookup_and_call(topic)
                    self.stopping.wait(0.005)  # pacing: about 150 operations a second per client
            finally:
                for socket in self.sockets.values():
                    socket.close()
                self.context.term()

    def _lookup_and_call(self, topic):
        now = time.monotonic()
        try:
            hosts = self.matchmaker.lookup(Anycast(topic))
        except RegistryUnavailable:
            self.record.lookup(now, self.index, topic, None)
            return
        self.record.lookup(now, self.index, topic, hosts)
        if hosts:
            ok = self._call(hosts[0])
            self.record.call(time.monotonic(), self.index, hosts[0], ok)
            if not ok:
                self.matchmaker.report_unreachable(hosts[0])

    def _call(self, host):
        socket = self.sockets.get(host)
        if socket is None:
            socket = self.context.socket(zmq.DEALER)
            socket.setsockopt(zmq.LINGER, 0)
            socket.connect(f"tcp://{host}")
            self.sockets[host] = socket
        socket.send(b"ping")
        if socket.poll(250):
            socket.recv()
            return True
        # A call that timed out: drop the socket so a late answer cannot be mistaken later.
        socket.close()
        del self.sockets[host]
        return False

    def cached(self, topic):
        return self.matchmaker.cache.stale(topic) or ()


class Cluster:
    """Registries, services and clients on this machine; see the module docstring."""

    def __init__(self, workdir, registries=3, cut_off_registry=False):
        self.workdir = pathlib.Path(workdir)
        self.registry_count = registries
        self.namespace = None
        self.want_namespace = cut_off_registry
        self.registries = []  # RpcmmProcess, with .endpoint
        self.registry_prefix = []
        self.services = {}
        self.clients = []
        self.record = Record()
        self.seed_path = self.workdir / "seed.json"
        self.killed = {}  # host -> when it was killed or frozen

    # -- start and stop --------------------------------------------------------------------

    def start(self, services=12, clients=3, topics=("compute", "scheduler", "conductor"), duration=120.0):
        bootstrap = write_seed(self.workdir / "bootstrap.json")
        outside = "127.0.0.1"
        if self.want_namespace:
            # The other registries bind the veth's outer address, which both this namespace and
            # the cut-off one reach, so that any registry can warm up from any other.
            self.namespace = NetworkNamespace(os.getpid() % 40).create()
            outside = self.namespace.outside
        for index in range(self.registry_count):
            prefix, address = (), outside
            if self.namespace is not None and index == self.registry_count - 1:
                prefix, address = self.namespace.prefix, self.namespace.inside
            self.registry_prefix.append(prefix)
            self.registries.append(self._start_registry(bootstrap, f"{address}:0", prefix))
        write_seed(self.seed_path, [r.endpoint for r in self.registries])
        started = [Service(f"svc-{i}", [topics[i % len(topics)]], self.seed_path) for i in range(services)]
        for service in started:
            service.wait_ready()
            self.services[service.host] = service
        self.topics = topics
        seed = load_seed(self.seed_path)
        wait_for(lambda: all(self._registry_size(i) == services for i in range(self.registry_count)),
                 timeout=20, what="every registry to hold every service")
        deadline = time.monotonic() + duration
        self.clients = [Client(i, seed, list(topics), self.record, deadline) for i in range(clients)]
        for client in self.clients:
            client.start()
        wait_for(lambda: all(c.cached(t) for c in self.clients for t in topics), timeout=20,
                 what="every client to have looked up every topic")
        return self

    def _start_registry(self, seed_path, endpoint, prefix):
        return start_registry(seed_path, endpoint, prefix=prefix, extra_args=[
            "--sweep-interval", str(Timing.sweep), "--tick-interval", str(Timing.tick)])

    def close(self):
        for client in self.clients:
            client.stopping.set()
        for client in self.clients:
            client.join(10)
        for service in self.services.values():
            service.kill()
        for registry in self.registries:
            registry.signal(signal.SIGCONT)
            registry.__exit__(None, None, None)
        if self.namespace is not None:
            self.namespace.delete()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- faults ----------------------------------------------------------------------------

    def kill_service(self, host):
        self.killed[host] = time.monotonic()
        self.services[host].kill()

    def freeze_service(self, host):
        self.killed[host] = time.monotonic()
        self.services[host].signal(signal.SIGSTOP)

    def thaw_service(self, host):
        self.services[host].signal(signal.SIGCONT)
        del self.killed[host]

    def add_service(self, name, topic):
        service = Service(name, [topic], self.seed_path).wait_ready()
        self.services[service.host] = service
        return service

    def kill_registry(self, index):
        self.registries[index].kill()

    def restart_registry(self, index):
        """Start registry ``index`` again on its endpoint, warming up from its peers."""
        endpoint = self.registries[index].endpoint
        self.registries[index] = self._start_registry(self.seed_path, endpoint, self.registry_prefix[index])

    def freeze_registry(self, index):
        self.registries[index].signal(signal.SIGSTOP)

    def thaw_registry(self, index):
        self.registries[index].signal(signal.SIGCONT)

    # -- observation -------------------------------------------------------------------------

    def registry_status(self, index):
        """The Health of registry ``index`` alone (None if it does not answer)."""
        seed = load_seed(self.seed_path)
        from rpcmm.seed import Seed

        alone = Seed.build(registries=[seed.registries[index]])
        with RegistryMatchmaker(alone, lookup_timeout=0.2, live=False) as matchmaker:
            return matchmaker.status()[0][1]

    def _registry_size(self, index):
        health = self.registry_status(index)
        return -1 if health is None else health.hosts

    def live_hosts(self):
        return [h for h in self.services if h not in self.killed and self.services[h].process.poll() is None]

    def preferred_registry(self):
        """The registry most clients ask."""
        endpoints = [c.matchmaker.preferred_registry for c in self.clients]
        top = max(set(endpoints), key=endpoints.count)
        return [r.endpoint for r in self.registries].index(top)


def wait_until_every_cache(cluster, predicate, since=None, timeout=10.0):
    """Seconds from ``since`` (default: now) until ``predicate(client)`` held for every client,
    checked every millisecond."""
    started = time.monotonic() if since is None else since
    pending = set(range(len(cluster.clients)))
    latest = 0.0
    deadline = time.monotonic() + timeout
    while pending:
        for index in list(pending):
            if predicate(cluster.clients[index]):
                pending.discard(index)
                latest = time.monotonic() - started
        if time.monotonic() > deadline:
            raise TimedOut(f"{len(pending)} client caches never saw the change")
        time.sleep(0.001)
    return latest


__all__ = ["Cluster", "Client", "Record", "Timing", "NetworkNamespace", "wait_until_every_cache", "Endpoint"]
