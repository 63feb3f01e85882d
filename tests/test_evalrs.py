"""The EvalRS folder loader: round trip, parquet cache (hit, invalidation, corruption, read-only)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from tripletlit.data import evalrs
from tripletlit.data.evalrs import CACHE_FOLDER, load_evalrs, write_evalrs


def _same_tables(a, b):
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.users, b.users)
    pd.testing.assert_frame_equal(a.tracks.drop(columns="albums_id"), b.tracks.drop(columns="albums_id"))
    assert all(np.array_equal(x, y) for x, y in zip(a.tracks["albums_id"], b.tracks["albums_id"]))


def test_round_trip_matches_generated_tables(tiny, tiny_folder):
    dataset, _ = tiny
    loaded = load_evalrs(tiny_folder)
    pd.testing.assert_frame_equal(loaded.events, dataset.events)
    assert loaded.users["user_id"].tolist() == dataset.users["user_id"].tolist()
    assert loaded.users["gender"].tolist() == dataset.users["gender"].tolist()
    assert loaded.users["country"].tolist() == dataset.users["country"].tolist()
    first = loaded.tracks["albums_id"].iloc[0]
    assert isinstance(first, np.ndarray) and first.dtype == np.int64
    assert np.array_equal(dataset.tracks["albums_id"].iloc[0], first)
    text = (tiny_folder / "evalrs_tracks.csv").read_text().splitlines()[1]
    assert '"[' + ", ".join(map(str, first)) + ']"' in text
    assert loaded.song2vec is None


def test_official_layout_event_id_column(tiny, tiny_folder):
    header = (tiny_folder / "evalrs_events.csv").read_text().splitlines()[0]
    assert header.replace('"', "") == ",user_id,artist_id,album_id,track_id,timestamp,user_track_count"
    ids = pd.read_csv(tiny_folder / "evalrs_events.csv", index_col=0).index.to_numpy()
    assert np.array_equal(ids, tiny[1])


def test_second_load_reads_the_cache_not_the_csv(tiny_folder, monkeypatch):
    first = load_evalrs(tiny_folder)
    assert (tiny_folder / CACHE_FOLDER / "events.parquet").exists()

    def no_csv(*args, **kwargs):
        raise AssertionError("CSV parsed although the cache is valid")

    monkeypatch.setattr(evalrs, "read_csv", no_csv)
    _same_tables(first, load_evalrs(tiny_folder))


def test_editing_a_csv_invalidates_the_cache(tiny_folder):
    load_evalrs(tiny_folder)
    path = tiny_folder / "evalrs_events.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))  # drop the last event
    assert len(load_evalrs(tiny_folder).events) == len(lines) - 2


def test_corrupt_cache_is_rebuilt_with_a_warning(tiny_folder, caplog):
    first = load_evalrs(tiny_folder)
    (tiny_folder / CACHE_FOLDER / "events.parquet").write_bytes(b"PAR1 this is not parquet")
    with caplog.at_level(logging.WARNING):
        again = load_evalrs(tiny_folder)
    assert "unreadable" in caplog.text
    _same_tables(first, again)
    # and the rebuilt cache is valid again
    assert evalrs._read_cache(tiny_folder / CACHE_FOLDER, evalrs._fingerprint(tiny_folder)) is not None


def test_cache_falls_back_to_user_cache_dir(tiny_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("TRIPLETLIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(evalrs.os, "access", lambda path, mode: False)
    load_evalrs(tiny_folder)
    assert list((tmp_path / "cache" / "tables").glob("*/events.parquet"))
    assert not (tiny_folder / CACHE_FOLDER).exists()


def test_write_with_cache_loads_without_parsing(tiny, tmp_path, monkeypatch):
    dataset, ids = tiny
    folder = write_evalrs(dataset, tmp_path / "cached", ids)
    monkeypatch.setattr(evalrs, "read_csv", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    loaded = load_evalrs(folder)
    pd.testing.assert_frame_equal(loaded.events, dataset.events)


def test_song2vec_is_detected(tiny_folder):
    (tiny_folder / "song2vec.wv").write_bytes(b"")
    assert load_evalrs(tiny_folder).song2vec == tiny_folder / "song2vec.wv"


def test_generated_files_are_readable_by_others(tiny_folder):
    assert (tiny_folder / "evalrs_events.csv").stat().st_mode & 0o044
