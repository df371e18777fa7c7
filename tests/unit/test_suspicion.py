from rpcmm.suspicion import SuspicionBoard
from rpcmm.table import RegistryTable


def table_with(*hosts, now=0.0):
    table = RegistryTable()
    for host in hosts:
        table.heartbeat(host, ("t",), 1.0, 10.0, now)
    return table


def test_one_reporter_cannot_evict_a_healthy_host():
    board, table = SuspicionBoard(), table_with("h")
    assert board.report("h", b"client-a", now=0.1) is False
    assert board.report("h", b"client-a", now=0.2) is False  # the same reporter again
    table.heartbeat("h", ("t",), 1.0, 10.0, now=1.0)
    board.heard_from("h", now=1.0)
    assert board.confirmed(table, now=5.0) == [] and len(board) == 0


def test_a_second_reporter_confirms():
    board = SuspicionBoard()
    assert board.report("h", b"a", now=0.0) is False
    assert board.report("h", b"b", now=0.1) is True


def test_a_missed_heartbeat_confirms():
    board, table = SuspicionBoard(), table_with("h")
    board.report("h", b"a", now=0.2)
    assert board.confirmed(table, now=1.0) == []  # not yet 1.5 intervals
    assert board.confirmed(table, now=1.8) == ["h"]


def test_silence_is_measured_against_the_interval_the_host_declared():
    # The bounds cap intervals at 60 s; a host declaring 100 s still only beats every 100 s.
    board, table = SuspicionBoard(), RegistryTable()
    table.heartbeat("slow", ("t",), 100.0, 300.0, now=0.0)
    board.report("slow", b"a", now=1.0)
    assert board.confirmed(table, now=99.0) == []  # 1.5 x 60 s has passed, 1.5 x 100 s has not
    assert board.confirmed(table, now=151.0) == ["slow"]


def test_memory_is_bounded():
    board = SuspicionBoard(max_suspects=3, max_reporters=2)
    for i in range(10):
        board.report(f"h{i}", b"a", now=0.0)
    assert len(board) == 3
    for reporter in (b"b", b"c", b"d"):
        board.report("h0", reporter, now=0.0)
    assert len(board._suspects["h0"][1]) == 2


def test_hosts_that_left_are_forgotten():
    board, table = SuspicionBoard(), table_with("h")
    board.report("h", b"a", now=0.0)
    table.remove("h")
    assert board.confirmed(table, now=5.0) == [] and len(board) == 0
