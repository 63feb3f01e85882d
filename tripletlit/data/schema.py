"""The three EvalRS 2022 tables (events, tracks, users): column names, types and validation.

Every check raises :class:`~tripletlit.errors.DataError` with one line naming the file, the
column, an example bad value (with its line in the file where known) and what to do.

Validated tables have these dtypes:

- events: ``user_id, artist_id, album_id, track_id, timestamp, user_track_count`` all int32
  (ids and counts >= 0), one row per (user_id, track_id);
- tracks: ``track_id`` (int32, unique), ``track`` (str), ``artist_id`` (int32), ``artist``
  (str), ``albums_id`` (object: one int64 numpy array per track), ``albums`` (str);
- users: ``user_id`` (int32, unique), ``country`` (str or missing), ``age`` (int32, -1 unknown),
  ``gender`` (``m``/``f``/``n`` or missing), ``playcount`` (int64, -1 unknown),
  ``registered_unixtime`` (int64), plus any of the 43 LFM-1b extra columns as float64.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tripletlit.errors import DataError

EVENTS_FILE = "evalrs_events.csv"
TRACKS_FILE = "evalrs_tracks.csv"
USERS_FILE = "evalrs_users.csv"
SONG2VEC_FILE = "song2vec.wv"

EVENT_COLUMNS = ("user_id", "artist_id", "album_id", "track_id", "timestamp", "user_track_count")
TRACK_COLUMNS = ("track_id", "track", "artist_id", "artist", "albums_id", "albums")
USER_COLUMNS = ("user_id", "country", "age", "gender", "playcount", "registered_unixtime")
USER_EXTRA_COLUMNS = (
    "novelty_artist_avg_month",
    "novelty_artist_avg_6months",
    "novelty_artist_avg_year",
    "mainstreaminess_avg_month",
    "mainstreaminess_avg_6months",
    "mainstreaminess_avg_year",
    "mainstreaminess_global",
    "cnt_listeningevents",
    "cnt_distinct_tracks",
    "cnt_distinct_artists",
    "cnt_listeningevents_per_week",
    *(f"relative_le_per_weekday{d}" for d in range(1, 8)),
    *(f"relative_le_per_hour{h}" for h in range(24)),
)
GENDERS = ("m", "f", "n")

_ALBUM_LIST = re.compile(r"^\[\s*(\d+\s*(,\s*\d+\s*)*)?\]$")


def _show(value) -> str:
    """A value as a user typed it: ``2.5``, ``'abc'`` (no numpy reprs)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return repr(value)


def _where(file: str, row: int | None, header_lines: int) -> str:
    """'line N' of a file for a 0-based data row, or '' when rows carry no line numbers."""
    return "" if row is None else f" (line {row + header_lines + 1})"


def require_columns(df: pd.DataFrame, columns, file: str) -> None:
    """Fail when any of ``columns`` is missing from ``df``."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(
            f"{file}: missing column {missing[0]!r} (found {', '.join(map(str, df.columns[:8]))}"
            f"{', ...' if len(df.columns) > 8 else ''}); the file must have the columns "
            f"{', '.join(columns)}"
        )


def integer_column(
    df: pd.DataFrame,
    column: str,
    file: str,
    *,
    minimum: int | None = 0,
    dtype: str = "int32",
    header_lines: int = 1,
) -> np.ndarray:
    """Return ``df[column]`` as a numpy integer array, or fail on NaN, text, fractions, range.

    ``minimum`` (None for no bound) is the smallest allowed value; the result has ``dtype``
    and values that do not fit it are reported too.
    """
    values = df[column].to_numpy()
    if values.dtype.kind not in "iuf":
        parsed = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy()
        bad = np.flatnonzero(np.isnan(parsed) & pd.notna(values))
        if len(bad):
            raise DataError(
                f"{file}: column {column!r} must hold integers but has {_show(values[bad[0]])}"
                f"{_where(file, int(bad[0]), header_lines)}; fix or remove that row"
            )
        values = parsed
    if values.dtype.kind == "f":
        bad = np.flatnonzero(np.isnan(values))
        if len(bad):
            raise DataError(
                f"{file}: column {column!r} has a missing/NaN value{_where(file, int(bad[0]), header_lines)};"
                f" every row needs a {column}: fill it in or drop the row"
            )
        bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
        if len(bad):
            raise DataError(
                f"{file}: column {column!r} must hold integers but has {_show(values[bad[0]])}"
                f"{_where(file, int(bad[0]), header_lines)}; fix or remove that row"
            )
    if minimum is not None and len(values):
        low = np.flatnonzero(values < minimum)
        if len(low):
            raise DataError(
                f"{file}: column {column!r} has {int(values[low[0]])} below the minimum {minimum}"
                f"{_where(file, int(low[0]), header_lines)}; fix or remove that row"
            )
    info = np.iinfo(dtype)
    if len(values) and (values.max() > info.max or values.min() < info.min):
        i = int(np.argmax(values > info.max)) if values.max() > info.max else int(np.argmin(values))
        raise DataError(
            f"{file}: column {column!r} value {int(values[i])}{_where(file, i, header_lines)} does not fit "
            f"{dtype}; ids and counts must be below {info.max}"
        )
    return values.astype(dtype, copy=False)


def check_unique(keys: np.ndarray, file: str, what: str, describe) -> None:
    """Fail when ``keys`` (int64) has a repeated value; ``describe(i)`` names row ``i``."""
    if len(keys) < 2:
        return
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    dup = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
    if len(dup):
        first, second = int(order[dup[0]]), int(order[dup[0] + 1])
        raise DataError(
            f"{file}: duplicate {what} {describe(second)} (rows {first + 2} and {second + 2}); "
            f"keep one row per {what}"
        )


def check_known(
    values: np.ndarray, known: np.ndarray, file: str, column: str, known_file: str, line_numbers: bool = True
) -> None:
    """Fail when some of ``values`` do not occur in ``known`` (both integer arrays); rows are
    reported as CSV lines when ``line_numbers`` (the values come straight from a file)."""
    if len(known) == 0:
        missing = np.arange(len(values))
    else:
        # a lookup table is ~10x faster than sorting when ids span a moderate range
        span = int(max(values.max(initial=0), known.max())) - int(min(values.min(initial=0), known.min()))
        kind = "table" if span < 200_000_000 else "sort"
        missing = np.flatnonzero(~np.isin(values, known, kind=kind))
    if len(missing):
        i = int(missing[0])
        raise DataError(
            f"{file}: {column} {int(values[i])}{f' (line {i + 2})' if line_numbers else ''} is not in {known_file} "
            f"({len(np.unique(values[missing]))} unknown {column}s in all); add it there or drop its events"
        )


def validate_events(df: pd.DataFrame, file: str = EVENTS_FILE) -> pd.DataFrame:
    """Validate an events table and return it with exactly the six int32 columns."""
    require_columns(df, EVENT_COLUMNS, file)
    out = pd.DataFrame(
        {c: integer_column(df, c, file, minimum=0) for c in EVENT_COLUMNS},
        index=pd.RangeIndex(len(df)),
    )
    zero = np.flatnonzero(out["user_track_count"].to_numpy() == 0)
    if len(zero):
        raise DataError(
            f"{file}: column 'user_track_count' is 0 (line {int(zero[0]) + 2}); a (user, track) row "
            "needs at least one play: drop the row"
        )
    users = out["user_id"].to_numpy().astype(np.int64)
    tracks = out["track_id"].to_numpy().astype(np.int64)
    check_unique(
        users * (int(tracks.max(initial=0)) + 1) + tracks,
        file,
        "(user_id, track_id) pair",
        lambda i: f"({users[i]}, {tracks[i]})",
    )
    return out


def parse_album_ids(raw: pd.Series, file: str = TRACKS_FILE) -> pd.Series:
    """Parse ``"[1, 605875]"`` strings (or ready lists/arrays) into int64 numpy arrays."""
    missing = np.flatnonzero(pd.isna(raw).to_numpy()) if raw.dtype == object or pd.api.types.is_string_dtype(raw) else []
    if len(missing):
        raise DataError(
            f"{file}: column 'albums_id' is empty (line {int(missing[0]) + 2}); write \"[]\" for a track "
            "without albums"
        )
    if len(raw) and not any(isinstance(v, str) for v in raw.iloc[:1]):
        return raw.map(lambda v: np.asarray(v, dtype=np.int64))
    text = pa.array(raw.to_numpy(dtype=object), type=pa.string())
    ok = pc.match_substring_regex(text, _ALBUM_LIST.pattern)
    ok = pc.fill_null(ok, False)
    if not pc.all(ok).as_py():
        i = int(np.flatnonzero(~np.asarray(ok))[0])
        raise DataError(
            f"{file}: column 'albums_id' must be a list like \"[1, 605875]\" but has "
            f"{raw.iloc[i]!r} (line {i + 2}); fix that row"
        )
    inner = pc.replace_substring_regex(text, r"[\[\]\s]", "")
    parts = pc.split_pattern(inner, ",")
    flat = pc.list_flatten(parts)
    flat = pc.if_else(pc.equal(flat, ""), None, flat)
    numbers = flat.cast(pa.int64()).to_numpy(zero_copy_only=False)
    offsets = parts.offsets.to_numpy()
    # "[]" splits into [""] -> one null: drop nulls and rebuild offsets per row.
    valid = ~np.isnan(numbers) if numbers.dtype.kind == "f" else np.ones(len(numbers), bool)
    counts = np.add.reduceat(valid.astype(np.int64), offsets[:-1]) if len(numbers) else np.zeros(len(raw), np.int64)
    counts[np.diff(offsets) == 0] = 0
    values = numbers[valid].astype(np.int64)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return pd.Series(np.split(values, bounds[1:-1]) if len(raw) else [], index=raw.index, dtype=object)


def validate_tracks(df: pd.DataFrame, file: str = TRACKS_FILE) -> pd.DataFrame:
    """Validate a tracks table; ``albums_id`` becomes one int64 array per track."""
    require_columns(df, TRACK_COLUMNS, file)
    track_id = integer_column(df, "track_id", file)
    check_unique(track_id.astype(np.int64), file, "track_id", lambda i: str(track_id[i]))
    return pd.DataFrame(
        {
            "track_id": track_id,
            "track": df["track"].fillna("").astype(str).to_numpy(),
            "artist_id": integer_column(df, "artist_id", file),
            "artist": df["artist"].fillna("").astype(str).to_numpy(),
            "albums_id": parse_album_ids(df["albums_id"].reset_index(drop=True), file).to_numpy(),
            "albums": df["albums"].fillna("[]").astype(str).to_numpy(),
        }
    )


def validate_users(df: pd.DataFrame, file: str = USERS_FILE) -> pd.DataFrame:
    """Validate a users table (LFM-1b values: country may be missing, age/playcount -1 unknown)."""
    require_columns(df, USER_COLUMNS, file)
    user_id = integer_column(df, "user_id", file)
    check_unique(user_id.astype(np.int64), file, "user_id", lambda i: str(user_id[i]))
    gender = df["gender"].astype(object).where(df["gender"].notna(), None)
    gender = gender.map(lambda g: g.strip() if isinstance(g, str) else g).replace({"": None})
    bad = np.flatnonzero(gender.notna().to_numpy() & ~gender.isin(GENDERS).to_numpy())
    if len(bad):
        raise DataError(
            f"{file}: column 'gender' has {gender.iloc[bad[0]]!r} (line {int(bad[0]) + 2}); "
            "allowed values are m, f, n or empty"
        )
    country = df["country"].astype(object).where(df["country"].notna(), None)
    country = country.map(lambda c: c.strip() if isinstance(c, str) else c).replace({"": None})
    out = {
        "user_id": user_id,
        "country": country.to_numpy(dtype=object),
        "age": integer_column(df, "age", file, minimum=-1),
        "gender": gender.to_numpy(dtype=object),
        "playcount": integer_column(df, "playcount", file, minimum=-1, dtype="int64"),
        "registered_unixtime": integer_column(
            df, "registered_unixtime", file, minimum=None, dtype="int64"
        ),
    }
    for column in USER_EXTRA_COLUMNS:
        if column in df.columns:
            values = pd.to_numeric(df[column], errors="coerce")
            bad = np.flatnonzero(values.isna().to_numpy() & df[column].notna().to_numpy())
            if len(bad):
                raise DataError(
                    f"{file}: column {column!r} must be numeric but has {df[column].iloc[bad[0]]!r} "
                    f"(line {int(bad[0]) + 2}); fix that row"
                )
            out[column] = values.to_numpy(dtype=np.float64)
    return pd.DataFrame(out)


def validate_references(
    events: pd.DataFrame,
    tracks: pd.DataFrame,
    users: pd.DataFrame,
    files: tuple[str, str, str] = (EVENTS_FILE, TRACKS_FILE, USERS_FILE),
    line_numbers: bool = True,
) -> None:
    """Every event must point to a known track and a known user. ``files`` name the three
    tables in messages (events, tracks, users); ``line_numbers`` is False when the events are
    not a file's rows (e.g. aggregated from raw plays)."""
    events_file, tracks_file, users_file = files
    check_known(events["track_id"].to_numpy(), tracks["track_id"].to_numpy(), events_file, "track_id",
                tracks_file, line_numbers)  # fmt: skip
    check_known(events["user_id"].to_numpy(), users["user_id"].to_numpy(), events_file, "user_id",
                users_file, line_numbers)  # fmt: skip


def format_album_ids(albums: pd.Series) -> pd.Series:
    """The official text form of album id lists: ``[1, 605875]``."""
    return albums.map(lambda a: "[" + ", ".join(map(str, a)) + "]")
