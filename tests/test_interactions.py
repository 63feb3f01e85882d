"""Bring-your-own interactions: CSV/TSV/parquet, column mapping, id maps and round trips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tripletlit.data import schema
from tripletlit.data.evalrs import load_evalrs, write_evalrs
from tripletlit.data.interactions import load_interactions
from tripletlit.errors import DataError

PLAYS = """uid,item,ts,artist
u2,song-a,10,x
u1,song-a,5,x
u2,song-a,30,y
u1,song-b,7,x
u10,song-c,8,z
u2,song-a,20,x
"""
MAPPING = {"user_id": "uid", "track_id": "item", "timestamp": "ts", "artist_id": "artist"}


@pytest.fixture
def plays_csv(tmp_path):
    path = tmp_path / "plays.csv"
    path.write_text(PLAYS)
    return path


def test_string_ids_and_repeated_rows(plays_csv):
    ds = load_interactions(plays_csv, MAPPING)
    maps = ds.meta["id_maps"]
    assert maps["user_id"] == {"u1": 0, "u10": 1, "u2": 2}
    assert maps["track_id"] == {"song-a": 0, "song-b": 1, "song-c": 2}
    assert maps["artist_id"] == {"x": 0, "y": 1, "z": 2}
    assert "album_id" not in maps  # album ids default to the (already integer) artist ids
    rows = ds.events.set_index(["user_id", "track_id"])
    assert len(rows) == 4 and int(ds.events["user_track_count"].sum()) == 6
    u2_a = rows.loc[(2, 0)]
    assert u2_a["user_track_count"] == 3 and u2_a["timestamp"] == 30
    assert u2_a["artist_id"] == 1 and u2_a["album_id"] == 1  # latest play's artist, album = artist
    users = ds.users.set_index("user_id")
    assert users.loc[2, "playcount"] == 3 and users.loc[0, "playcount"] == 2
    assert users["country"].isna().all() and users["gender"].isna().all()
    assert (users["age"] == -1).all() and (users["registered_unixtime"] == 0).all()
    assert [list(a) for a in ds.tracks["albums_id"]] == [[0, 1], [0], [2]]
    assert ds.name == "plays" and ds.n_tracks == 3


def test_defaults_and_summed_counts(tmp_path):
    path = tmp_path / "ratings.tsv"
    path.write_text("user_id\ttrack_id\tuser_track_count\n3\t40\t2\n3\t40\t5\n4\t41\t1\n")
    ds = load_interactions(path)
    assert ds.meta == {}
    expected = pd.DataFrame(
        {
            "user_id": [3, 4],
            "artist_id": [40, 41],
            "album_id": [40, 41],
            "track_id": [40, 41],
            "timestamp": [0, 0],
            "user_track_count": [7, 1],
        }
    ).astype(np.int32)
    pd.testing.assert_frame_equal(ds.events, expected)


def test_parquet_input_with_datetimes(tmp_path):
    path = tmp_path / "plays.parquet"
    pd.DataFrame(
        {
            "user": ["a", "b", "a"],
            "song": [10, 11, 10],
            "when": pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03"]),
            "n": [1, 2, 3],
        }
    ).to_parquet(path)
    ds = load_interactions(
        path, {"user_id": "user", "track_id": "song", "timestamp": "when", "user_track_count": "n"}
    )
    assert list(ds.meta["id_maps"]) == ["user_id"]
    rows = ds.events.set_index(["user_id", "track_id"])
    assert rows.loc[(0, 10), "user_track_count"] == 4
    assert rows.loc[(0, 10), "timestamp"] == int(pd.Timestamp("2020-01-03").timestamp())


def test_missing_mapped_column(plays_csv):
    with pytest.raises(DataError) as error:
        load_interactions(plays_csv, {**MAPPING, "user_track_count": "rating"})
    message = str(error.value)
    assert "plays.csv" in message and "'rating'" in message and "uid, item, ts, artist" in message
    with pytest.raises(DataError, match="no column 'user_id'"):
        load_interactions(plays_csv)
    with pytest.raises(DataError, match="unknown column 'user'"):
        load_interactions(plays_csv, {"user": "uid"})


def test_bad_values(tmp_path):
    path = tmp_path / "plays.csv"
    path.write_text("user_id,track_id,timestamp\n1,2,3\n1,3,1.5\n")
    with pytest.raises(DataError, match=r"'timestamp' must hold integers but has .*1\.5.*\(line 3\)"):
        load_interactions(path)
    path.write_text("user_id,track_id\nu1,2\n,3\n")
    with pytest.raises(DataError, match=r"'user_id' is empty on line 3"):
        load_interactions(path)


def test_users_and_tracks_files(plays_csv, tmp_path):
    users = tmp_path / "users.csv"
    users.write_text("uid,cc,gender,age\nu1,NA,Male,20\nu2,,,\nu10,UK,f,31\nu99,DE,n,\n")
    tracks = tmp_path / "tracks.tsv"
    tracks.write_text("item\ttrack\tartist\nsong-a\tA Song\tThe Band\nsong-zzz\tUnused\tNobody\n")
    ds = load_interactions(
        plays_csv, {**MAPPING, "country": "cc"}, users_path=users, tracks_path=tracks
    )
    assert ds.meta["id_maps"]["user_id"] == {"u1": 0, "u10": 1, "u2": 2, "u99": 3}
    table = ds.users.set_index("user_id")
    assert table.loc[0, "country"] == "NA" and table.loc[0, "gender"] == "m"
    assert table.loc[0, "age"] == 20 and table.loc[2, "age"] == -1
    assert pd.isna(table.loc[2, "country"]) and pd.isna(table.loc[2, "gender"])
    assert table.loc[3, "playcount"] == 0
    names = ds.tracks.set_index("track_id")
    assert names.loc[0, "track"] == "A Song" and names.loc[0, "artist"] == "The Band"
    assert names.loc[1, "track"] == "" and len(names) == 3
    users.write_text("uid\nu1\nu2\n")
    with pytest.raises(DataError, match=r"user_id 1 .*is not in"):
        load_interactions(plays_csv, MAPPING, users_path=users)


def test_round_trip_through_evalrs_folder(plays_csv, tmp_path):
    ds = load_interactions(plays_csv, MAPPING)
    folder = write_evalrs(ds, tmp_path / "evalrs")
    back = load_evalrs(folder, cache=False)
    pd.testing.assert_frame_equal(back.events, ds.events)
    pd.testing.assert_frame_equal(back.users, ds.users)
    pd.testing.assert_frame_equal(
        back.tracks.drop(columns="albums_id"), ds.tracks.drop(columns="albums_id")
    )
    assert [list(a) for a in back.tracks["albums_id"]] == [list(a) for a in ds.tracks["albums_id"]]
    schema.validate_references(back.events, back.tracks, back.users)
