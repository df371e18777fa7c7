"""Fault scenarios: each breaks a running cluster in one way and measures what clients saw.

Every scenario returns a dict of figures (seconds unless named otherwise):

- ``lookups``, ``lookups_failed``: lookups made during the scenario, and those that raised
  (the goal: none while at least one registry is up);
- ``late_handouts``, ``worst_late``: lookups that returned a dead host later than its TTL plus
  one sweep after it died, and by how much the worst one was late (goal: none);
- ``detect``: from a host's death until it had left every client's cache;
- ``propagate``: from a registration until it had reached every client's cache;
- ``rejoin``: from a frozen host's SIGCONT until it was back in every client's cache;
- ``recover``: from a registry's restart command (or a healed link) until it answered UP with
  its full table; ``recover_after_bind`` counts from the moment the new process had bound.
"""

import time

from rpcmm.protocol import State
from rpcmm.testing import wait_for
from tests.faults.harness import Timing, wait_until_every_cache


def _window(cluster, started, figures):
    lookups, calls = cluster.record.between(started, time.monotonic())
    figures["lookups"] = len(lookups)
    figures["lookups_failed"] = sum(1 for e in lookups if e[3] is None)
    figures["calls"] = len(calls)
    figures["calls_failed"] = sum(1 for e in calls if not e[3])
    late = [when - cluster.killed[h] - Timing.expiry_bound()
            for when, _, _, hosts in lookups if hosts
            for h in hosts if h in cluster.killed and when - cluster.killed[h] > Timing.expiry_bound()]
    figures["late_handouts"] = len(late)
    figures["worst_late"] = max(late, default=0.0)
    return figures


def _topic_of(cluster, host):
    return cluster.services[host].topics[0]


def _settle(seconds):
    time.sleep(seconds)  # real traffic running under the fault: the point of the scenario


def host_kill(cluster):
    """kill -9 two service hosts."""
    started = time.monotonic()
    victims = cluster.live_hosts()[:2]
    detect = []
    for host in victims:
        cluster.kill_service(host)
        topic = _topic_of(cluster, host)
        detect.append(wait_until_every_cache(cluster, lambda c: host not in c.cached(topic),
                                             since=cluster.killed[host]))
    _settle(Timing.expiry_bound() + 0.5)
    return _window(cluster, started, {"detect": max(detect)})


def host_freeze(cluster):
    """SIGSTOP a service host past its TTL, then SIGCONT it."""
    started = time.monotonic()
    host = cluster.live_hosts()[0]
    topic = _topic_of(cluster, host)
    cluster.freeze_service(host)
    detect = wait_until_every_cache(cluster, lambda c: host not in c.cached(topic), since=cluster.killed[host])
    _settle(Timing.ttl)
    figures = _window(cluster, started, {"detect": detect})
    thawed = time.monotonic()
    cluster.thaw_service(host)
    figures["rejoin"] = wait_until_every_cache(cluster, lambda c: host in c.cached(topic), since=thawed)
    return figures


def new_host(cluster):
    """A host joins: how long until every client's cache has it."""
    started = time.monotonic()
    service = cluster.add_service(f"late-{len(cluster.services)}", cluster.topics[0])
    propagate = wait_until_every_cache(cluster, lambda c: service.host in c.cached(service.topics[0]),
                                       since=service.registered_at)
    return _window(cluster, started, {"propagate": propagate})


def registry_kill(cluster):
    """kill -9 the registry most clients ask, run on the others, then restart it."""
    started = time.monotonic()
    index = cluster.preferred_registry()
    cluster.kill_registry(index)
    _settle(1.5)
    expected = len(cluster.live_hosts())
    restarted = time.monotonic()
    cluster.restart_registry(index)  # returns once the new process has bound its socket
    bound = time.monotonic()

    def whole():
        health = cluster.registry_status(index)
        return health is not None and health.state is State.UP and health.hosts >= expected and health

    health = wait_for(whole, timeout=10, poll=0.005)
    whole_at = time.monotonic()
    figures = {"recover": whole_at - restarted, "recover_after_bind": whole_at - bound,
               "warmed_from_peer": bool(health.synced_from)}
    _settle(0.5)
    return _window(cluster, started, figures)


def registry_freeze(cluster):
    """SIGSTOP the registry most clients ask for two seconds (it hangs, connections stay up)."""
    started = time.monotonic()
    index = cluster.preferred_registry()
    cluster.freeze_registry(index)
    _settle(2.0)
    cluster.thaw_registry(index)
    _settle(0.5)
    return _window(cluster, started, {})


def registry_cut(cluster):
    """Cut the namespaced registry off the network for several TTLs, then heal the link."""
    if cluster.namespace is None:
        return {"skipped": "no network namespace"}
    started = time.monotonic()
    index = cluster.registry_count - 1
    before = cluster.registry_status(index).hosts
    cluster.namespace.cut()
    _settle(4 * Timing.ttl)
    cluster.namespace.heal()
    healed = time.monotonic()

    def answering():
        return cluster.registry_status(index)

    health = wait_for(answering, timeout=20, poll=0.01)
    figures = {"hosts_before": before, "hosts_kept": health.hosts, "state_after_heal": health.state.name,
               "data_age_after_heal": round(health.data_age, 3)}
    wait_for(lambda: cluster.registry_status(index).state is State.UP, timeout=20, poll=0.01)
    figures["recover"] = time.monotonic() - healed
    return _window(cluster, started, figures)


SCENARIOS = [host_kill, host_freeze, new_host, registry_kill, registry_freeze, registry_cut]
