import json
import os

from rpcmm.cachefile import load_cache, save_cache


def test_round_trip_with_age(tmp_path):
    path = tmp_path / "cache.json"
    save_cache(path, {"t": ["h1", "h2"]}, wall_clock=lambda: 100.0)
    assert load_cache(path, wall_clock=lambda: 130.0) == ({"t": ("h1", "h2")}, 30.0)


def test_the_write_is_atomic_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    path = tmp_path / "cache.json"
    save_cache(path, {"t": ["old"]})

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", broken_dump)
    try:
        save_cache(path, {"t": ["new"]})
    except OSError:
        pass
    monkeypatch.undo()
    assert load_cache(path)[0] == {"t": ("old",)}
    assert os.listdir(tmp_path) == ["cache.json"]


def test_bad_files_are_ignored_not_fatal(tmp_path):
    assert load_cache(tmp_path / "missing.json") == ({}, None)
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    assert load_cache(corrupt) == ({}, None)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert load_cache(deep) == ({}, None)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": 1, "saved_at": 0, "topics": {"ok": ["h"], "bad": ["a b"], "x": 5}}))
    assert load_cache(wrong)[0] == {"ok": ("h",)}
