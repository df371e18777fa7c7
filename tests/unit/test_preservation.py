import pytest

from rpcmm.preservation import ExpiryGuard
from rpcmm.table import RegistryTable
from rpcmm.timing import TimingBounds


def fill(table, count, now, interval=1.0, ttl=3.0, prefix="h"):
    for i in range(count):
        table.heartbeat(f"{prefix}{i}", ("t",), interval, ttl, now)


@pytest.fixture
def table():
    return RegistryTable(TimingBounds(min_interval=0.01, min_ttl=0.01))


def test_a_few_deaths_expire_normally(table):
    guard = ExpiryGuard(fraction=0.5, min_hosts=5)
    fill(table, 10, now=0.0)
    for now in (1.0, 2.0, 3.0):
        fill(table, 8, now)  # h8 and h9 fell silent at 0.0
    assert sorted(guard.sweep(table, 3.0)) == ["h8", "h9"] and not guard.degraded


def test_a_mass_silence_is_held_and_reported_then_clears_when_heartbeats_return(table):
    guard = ExpiryGuard(fraction=0.5, min_hosts=5, max_hold=30.0)
    fill(table, 10, now=0.0)
    assert guard.sweep(table, 3.0) == []  # all ten overdue at once: the registry is cut off
    assert guard.degraded and len(table) == 10
    assert guard.sweep(table, 10.0) == [] and guard.degraded
    fill(table, 10, now=10.5)  # the partition heals
    assert guard.sweep(table, 11.0) == [] and not guard.degraded


def test_a_gradual_drain_is_caught_by_the_silence_rule(table):
    guard = ExpiryGuard(fraction=0.5, min_hosts=5)
    # Heartbeat phases spread over the interval, then nothing more arrives at all.
    for i in range(20):
        table.heartbeat(f"h{i}", ("t",), 1.0, 3.0, now=i / 20)
    expired = []
    now = 3.0
    while now < 6.0:
        expired += guard.sweep(table, now)
        now += 0.25
    assert guard.degraded and len(expired) < 10


def test_a_lone_fast_host_that_dies_expires_on_time_among_slow_ones(table):
    # Five hosts beating every 30 s and one every 1 s: when the fast one dies, the slow ones'
    # usual quiet stretches are not a registry cut off.
    guard = ExpiryGuard(fraction=0.5, min_hosts=5)
    fill(table, 5, now=0.0, interval=30.0, ttl=90.0, prefix="slow")
    table.heartbeat("fast", ("t",), 1.0, 3.0, now=0.0)
    assert guard.sweep(table, 3.0) == ["fast"] and not guard.degraded


def test_a_registry_cut_off_from_a_mixed_fleet_holds_its_fast_hosts(table):
    # A hundred slow hosts speak every 0.3 s between them: 3 s of silence is the registry's.
    guard = ExpiryGuard(fraction=0.5, min_hosts=5)
    fill(table, 100, now=0.0, interval=30.0, ttl=90.0, prefix="slow")
    fill(table, 10, now=0.0, interval=1.0, ttl=3.0, prefix="fast")
    assert guard.sweep(table, 3.0) == [] and guard.degraded and len(table) == 110


def test_the_hold_never_lasts_beyond_max_hold(table):
    guard = ExpiryGuard(fraction=0.5, min_hosts=5, max_hold=5.0)
    fill(table, 10, now=0.0)
    assert guard.sweep(table, 3.0) == [] and guard.degraded
    assert len(guard.sweep(table, 8.0)) == 10  # they really are dead: expired anyway
    assert not guard.degraded and len(table) == 0


def test_small_tables_are_never_held(table):
    guard = ExpiryGuard(fraction=0.5, min_hosts=5)
    fill(table, 3, now=0.0)
    assert len(guard.sweep(table, 3.0)) == 3 and not guard.degraded


def test_the_threshold_follows_the_table_at_every_sweep(table):
    guard = ExpiryGuard(fraction=0.5, min_hosts=5)
    fill(table, 10, now=0.0, prefix="old")
    fill(table, 30, now=2.9, prefix="new")  # the table grew: 10 of 40 is not a mass silence
    assert len(guard.sweep(table, 3.0)) == 10 and not guard.degraded


def test_bad_fraction():
    with pytest.raises(ValueError):
        ExpiryGuard(fraction=0)
