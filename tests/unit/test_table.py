import random

import pytest

from rpcmm import protocol as p
from rpcmm.protocol import TableRow
from rpcmm.table import Change, RegistryTable
from rpcmm.timing import TimingBounds


@pytest.fixture
def table():
    return RegistryTable(TimingBounds(min_interval=0.01, min_ttl=0.01))


def test_join_refresh_change_and_index(table):
    assert table.heartbeat("h1", ("a", "b"), 1.0, 3.0, now=0.0) is Change.JOINED
    assert table.heartbeat("h2", ("b",), 1.0, 3.0, now=0.0) is Change.JOINED
    assert table.hosts_for("b") == ("h1", "h2")
    assert table.heartbeat("h1", ("a", "b"), 1.0, 3.0, now=1.0) is Change.REFRESHED
    assert table.heartbeat("h1", ("a", "c"), 1.0, 3.0, now=2.0) is Change.CHANGED
    assert table.hosts_for("b") == ("h2",)
    assert table.hosts_for("c") == ("h1",)
    assert table.hosts_for("nobody") == ()
    assert table.registration_count == 3


def test_a_silent_host_expires_after_its_ttl_and_only_it(table):
    table.heartbeat("quiet", ("t",), 1.0, 3.0, now=0.0)
    table.heartbeat("chatty", ("t",), 1.0, 3.0, now=0.0)
    for now in (1.0, 2.0, 3.0):
        table.heartbeat("chatty", ("t",), 1.0, 3.0, now=now)
    assert table.expire(2.999) == []
    assert table.expire(3.0) == ["quiet"]
    assert table.hosts_for("t") == ("chatty",)
    assert "quiet" not in table and "chatty" in table


def test_a_heartbeat_brings_a_forgotten_host_fully_back(table):
    table.heartbeat("h", ("a", "b", "c"), 1.0, 3.0, now=0.0)
    table.expire(10.0)
    assert len(table) == 0
    assert table.heartbeat("h", ("a", "b", "c"), 1.0, 3.0, now=10.5) is Change.JOINED
    assert all(table.hosts_for(t) == ("h",) for t in "abc")


def test_empty_topics_remove_the_host(table):
    table.heartbeat("h", ("a",), 1.0, 3.0, now=0.0)
    assert table.heartbeat("h", (), 1.0, 3.0, now=1.0) is Change.LEFT
    assert len(table) == 0 and table.hosts_for("a") == ()
    assert table.heartbeat("h", (), 1.0, 3.0, now=2.0) is None  # nothing left to remove


def test_remove_touches_no_other_host(table):
    table.heartbeat("h1", ("a",), 1.0, 3.0, now=0.0)
    table.heartbeat("h2", ("a",), 1.0, 3.0, now=0.0)
    assert table.remove("h1") is True
    assert table.remove("h1") is False
    assert table.hosts_for("a") == ("h2",)


def test_declared_timing_is_clamped_into_the_bounds():
    table = RegistryTable(TimingBounds(min_interval=1.0, max_interval=5.0, min_ttl=2.0, max_ttl=10.0))
    table.heartbeat("eager", ("t",), 0.001, 0.002, now=0.0)
    table.heartbeat("lazy", ("t",), 100.0, 1000.0, now=0.0)
    rows = {r.host: r for r in table.rows(now=0.0)}
    assert (rows["eager"].interval, rows["eager"].ttl) == (1.0, 2.0)
    assert (rows["lazy"].interval, rows["lazy"].ttl) == (5.0, 10.0)
    assert table.expire(1.99) == []
    assert table.expire(2.0) == ["eager"]
    assert table.expire(9.99) == []
    assert table.expire(10.0) == ["lazy"]


def test_a_timing_change_alone_applies_the_new_ttl(table):
    table.heartbeat("h", ("t",), 1.0, 3.0, now=0.0)
    table.heartbeat("h", ("t",), 1.0, 10.0, now=1.0)
    assert table.expire(5.0) == []
    assert table.expire(11.0) == ["h"]


def test_rows_report_age_and_sorted_topics(table):
    table.heartbeat("b", ("z", "y"), 1.0, 3.0, now=0.0)
    table.heartbeat("a", ("x",), 1.0, 3.0, now=1.0)
    rows = table.rows(now=2.5)
    assert [r.host for r in rows] == ["a", "b"]
    assert rows[1].topics == ("y", "z") and rows[1].age == pytest.approx(2.5)


def test_cached_answers_follow_changes(table):
    table.heartbeat("h1", ("t",), 1.0, 3.0, now=0.0)
    first = table.hosts_for("t")
    assert table.hosts_for("t") is first  # served from the answer cache
    table.heartbeat("h2", ("t",), 1.0, 3.0, now=0.0)
    assert table.hosts_for("t") == ("h1", "h2")
    table.expire(100.0)
    assert table.hosts_for("t") == () and table.topics() == ()


def test_every_change_gets_the_next_version_and_is_listed_once(table):
    table.heartbeat("h1", ("a", "b"), 1.0, 3.0, now=0.0)
    table.heartbeat("h2", ("a",), 1.0, 3.0, now=0.0)
    changes = {topic: (previous, version) for topic, previous, version in table.drain_changes()}
    assert changes["a"][0] == 0 and changes["b"] == (0, table.version("b"))
    assert table.version("a") == table.seq  # h2 joining "a" was the last change
    assert table.drain_changes() == []
    table.heartbeat("h1", ("a", "b"), 1.0, 3.0, now=1.0)  # a refresh changes nothing
    assert table.drain_changes() == []
    before = table.version("a")
    table.remove("h2")
    assert table.drain_changes() == [("a", before, table.seq)]
    assert table.version("nobody") == 0


def test_a_peer_table_loads_with_its_ages_and_never_overrides_fresher_news(table):
    from rpcmm.protocol import TableRow

    table.heartbeat("h1", ("mine",), 1.0, 3.0, now=10.0)
    rows = [TableRow("h1", 0.5, 1.0, 3.0, ("theirs",)), TableRow("h2", 2.0, 1.0, 3.0, ("t",)),
            TableRow("dead", 5.0, 1.0, 3.0, ("t",))]
    assert table.load(rows, now=10.0) == 1
    assert table.hosts_for("mine") == ("h1",) and table.hosts_for("theirs") == ()
    assert table.expire(10.99) == [] and table.expire(11.0) == ["h2"]  # 2 s old + 3 s TTL


def test_a_topic_that_empties_and_refills_follows_its_last_version(table):
    table.heartbeat("h", ("gone",), 1.0, 3.0, now=0.0)
    table.drain_changes()
    table.remove("h")
    [(_, _, emptied)] = table.drain_changes()
    assert table.version("gone") == emptied and "gone" not in table._versions
    table.heartbeat("h", ("gone",), 1.0, 3.0, now=1.0)
    # The refill's DELTA follows the emptying one: a follower that applied it sees no gap.
    assert table.drain_changes() == [("gone", emptied, table.version("gone"))]
    assert table.version("gone") > emptied


def test_emptied_topics_keep_their_versions_only_up_to_a_bound(table, monkeypatch):
    from rpcmm import table as table_module

    monkeypatch.setattr(table_module, "_EMPTIED_KEPT", 3)
    for i in range(5):
        table.heartbeat("h", (f"t{i}",), 1.0, 3.0, now=0.0)
        table.remove("h")
        table.drain_changes()
    assert [table.version(f"t{i}") > 0 for i in range(5)] == [False, False, True, True, True]
    table.heartbeat("h", ("t0",), 1.0, 3.0, now=1.0)  # forgotten: a fresh start, never backwards
    assert table.drain_changes() == [("t0", 0, table.seq)]


def test_sweeps_skip_the_scan_until_the_earliest_deadline_but_never_miss_one(table):
    table.heartbeat("a", ("t",), 1.0, 3.0, now=0.0)
    table.heartbeat("b", ("t",), 1.0, 5.0, now=0.0)
    assert table.overdue(1.0) == []  # scans, and learns nothing is due before 3.0
    table.heartbeat("c", ("t",), 0.1, 0.5, now=1.0)  # a shorter TTL joins: due at 1.5
    assert table.overdue(1.6) == ["c"]
    table.heartbeat("a", ("t",), 0.1, 0.2, now=1.7)  # a timing change alone brings a deadline in
    assert table.overdue(2.0) == ["a", "c"]
    assert table.max_ttl() == 5.0 and table.min_interval() == 0.1
    table.remove("a"), table.remove("c")
    assert table.max_ttl() == 5.0 and table.min_interval() == 1.0


def test_out_of_bounds_timing_is_clamped_once_not_at_every_heartbeat():
    table = RegistryTable(TimingBounds(min_interval=1.0, min_ttl=2.0))
    table.heartbeat("eager", ("t",), 0.01, 0.02, now=0.0)
    extremes = table._timing_extremes()
    table.heartbeat("eager", ("t",), 0.01, 0.02, now=1.0)  # same declaration: a plain refresh
    assert table._timing_extremes() is extremes  # cached sweep bounds survive
    assert table.rows(now=1.0)[0][2:4] == (1.0, 2.0)
    table.heartbeat("eager", ("t",), 3.0, 9.0, now=2.0)  # a new declaration is applied
    assert table.rows(now=2.0)[0][2:4] == (3.0, 9.0) and table.max_ttl() == 9.0


# -- the registration cap ----------------------------------------------------------------------


@pytest.fixture
def capped():
    return RegistryTable(TimingBounds(min_interval=0.01, min_ttl=0.01), max_registrations=4)


def test_a_full_table_refuses_a_new_host_and_keeps_everyone_else(capped):
    assert capped.heartbeat("h1", ("a", "b", "c"), 1.0, 3.0, now=0.0) is Change.JOINED
    assert capped.heartbeat("h2", ("a", "b"), 1.0, 3.0, now=0.0) is Change.REFUSED
    assert "h2" not in capped and capped.hosts_for("a") == ("h1",)
    assert capped.registration_count == 3
    assert capped.heartbeat("h3", ("a",), 1.0, 3.0, now=0.0) is Change.JOINED  # exactly at the cap
    assert capped.registration_count == 4
    assert capped.heartbeat("h1", ("a", "b", "c"), 1.0, 3.0, now=1.0) is Change.REFRESHED
    assert capped.drain_changes() and not capped.drain_changes()


def test_a_refused_change_still_drops_the_topics_the_host_no_longer_serves(capped):
    capped.heartbeat("h1", ("a", "b"), 1.0, 3.0, now=0.0)
    capped.heartbeat("h2", ("a", "b"), 1.0, 3.0, now=0.0)
    capped.drain_changes()
    # h1 moves from (a, b) to (b, c, d): one more registration than the full table has room for.
    assert capped.heartbeat("h1", ("b", "c", "d"), 1.0, 3.0, now=1.0) is Change.REFUSED
    assert capped.hosts_for("a") == ("h2",) and capped.hosts_for("b") == ("h1", "h2")
    assert capped.hosts_for("c") == () and capped.registration_count == 3
    assert [topic for topic, _, _ in capped.drain_changes()] == ["a"]  # published to live caches
    # It keeps refreshing what it kept, and its new topics come in once there is room.
    assert capped.heartbeat("h1", ("b", "c", "d"), 1.0, 3.0, now=2.0) is Change.REFUSED
    assert capped.expire(3.5) == ["h2"] and capped.hosts_for("b") == ("h1",)
    assert capped.heartbeat("h1", ("b", "c", "d"), 1.0, 3.0, now=4.0) is Change.CHANGED
    assert all(capped.hosts_for(t) == ("h1",) for t in "bcd")


def test_a_refused_change_that_keeps_no_old_topic_removes_the_host(capped):
    capped.heartbeat("h1", ("a",), 1.0, 3.0, now=0.0)
    capped.heartbeat("h2", ("a", "b", "c"), 1.0, 3.0, now=0.0)
    assert capped.heartbeat("h1", ("x", "y"), 1.0, 3.0, now=1.0) is Change.REFUSED
    assert "h1" not in capped and capped.hosts_for("a") == ("h2",) and capped.registration_count == 3


def test_a_refused_topic_change_keeps_the_old_topics_alive(capped):
    capped.heartbeat("h1", ("a", "b"), 1.0, 3.0, now=0.0)
    capped.heartbeat("h2", ("a", "b"), 1.0, 3.0, now=0.0)
    capped.drain_changes()
    assert capped.heartbeat("h1", ("a", "b", "c"), 1.0, 3.0, now=2.0) is Change.REFUSED
    assert capped.hosts_for("c") == () and capped.hosts_for("a") == ("h1", "h2")
    assert capped.drain_changes() == []  # nothing changed, so nothing to publish
    # The refused heartbeat still counts as a sign of life: h1 outlives h2.
    assert capped.expire(3.5) == ["h2"]
    assert capped.hosts_for("a") == ("h1",)
    # Swapping topics adds nothing, and room freed by h2 lets the change in.
    assert capped.heartbeat("h1", ("a", "c"), 1.0, 3.0, now=4.0) is Change.CHANGED
    assert capped.heartbeat("h1", ("a", "b", "c"), 1.0, 3.0, now=4.0) is Change.CHANGED
    assert capped.registration_count == 3


def test_the_registration_count_follows_joins_changes_and_departures(capped):
    capped.heartbeat("h1", ("a", "b"), 1.0, 3.0, now=0.0)
    capped.heartbeat("h1", ("b", "c"), 1.0, 3.0, now=0.0)
    assert capped.registration_count == 2
    capped.heartbeat("h2", ("a",), 1.0, 3.0, now=0.0)
    capped.remove("h1")
    assert capped.registration_count == 1
    capped.heartbeat("h2", (), 1.0, 3.0, now=1.0)
    assert capped.registration_count == 0 and len(capped) == 0


def test_loading_a_peer_table_stops_at_the_cap(capped):
    rows = [TableRow(f"h{i}", 0.0, 1.0, 3.0, ("a", "b")) for i in range(3)]
    assert capped.load(rows, now=0.0) == 2
    assert capped.registration_count == 4 and "h2" not in capped


def test_the_cap_must_be_positive():
    with pytest.raises(ValueError):
        RegistryTable(max_registrations=0)


# -- listing in pages ----------------------------------------------------------------------------


def _list_all(table, max_bytes, now=0.0):
    rows, after, pages = [], "", 0
    while True:
        page, after = table.page(after, now, max_bytes)
        rows += page
        pages += 1
        if not after:
            return rows, pages


def test_pages_list_every_host_once_in_name_order(table):
    for i in range(50):
        table.heartbeat(f"h{i:02d}", ("a", f"t{i}"), 1.0, 3.0, now=0.0)
    rows, pages = _list_all(table, max_bytes=300)
    assert [r.host for r in rows] == [f"h{i:02d}" for i in range(50)]
    assert rows == list(table.rows(now=0.0))
    assert 5 < pages < 50


def test_a_page_fits_its_budget_as_encoded(table):
    for i in range(200):
        table.heartbeat(f"host-{i:03d}.example.org", tuple(f"topic-{j}" for j in range(i % 12 + 1)), 1.0, 3.0,
                        now=0.0)
    after = ""
    while True:
        rows, after = table.page(after, 0.0, 2000)
        assert len(p.encode(p.Table(2**40, rows, p.State.UP, after))) <= 2000 + 64
        if not after:
            break


def test_a_row_larger_than_the_budget_gets_a_page_of_its_own(table):
    table.heartbeat("big", tuple(f"topic-{j}" for j in range(100)), 1.0, 3.0, now=0.0)
    table.heartbeat("small", ("a",), 1.0, 3.0, now=0.0)
    assert [r.host for r in table.page("", 0.0, 100)[0]] == ["big"]
    assert table.page("", 0.0, 100)[1] == "big"
    assert table.page("big", 0.0, 100) == ((table.rows(0.0)[1],), "")


def test_hosts_joining_and_leaving_between_pages_are_listed_at_most_once(table):
    for name in ("b", "d", "f"):
        table.heartbeat(name, ("t",), 1.0, 3.0, now=0.0)
    first, after = table.page("", 0.0, 50)
    assert [r.host for r in first] == ["b"] and after == "b"
    table.heartbeat("a", ("t",), 1.0, 3.0, now=0.0)  # sorts before the cursor: not listed
    table.heartbeat("c", ("t",), 1.0, 3.0, now=0.0)  # after it: listed
    table.remove("d")
    rest = []
    while after:
        page, after = table.page(after, 0.0, 50)
        rest += [r.host for r in page]
    assert rest == ["c", "f"]


def test_an_empty_table_is_one_empty_page(table):
    assert table.page("", 0.0, 1000) == ((), "")
    assert table.page("zzz", 0.0, 1000) == ((), "")


# -- per-key quotas ------------------------------------------------------------------------------


def test_a_key_at_its_quota_gets_no_new_host_and_keeps_its_others(table):
    assert table.heartbeat("a1", ("t",), 1.0, 3.0, 0.0, "key-a", 2) is Change.JOINED
    assert table.heartbeat("a2", ("t",), 1.0, 3.0, 0.0, "key-a", 2) is Change.JOINED
    assert table.heartbeat("a3", ("t",), 1.0, 3.0, 0.0, "key-a", 2) is Change.OVER_QUOTA
    assert "a3" not in table and table.hosts_owned_by("key-a") == 2
    # Its hosts refresh and change topics as before; another key has its own count.
    assert table.heartbeat("a1", ("t",), 1.0, 3.0, 1.0, "key-a", 2) is Change.REFRESHED
    assert table.heartbeat("a2", ("t", "u"), 1.0, 3.0, 1.0, "key-a", 2) is Change.CHANGED
    assert table.heartbeat("b1", ("t",), 1.0, 3.0, 1.0, "key-b", 2) is Change.JOINED
    assert table.hosts_for("t") == ("a1", "a2", "b1")


def test_a_host_leaving_by_any_path_frees_its_keys_quota(table):
    for host in ("h1", "h2", "h3"):
        table.heartbeat(host, ("t",), 1.0, 3.0, 0.0, "key", 3)
    table.remove("h1")  # unregistered, or dropped as suspect
    table.heartbeat("h2", (), 1.0, 3.0, 1.0, "key", 3)  # a heartbeat with no topics
    table.heartbeat("h3", ("t",), 1.0, 3.0, 1.0, "key", 3)
    assert table.hosts_owned_by("key") == 1
    table.expire(10.0)  # h3 expires
    assert table.hosts_owned_by("key") == 0 and table._owned == {}
    assert all(table.heartbeat(f"n{i}", ("t",), 1.0, 3.0, 11.0, "key", 3) is Change.JOINED for i in range(3))
    assert table.heartbeat("n3", ("t",), 1.0, 3.0, 11.0, "key", 3) is Change.OVER_QUOTA


def test_hosts_count_against_the_key_that_registered_them_first(table):
    table.heartbeat("shared", ("t",), 1.0, 3.0, 0.0, "first", 1)
    assert table.heartbeat("shared", ("t",), 1.0, 3.0, 1.0, "second", 1) is Change.REFRESHED
    assert table.hosts_owned_by("first") == 1 and table.hosts_owned_by("second") == 0
    assert table.heartbeat("own", ("t",), 1.0, 3.0, 1.0, "second", 1) is Change.JOINED


def test_hosts_without_an_owner_count_against_nobody(table):
    table.heartbeat("plain", ("t",), 1.0, 3.0, now=0.0)
    table.load([TableRow("loaded", 0.0, 1.0, 3.0, ("t",))], now=0.0)
    assert table._owned == {}
    table.remove("plain")
    table.remove("loaded")
    assert table._owned == {}


def test_an_unauthenticated_key_is_an_owner_like_any_other(table):
    # Without CURVE every peer's key is None: a quota on the default grant caps them together.
    assert table.heartbeat("x", ("t",), 1.0, 3.0, 0.0, None, 1) is Change.JOINED
    assert table.heartbeat("y", ("t",), 1.0, 3.0, 0.0, None, 1) is Change.OVER_QUOTA


def test_a_quota_key_takes_on_the_hosts_it_refreshes_that_nobody_owns(table):
    # Loaded from a peer at warm-up: owned by nobody until a key refreshes them.
    table.load([TableRow("h1", 0.0, 1.0, 3.0, ("t",)), TableRow("h2", 0.0, 1.0, 3.0, ("t",))], now=0.0)
    assert table.heartbeat("h1", ("t",), 1.0, 3.0, 1.0, "key", 2) is Change.REFRESHED
    assert table.heartbeat("h2", ("t", "u"), 1.0, 3.0, 1.0, "key", 2) is Change.CHANGED
    assert table.hosts_owned_by("key") == 2
    assert table.heartbeat("h3", ("t",), 1.0, 3.0, 1.0, "key", 2) is Change.OVER_QUOTA
    assert table.heartbeat("h1", ("t",), 1.0, 3.0, 2.0, "other", 5) is Change.REFRESHED  # already owned
    assert table.hosts_owned_by("other") == 0


def test_the_kept_sorted_names_follow_joins_and_departures():
    table = RegistryTable(TimingBounds(min_interval=0.01, min_ttl=0.01))
    rnd = random.Random(3)
    names = [f"h{rnd.randrange(10_000):05d}" for _ in range(400)]
    for name in names[:200]:
        table.heartbeat(name, ("t",), 1.0, 3.0, now=0.0)
    table.page("", 0.0, 100)  # sorts and keeps the names
    for step, name in enumerate(names[200:] + names[:100]):
        if step % 3:
            table.heartbeat(name, ("t",), 1.0, 3.0, now=0.0)
        else:
            table.remove(name)
        if table._sorted is not None:
            assert table._sorted == sorted(table._hosts)
    assert [r.host for r in _list_all(table, 500)[0]] == sorted(table._hosts)


def test_many_joins_drop_the_kept_names_for_one_sort_at_the_next_listing(table):
    table.heartbeat("a", ("t",), 1.0, 3.0, now=0.0)
    table.page("", 0.0, 100)
    for i in range(300):  # more than _SORTED_EDITS
        table.heartbeat(f"b{i:03d}", ("t",), 1.0, 3.0, now=0.0)
    assert table._sorted is None
    assert [r.host for r in _list_all(table, 1000)[0]] == ["a"] + [f"b{i:03d}" for i in range(300)]
