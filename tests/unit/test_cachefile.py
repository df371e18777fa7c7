import json
import os

import pytest

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


def test_a_file_over_the_size_limit_is_not_read(tmp_path, monkeypatch):
    import rpcmm.cachefile as cachefile
    path = tmp_path / "big.json"
    save_cache(path, {f"t{i}": ("h",) for i in range(100)}, wall_clock=lambda: 0.0)
    monkeypatch.setattr(cachefile, "MAX_CACHE_FILE_BYTES", os.path.getsize(path) - 1)
    assert load_cache(path) == ({}, None)


@pytest.mark.parametrize("saved_at", ["1e999", "NaN", "-Infinity", "true"])
def test_a_save_time_that_is_not_a_time_means_an_unknown_age(tmp_path, saved_at):
    path = tmp_path / "odd.json"
    path.write_text('{"format": 1, "saved_at": %s, "topics": {"t": ["h"]}}' % saved_at)
    assert load_cache(path, wall_clock=lambda: 100.0) == ({"t": ("h",)}, None)
