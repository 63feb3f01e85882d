"""The raw LFM-1b loader: aggregation of plays, chunking, users, names and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tripletlit.data import schema
from tripletlit.data.lfm1b import aggregate_plays, load_lfm1b, load_users
from tripletlit.errors import DataError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LFM1B = SHARED_DATA / "lfm1b"
EVENTS = LFM1B / "LFM-1b_LEs-head.tsv"
USERS = LFM1B / "LFM-1b_users.txt"
USERS_HEADER = "user_id\tcountry\tage\tgender\tplaycount\tregistered_unixtime\n"


def _need_sample() -> None:
    if not (EVENTS.is_file() and USERS.is_file()):
        pytest.skip(f"the real LFM-1b sample is absent ({LFM1B}); see shared/data/SOURCE.md")


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    """The sample's plays, read independently with plain pandas."""
    _need_sample()
    return pd.read_csv(EVENTS, sep="\t")


@pytest.fixture(scope="module")
def sample():
    _need_sample()
    return load_lfm1b(EVENTS, USERS)


def _assert_same(a, b) -> None:
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.tracks.drop(columns="albums_id"), b.tracks.drop(columns="albums_id"))
    assert all(np.array_equal(x, y) for x, y in zip(a.tracks["albums_id"], b.tracks["albums_id"]))
    pd.testing.assert_frame_equal(a.users, b.users)


# --------------------------------------------------------------------------- real sample


def test_one_row_per_distinct_pair(sample, raw):
    assert len(sample.events) == len(raw.drop_duplicates(["user_id", "track_id"]))
    assert list(sample.events.columns) == list(schema.EVENT_COLUMNS)
    assert all(dtype == np.int32 for dtype in sample.events.dtypes)


def test_counts_sum_to_the_plays(sample, raw):
    assert int(sample.events["user_track_count"].sum()) == 10_000 == len(raw)
    expected = raw.groupby(["user_id", "track_id"]).size().rename("expected").reset_index()
    merged = sample.events.merge(expected, on=["user_id", "track_id"], validate="one_to_one")
    assert (merged["user_track_count"] == merged["expected"]).all()


def test_latest_timestamp_and_its_album(sample, raw):
    latest = raw.groupby(["user_id", "track_id"])["timestamp"].max().rename("expected").reset_index()
    merged = sample.events.merge(latest, on=["user_id", "track_id"], validate="one_to_one")
    assert (merged["timestamp"] == merged["expected"]).all()
    last_play = raw.sort_values(["user_id", "track_id", "timestamp", "album_id", "artist_id"])
    last_play = last_play.groupby(["user_id", "track_id"]).tail(1)
    merged = sample.events.merge(last_play, on=["user_id", "track_id"], suffixes=("", "_raw"))
    assert (merged["album_id"] == merged["album_id_raw"]).all()
    assert (merged["artist_id"] == merged["artist_id_raw"]).all()


def test_users_and_tracks(sample, raw):
    assert sample.events["user_id"].nunique() == 3
    assert set(sample.events["user_id"]) == {31435741, 21072247, 12142866}
    assert sample.n_users == 120_322
    assert sample.n_tracks == 2_277 == raw["track_id"].nunique()
    assert sample.name == "lfm1b" and sample.source == LFM1B
    albums = raw.groupby("track_id")["album_id"].unique().map(sorted)
    got = sample.tracks.set_index("track_id")["albums_id"]
    assert all(list(got[t]) == albums[t] for t in albums.index)
    assert got.map(lambda a: a.dtype == np.int64).all()
    assert (sample.tracks["track"] == "").all() and (sample.tracks["albums"] == "[]").all()


def test_small_chunks_give_the_same_result(sample):
    _assert_same(load_lfm1b(EVENTS, USERS, chunk_bytes=4096), sample)


def test_headerless_file_gives_the_same_result(sample, tmp_path):
    lines = EVENTS.read_text().splitlines(keepends=True)
    headerless = tmp_path / "LFM-1b_LEs.txt"
    headerless.write_text("".join(lines[1:]))
    _assert_same(load_lfm1b(headerless, USERS, chunk_bytes=64 << 10), sample)


def test_users_file_missing_values_like_pandas():
    _need_sample()
    users = load_users(USERS)
    plain = pd.read_csv(USERS, sep="\t", keep_default_na=False, dtype=str)
    assert len(users) == len(plain) == 120_322
    assert int(users["country"].isna().sum()) == int((plain["country"] == "").sum())
    assert int(users["gender"].isna().sum()) == int((plain["gender"] == "").sum())
    n_namibia = int((plain["country"] == "NA").sum())
    assert n_namibia > 0 and int((users["country"] == "NA").sum()) == n_namibia
    assert users["age"].dtype == np.int32 and users["playcount"].dtype == np.int64


# --------------------------------------------------------------------------- synthetic files


def _plays(tmp_path: Path, text: str, users: str = "1\tUK\t20\tm\t10\t0\n2\t\t-1\t\t5\t0\n"):
    events = tmp_path / "LFM-1b_LEs.txt"
    events.write_text(text)
    users_file = tmp_path / "LFM-1b_users.txt"
    users_file.write_text(USERS_HEADER + users)
    return events, users_file


def test_aggregation_rules(tmp_path):
    # user track: three plays of track 7 by user 1, the latest (t=300) from album 9
    events, users = _plays(
        tmp_path,
        "1\t5\t8\t7\t100\n1\t5\t9\t7\t300\n2\t6\t4\t3\t50\n1\t5\t8\t7\t200\n1\t5\t4\t3\t10\n",
    )
    ds = load_lfm1b(events, users)
    rows = ds.events.set_index(["user_id", "track_id"])
    assert rows.loc[(1, 7)].tolist() == [5, 9, 300, 3]
    assert rows.loc[(1, 3)].tolist() == [5, 4, 10, 1]
    assert rows.loc[(2, 3)].tolist() == [6, 4, 50, 1]
    tracks = ds.tracks.set_index("track_id")
    assert list(tracks.loc[7, "albums_id"]) == [8, 9]
    assert tracks.loc[3, "artist_id"] == 6  # the artist of the track's latest play (t=50)


def test_aggregate_plays_merges_its_own_partials():
    rng = np.random.default_rng(0)
    n = 5_000
    plays = pd.DataFrame(
        {
            "user_id": rng.integers(0, 20, n),
            "artist_id": rng.integers(0, 5, n),
            "album_id": rng.integers(0, 9, n),
            "track_id": rng.integers(0, 40, n),
            "timestamp": rng.integers(0, 50, n),  # many ties
        }
    ).astype(np.int32)
    whole = aggregate_plays(plays)
    cuts = [0, 1, 700, 2_000, 2_001, 4_321, n]
    parts = pd.concat(
        [aggregate_plays(plays.iloc[a:b]) for a, b in zip(cuts[:-1], cuts[1:])], ignore_index=True
    )
    pd.testing.assert_frame_equal(aggregate_plays(parts), whole)
    shuffled = plays.sample(frac=1.0, random_state=1)
    pd.testing.assert_frame_equal(aggregate_plays(shuffled), whole)
    assert int(whole["user_track_count"].sum()) == n


def test_name_files(tmp_path):
    events, users = _plays(tmp_path, "1\t5\t8\t7\t100\n1\t5\t9\t7\t300\n2\t6\t4\t3\t50\n")
    (tmp_path / "tracks.txt").write_text("7\tSomething\t5\n3\tIt's \"quoted\"\t6\n99\tUnused\t1\n")
    (tmp_path / "artists.txt").write_text("5\tThe Beatles\n6\tNina\n")
    (tmp_path / "albums.txt").write_text("8\tAbbey Road\t5\n9\tLet's Go\t5\n")
    ds = load_lfm1b(
        events,
        users,
        tracks_path=tmp_path / "tracks.txt",
        artists_path=tmp_path / "artists.txt",
        albums_path=tmp_path / "albums.txt",
    )
    tracks = ds.tracks.set_index("track_id")
    assert tracks.loc[7, "track"] == "Something" and tracks.loc[3, "track"] == "It's \"quoted\""
    assert tracks.loc[7, "artist"] == "The Beatles" and tracks.loc[3, "artist"] == "Nina"
    assert tracks.loc[7, "albums"] == str(["Abbey Road", "Let's Go"])
    assert tracks.loc[3, "albums"] == "['']"  # album 4 has no name in the file
    assert 99 not in tracks.index


# --------------------------------------------------------------------------- bad input


def test_missing_files(tmp_path):
    events, users = _plays(tmp_path, "1\t5\t8\t7\t100\n")
    with pytest.raises(DataError, match="nope.txt: file not found"):
        load_lfm1b(tmp_path / "nope.txt", users)
    with pytest.raises(DataError, match="no_users.txt: file not found"):
        load_lfm1b(events, tmp_path / "no_users.txt")


def test_text_in_track_id(tmp_path):
    good = "1\t5\t8\t7\t100\n" * 500
    events, users = _plays(tmp_path, good + "1\t5\t8\tabc\t100\n")
    with pytest.raises(DataError) as error:
        load_lfm1b(events, users, chunk_bytes=4096)
    message = str(error.value)
    assert "LFM-1b_LEs.txt" in message and "'track_id'" in message and "'abc'" in message
    assert "line 501" in message and "\n" not in message


def test_row_with_too_few_fields(tmp_path):
    events, users = _plays(tmp_path, "1\t5\t8\t7\t100\n1\t5\t8\t100\n")
    with pytest.raises(DataError, match=r"LFM-1b_LEs.txt: a row has 4 .* instead of 5"):
        load_lfm1b(events, users)


def test_missing_and_negative_values(tmp_path):
    events, users = _plays(tmp_path, "1\t5\t\t7\t100\n")
    with pytest.raises(DataError, match=r"'album_id' has a missing.*line 1"):
        load_lfm1b(events, users)
    events.write_text("user_id\tartist_id\talbum_id\ttrack_id\ttimestamp\n1\t5\t8\t7\t-4\n")
    with pytest.raises(DataError, match=r"'timestamp' has -4 below the minimum 0 \(line 2\)"):
        load_lfm1b(events, users)


def test_bad_header(tmp_path):
    events, users = _plays(tmp_path, "user_id\tplays\talbum_id\ttrack_id\ttimestamp\n1\t5\t8\t7\t100\n")
    with pytest.raises(DataError, match="unexpected header"):
        load_lfm1b(events, users)


def test_user_missing_from_users_file(tmp_path):
    events, users = _plays(tmp_path, "1\t5\t8\t7\t100\n3\t5\t8\t7\t100\n")
    with pytest.raises(DataError, match=r"user_id 3 .*is not in") as error:
        load_lfm1b(events, users)
    assert "\n" not in str(error.value)
