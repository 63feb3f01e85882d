"""Bad input in an EvalRS folder: each case gives one DataError naming file, column and value."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from tripletlit.data import schema
from tripletlit.data.evalrs import load_evalrs
from tripletlit.errors import DataError


def _edit(path, transform):
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(transform(lines)))


def _set_field(path, line_no, column, value):
    """Replace one field (by column name) on one line of a CSV written by write_evalrs."""
    def transform(lines):
        header = [h.strip('"') for h in lines[0].rstrip("\n").split(",")]
        fields = re.findall(r'("[^"]*"|[^,]*)(?:,|$)', lines[line_no].rstrip("\n"))[: len(header)]
        fields[header.index(column)] = value
        lines[line_no] = ",".join(fields) + "\n"
        return lines
    _edit(path, transform)


EVENTS, TRACKS, USERS = schema.EVENTS_FILE, schema.TRACKS_FILE, schema.USERS_FILE

# (file, line, column, new value, words the message must contain)
FIELD_CASES = [
    (EVENTS, 3, "user_id", "", ["evalrs_events.csv", "'user_id'", "missing/NaN", "line 3"]),
    (EVENTS, 5, "track_id", "abc", ["evalrs_events.csv", "'track_id'", "'abc'", "line 5"]),
    (EVENTS, 4, "user_track_count", "-3", ["evalrs_events.csv", "'user_track_count'", "-3", "line 4"]),
    (EVENTS, 4, "user_track_count", "0", ["evalrs_events.csv", "'user_track_count'", "is 0"]),
    (EVENTS, 6, "timestamp", "12.5", ["evalrs_events.csv", "'timestamp'", "has 12.5 (line 6)"]),
    (EVENTS, 6, "timestamp", "inf", ["evalrs_events.csv", "'timestamp'", "has inf (line 6)"]),
    (EVENTS, 2, "track_id", "99999999999", ["evalrs_events.csv", "'track_id'", "99999999999", "int32"]),
    (EVENTS, 2, "track_id", "123", ["evalrs_events.csv", "track_id 123", "evalrs_tracks.csv"]),
    (EVENTS, 2, "user_id", "7", ["evalrs_events.csv", "user_id 7", "evalrs_users.csv"]),
    (TRACKS, 3, "albums_id", '"1, 2"', ["evalrs_tracks.csv", "'albums_id'", "'1, 2'", "line 3"]),
    (TRACKS, 3, "albums_id", '"[1, x]"', ["evalrs_tracks.csv", "'albums_id'", "[1, x]"]),
    (TRACKS, 2, "albums_id", "", ["evalrs_tracks.csv", "'albums_id' is empty (line 2)", '"[]"']),
    (TRACKS, 4, "artist_id", "-1", ["evalrs_tracks.csv", "'artist_id'", "-1"]),
    (USERS, 3, "gender", '"x"', ["evalrs_users.csv", "'gender'", "'x'", "m, f, n"]),
    (USERS, 3, "age", '"old"', ["evalrs_users.csv", "'age'", "'old'"]),
    (USERS, 5, "playcount", "-5", ["evalrs_users.csv", "'playcount'", "-5", "minimum -1"]),
]


@pytest.mark.parametrize("file,line,column,value,words", FIELD_CASES, ids=lambda v: str(v)[:24])
def test_bad_field_is_one_line_error(tiny_folder, file, line, column, value, words):
    _set_field(tiny_folder / file, line - 1, column, value)
    with pytest.raises(DataError) as info:
        load_evalrs(tiny_folder)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_duplicate_pair_is_reported(tiny_folder):
    path = tiny_folder / EVENTS
    _edit(path, lambda lines: lines + [lines[5].replace(lines[5].split(",")[0], "999999999", 1)])
    with pytest.raises(DataError, match=r"evalrs_events.csv: duplicate \(user_id, track_id\) pair"):
        load_evalrs(tiny_folder)


@pytest.mark.parametrize("file", [EVENTS, TRACKS, USERS])
def test_missing_file(tiny_folder, file):
    (tiny_folder / file).unlink()
    with pytest.raises(DataError, match=f"{file}: file not found"):
        load_evalrs(tiny_folder)


@pytest.mark.parametrize("file,column", [(EVENTS, "timestamp"), (TRACKS, "albums_id"), (USERS, "gender")])
def test_missing_column(tiny_folder, file, column):
    path = tiny_folder / file
    _edit(path, lambda lines: [lines[0].replace(f'"{column}"', '"renamed"')] + lines[1:])
    with pytest.raises(DataError, match=f"{file}: missing column '{column}'"):
        load_evalrs(tiny_folder)


def test_header_only_and_empty_files(tiny_folder):
    path = tiny_folder / USERS
    _edit(path, lambda lines: lines[:1])
    with pytest.raises(DataError, match="no rows"):
        load_evalrs(tiny_folder)
    path.write_text("")
    with pytest.raises(DataError, match="evalrs_users.csv"):
        load_evalrs(tiny_folder)


def test_missing_folder_names_fix(tmp_path):
    with pytest.raises(DataError, match="tripletlit data generate"):
        load_evalrs(tmp_path / "nope")


def test_country_na_is_namibia_not_missing(tiny_folder):
    _set_field(tiny_folder / USERS, 1, "country", '"NA"')
    users = load_evalrs(tiny_folder).users
    assert users["country"].iloc[0] == "NA"
    # an empty field is missing
    assert users["country"].isna().sum() > 0


def test_album_ids_parse_official_text():
    parsed = schema.parse_album_ids(pd.Series(["[1, 605875]", "[7]", "[]", "[ 3 ,4 ]"]))
    assert [list(a) for a in parsed] == [[1, 605875], [7], [], [3, 4]]
    assert all(a.dtype == np.int64 for a in parsed)
    assert list(schema.format_album_ids(parsed)) == ["[1, 605875]", "[7]", "[]", "[3, 4]"]


def test_validators_accept_what_the_generator_writes(tiny):
    dataset, _ = tiny
    events = schema.validate_events(dataset.events)
    tracks = schema.validate_tracks(dataset.tracks)
    users = schema.validate_users(dataset.users)
    schema.validate_references(events, tracks, users)
    assert list(events.columns) == list(schema.EVENT_COLUMNS)
    assert all(events[c].dtype == np.int32 for c in events.columns)
    assert set(schema.USER_EXTRA_COLUMNS) <= set(users.columns)
    # evalrs2022.md says "43 extras" but names 42 (3 novelty, 4 mainstreaminess, 4 counts,
    # 7 weekday and 24 hour shares); the named ones are what we check and write.
    assert len(schema.USER_EXTRA_COLUMNS) == 3 + 4 + 4 + 7 + 24
