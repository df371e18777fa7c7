"""The fault-injection suite in its short form: real processes, real faults, the goals asserted.

``python -m tests.faults.run --long`` is the long form whose figures are in doc/resilience.rst.
"""

import pytest

from tests.faults.harness import NetworkNamespace, Timing
from tests.faults.run import SHORT, run

pytestmark = [pytest.mark.functional, pytest.mark.timeout(300)]

#: Scheduling slack on a shared two-core machine, on top of the protocol's own bounds.
SLACK = 0.3


@pytest.fixture(scope="module")
def results():
    return {name: runs[0] for name, runs in run(SHORT).items()}


def test_no_lookup_fails_while_a_registry_is_up(results):
    for name, figures in results.items():
        if "skipped" in figures:
            continue
        assert figures["lookups"] > 0, name
        assert figures["lookups_failed"] == 0, (name, figures)


def test_no_dead_host_is_handed_out_after_its_ttl_plus_one_sweep(results):
    for name, figures in results.items():
        assert figures.get("late_handouts", 0) == 0, (name, figures)


def test_deaths_are_detected_within_the_ttl(results):
    for name in ("host_kill", "host_freeze"):
        assert results[name]["detect"] <= Timing.expiry_bound() + SLACK, results[name]


def test_changes_reach_every_cache_quickly(results):
    assert results["new_host"]["propagate"] < SLACK, results["new_host"]
    assert results["host_freeze"]["rejoin"] < Timing.interval + SLACK, results["host_freeze"]


def test_a_restarted_registry_is_whole_from_its_peers_not_from_heartbeats(results):
    figures = results["registry_kill"]
    assert figures["warmed_from_peer"], figures
    assert figures["recover_after_bind"] < Timing.interval, figures


def test_a_cut_off_registry_keeps_its_table(results):
    figures = results["registry_cut"]
    if "skipped" in figures:
        pytest.skip(figures["skipped"])
    assert figures["hosts_kept"] == figures["hosts_before"], figures


def test_the_namespace_scenario_runs_in_ci():
    import os

    if os.environ.get("CI") == "true":
        assert NetworkNamespace.available() is None
