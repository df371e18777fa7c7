import pytest

from rpcmm.errors import ConfigurationError
from rpcmm.timing import DEFAULT_INTERVAL, DEFAULT_TTL, HeartbeatTiming, TimingBounds


def test_defaults_tolerate_two_missed_heartbeats():
    timing = HeartbeatTiming()
    assert (timing.interval, timing.ttl) == (DEFAULT_INTERVAL, DEFAULT_TTL)
    assert timing.ttl >= 3 * timing.interval


@pytest.mark.parametrize("interval, ttl", [(0, 1), (-1, 1), (1, 1), (2, 1), (float("nan"), 1), (True, 3), ("1", 3)])
def test_bad_timing_is_refused(interval, ttl):
    with pytest.raises(ConfigurationError):
        HeartbeatTiming(interval, ttl)


@pytest.mark.parametrize("declared, applied", [
    ((1.0, 3.0), (1.0, 3.0)),          # within bounds: as declared
    ((0.001, 0.002), (0.05, 0.2)),     # too eager: clamped up
    ((1000.0, 5000.0), (60.0, 600.0)),  # too lazy: clamped down
    ((1.0, 1.2), (1.0, 1.5)),          # ttl raised to 1.5 intervals
])
def test_registry_bounds(declared, applied):
    assert TimingBounds().enforce(*declared) == pytest.approx(applied)


def test_inconsistent_bounds_are_refused():
    with pytest.raises(ConfigurationError):
        TimingBounds(min_interval=2, max_interval=1)
    with pytest.raises(ConfigurationError):
        TimingBounds(min_ttl_intervals=0.5)
