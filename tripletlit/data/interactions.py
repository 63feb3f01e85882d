"""Bring your own data: load any interactions file (CSV, TSV or parquet) as EvalRS tables.

Only a user column and a track column are required; ``columns`` maps our column names to the
file's (``{"user_id": "uid", "track_id": "item", "user_track_count": "rating"}``). Missing
optional columns get defaults: ``user_track_count`` 1, ``timestamp`` 0, ``artist_id`` the track
id (every track its own artist) and ``album_id`` the artist id. Repeated (user, track) rows, e.g.
raw plays, are aggregated like the LFM-1b loader does
(:func:`tripletlit.data.lfm1b.aggregate_plays`).
Ids that are not non-negative int32 numbers (``"u42"``, 64-bit hashes) are replaced by dense
ids 0..n-1 in sorted order; the mapping is kept in ``dataset.meta["id_maps"]``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tripletlit.data import schema
from tripletlit.data.dataset import Dataset
from tripletlit.data.evalrs import read_csv
from tripletlit.data.lfm1b import aggregate_plays, build_tracks, track_albums
from tripletlit.errors import DataError

PARQUET_SUFFIXES = (".parquet", ".pq")
TAB_SUFFIXES = (".tsv", ".txt", ".tab")
ID_COLUMNS = ("user_id", "track_id", "artist_id", "album_id")
TRACK_NAME_COLUMNS = ("track", "artist")
MAPPABLE_COLUMNS = (*schema.EVENT_COLUMNS, *schema.USER_COLUMNS[1:], *TRACK_NAME_COLUMNS)
_INT32_MAX = np.iinfo(np.int32).max


def read_table(path: str | os.PathLike, delimiter: str | None = None) -> pd.DataFrame:
    """Read a parquet file or a delimited text file (``delimiter``; default tab for .tsv/.txt,
    else ',').

    Text files are parsed with pyarrow; only empty fields are missing values.
    """
    path = Path(path)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        if not path.is_file():
            raise DataError(f"{path}: file not found; check the path")
        try:
            frame = pq.read_table(path).to_pandas()
        except (OSError, pa.ArrowException) as exc:
            first = str(exc).splitlines()[0] if str(exc) else "unreadable"
            raise DataError(
                f"{path.name}: cannot read as parquet ({first}); fix or re-export the file"
            ) from None
        if len(frame) == 0:
            raise DataError(f"{path}: the file has no rows; export the interactions again")
        return frame
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() in TAB_SUFFIXES else ","
    return read_csv(path, delimiter=delimiter)


def _line_offset(path: Path) -> int:
    """Lines before the first data row: the header of a text file, none for parquet rows."""
    return 0 if path.suffix.lower() in PARQUET_SUFFIXES else 1


def _column(
    frame: pd.DataFrame,
    ours: str,
    columns: dict[str, str],
    path: Path,
    *,
    required: bool = False,
    strict: bool = True,
) -> str | None:
    """The file's name for our column ``ours``, or None when the file lacks an optional one.

    A name from ``columns`` must exist in the file when ``strict``; otherwise (a key column
    shared by several files) the file may use our own name instead.
    """
    candidates = [columns[ours]] if ours in columns else []
    if not strict or not candidates:
        candidates.append(ours)
    for name in candidates:
        if name in frame.columns:
            return name
    if candidates[0] != ours or required:
        have = ", ".join(map(str, frame.columns[:12])) + (", ..." if len(frame.columns) > 12 else "")
        mapped = f" (mapped from {ours!r})" if candidates[0] != ours else ""
        raise DataError(
            f"{path.name}: no column {candidates[0]!r}{mapped}; the file has columns {have}: "
            "fix the column mapping or the file"
        )
    return None


def _needs_dense_ids(values: pd.Series) -> bool:
    """True unless ``values`` are integers (or integral floats) already in 0..int32 max."""
    kind = values.dtype.kind
    if kind in "iu":
        return len(values) > 0 and (values.min() < 0 or values.max() > _INT32_MAX)
    if kind == "f":
        return False  # integer_column reports NaN and fractions with their line
    return True


def _check_present(values: pd.Series, name: str, path: Path) -> None:
    """Fail on a missing id (an empty field)."""
    missing = np.flatnonzero(values.isna().to_numpy())
    if len(missing):
        raise DataError(
            f"{path.name}: column {name!r} is empty on line "
            f"{int(missing[0]) + 1 + _line_offset(path)}; every row needs an id: fill it in or drop the row"
        )


def _to_ids(
    parts: list[tuple[pd.Series, str, Path]], ours: str
) -> tuple[list[np.ndarray], dict | None]:
    """int32 ids for each ``(values, file column, file)`` part, sharing one id space.

    Integer ids in range are kept; otherwise all parts are mapped to dense ids 0..n-1 (sorted by
    original value) and the ``{original: id}`` mapping is returned.
    """
    if not any(_needs_dense_ids(values) for values, _, _ in parts):
        ids = [
            schema.integer_column(values.to_frame(name), name, path.name, header_lines=_line_offset(path))
            for values, name, path in parts
        ]
        return ids, None
    for values, name, path in parts:
        _check_present(values, name, path)
    numeric = all(values.dtype.kind in "iu" for values, _, _ in parts)
    keys = [
        values.to_numpy() if numeric else values.astype(str).to_numpy(dtype=object)
        for values, _, _ in parts
    ]
    uniques = np.unique(np.concatenate(keys))
    if len(uniques) > _INT32_MAX:
        raise DataError(f"too many distinct {ours} values ({len(uniques):,}) for int32 ids")
    dense = [np.searchsorted(uniques, k).astype(np.int32) for k in keys]
    return dense, {(k.item() if numeric else k): i for i, k in enumerate(uniques)}


def _timestamps(values: pd.Series, name: str, path: Path) -> np.ndarray:
    """Unix seconds (int32) from integers or datetimes (naive datetimes are taken as UTC)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    if values.dtype.kind == "M":
        _check_present(values, name, path)
        values = (values - pd.Timestamp(0)) // pd.Timedelta(seconds=1)
    return schema.integer_column(values.to_frame(name), name, path.name, header_lines=_line_offset(path))


def _read_side_table(
    path: str | os.PathLike | None, delimiter: str | None
) -> tuple[pd.DataFrame, Path] | tuple[None, None]:
    if path is None:
        return None, None
    path = Path(path)
    return read_table(path, delimiter), path


def _user_table(
    user_ids: np.ndarray,
    users: pd.DataFrame | None,
    users_path: Path | None,
    columns: dict[str, str],
    events: pd.DataFrame,
) -> pd.DataFrame:
    """The users table: the users file's columns where given, LFM-1b style defaults elsewhere.

    ``user_ids`` are the users file's ids (already int32) or, without a file, the event users.
    ``playcount`` defaults to each user's total plays in ``events``.
    """
    plays = events.groupby("user_id")["user_track_count"].sum()
    table = {
        "user_id": user_ids,
        "country": np.full(len(user_ids), None, dtype=object),
        "age": np.full(len(user_ids), -1, dtype=np.int64),
        "gender": np.full(len(user_ids), None, dtype=object),
        "playcount": plays.reindex(user_ids, fill_value=0).to_numpy(np.int64),
        "registered_unixtime": np.zeros(len(user_ids), dtype=np.int64),
    }
    if users is not None:
        for ours in schema.USER_COLUMNS[1:]:
            name = _column(users, ours, columns, users_path)
            if name is None:
                continue
            values = users[name]
            if ours in ("age", "playcount"):
                values = values.fillna(-1)
            elif ours == "registered_unixtime":
                values = values.fillna(0)
            elif ours == "gender":
                values = values.map(lambda g: g.strip().lower() if isinstance(g, str) else g)
                values = values.replace({"male": "m", "female": "f"})
            table[ours] = values.to_numpy()
        for extra in schema.USER_EXTRA_COLUMNS:
            if extra in users.columns:
                table[extra] = users[extra].to_numpy()
    return schema.validate_users(pd.DataFrame(table), file=users_path.name if users_path else "users")


def _plays(
    raw: pd.DataFrame, names: dict[str, str | None], path: Path, user_ids: np.ndarray
) -> tuple[pd.DataFrame, dict[str, dict | None]]:
    """The play rows with int32 ids and defaults filled in, and the id maps of remapped columns.

    ``names`` gives the file's column for each of our event columns (None when absent).
    """

    def ids_of(ours: str) -> tuple[np.ndarray, dict | None]:
        [ids], id_map = _to_ids([(raw[names[ours]], names[ours], path)], ours)
        return ids, id_map

    plays: dict[str, np.ndarray] = {"user_id": user_ids}
    id_maps: dict[str, dict | None] = {}
    plays["track_id"], id_maps["track_id"] = ids_of("track_id")
    plays["artist_id"], id_maps["artist_id"] = (
        ids_of("artist_id") if names["artist_id"] else (plays["track_id"], None)
    )
    plays["album_id"], id_maps["album_id"] = (
        ids_of("album_id") if names["album_id"] else (plays["artist_id"], None)
    )
    if names["timestamp"] is None:
        plays["timestamp"] = np.zeros(len(raw), dtype=np.int32)
    else:
        plays["timestamp"] = _timestamps(raw[names["timestamp"]], names["timestamp"], path)
    if names["user_track_count"] is not None:
        plays["user_track_count"] = schema.integer_column(
            raw, names["user_track_count"], path.name, minimum=1, header_lines=_line_offset(path)
        )
    return pd.DataFrame(plays), id_maps


def load_interactions(
    path: str | os.PathLike,
    columns: dict[str, str] | None = None,
    users_path: str | os.PathLike | None = None,
    tracks_path: str | os.PathLike | None = None,
    delimiter: str | None = None,
) -> Dataset:
    """Load an interactions file (CSV/TSV/parquet) as a validated EvalRS :class:`Dataset`.

    ``columns`` maps our names (``user_id``, ``track_id``, ``user_track_count``, ``timestamp``,
    ``artist_id``, ``album_id``, and for the side files ``country``, ``age``, ``gender``,
    ``playcount``, ``registered_unixtime``, ``track``, ``artist``) to the file's column names;
    unmapped columns are looked up under our names. ``users_path`` is an optional users file
    (keyed by user id); ``tracks_path`` an optional file of track titles and artist names (keyed
    by track id; tracks without events are ignored). ``delimiter`` overrides the delimiter of
    text files (tab for .tsv/.txt, else ','). Raises :class:`DataError` (one line) on bad input.
    """
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(MAPPABLE_COLUMNS))
    if unknown:
        raise DataError(
            f"column mapping: unknown column {unknown[0]!r}; map one of "
            f"{', '.join(MAPPABLE_COLUMNS)} to the file's column name"
        )
    path = Path(path)
    raw = read_table(path, delimiter)
    users_raw, users_file = _read_side_table(users_path, delimiter)
    tracks_raw, tracks_file = _read_side_table(tracks_path, delimiter)
    names = {
        ours: _column(raw, ours, columns, path, required=ours in ("user_id", "track_id"))
        for ours in schema.EVENT_COLUMNS
    }

    # users of the events and of the users file share one id space
    user_parts = [(raw[names["user_id"]], names["user_id"], path)]
    if users_raw is not None:
        key = _column(users_raw, "user_id", columns, users_file, required=True, strict=False)
        user_parts.append((users_raw[key], key, users_file))
    user_ids, user_map = _to_ids(user_parts, "user_id")
    plays, id_maps = _plays(raw, names, path, user_ids[0])
    id_maps["user_id"] = user_map
    del raw

    events = schema.validate_events(aggregate_plays(plays), file=path.name)
    pairs = track_albums(plays["track_id"].to_numpy(), plays["album_id"].to_numpy())
    tracks = build_tracks(events, pairs)
    if tracks_raw is not None:
        _add_track_names(tracks, tracks_raw, tracks_file, columns, id_maps["track_id"])
    tracks = schema.validate_tracks(tracks, file=path.name)
    known_users = user_ids[1] if users_raw is not None else np.unique(user_ids[0])
    users = _user_table(known_users, users_raw, users_file, columns, events)
    users_name = Path(users_path).name if users_path is not None else path.name
    schema.validate_references(events, tracks, users, files=(path.name, path.name, users_name), line_numbers=False)
    id_maps = {column: id_maps[column] for column in ID_COLUMNS if id_maps.get(column) is not None}
    return Dataset(
        events,
        tracks,
        users,
        name=path.stem,
        source=path.parent,
        meta={"id_maps": id_maps} if id_maps else {},
    )


def _add_track_names(
    tracks: pd.DataFrame,
    names: pd.DataFrame,
    path: Path,
    columns: dict[str, str],
    id_map: dict | None,
) -> None:
    """Fill ``tracks``' ``track`` and ``artist`` columns from a tracks file, in place.

    Rows are matched by track id (through ``id_map`` when the ids were remapped); rows of tracks
    without events are ignored and tracks missing from the file keep empty names.
    """
    key = _column(names, "track_id", columns, path, required=True, strict=False)
    if id_map is None:
        ids = pd.to_numeric(names[key], errors="coerce")
    else:
        ids = names[key].astype(str).map({str(k): v for k, v in id_map.items()})
    known = ids.notna().to_numpy()
    ids = ids[known].astype(np.int64).to_numpy()
    for ours in TRACK_NAME_COLUMNS:
        name = _column(names, ours, columns, path)
        if name is None:
            continue
        texts = pd.Series(names[name].to_numpy()[known], index=ids)
        texts = texts[~texts.index.duplicated(keep="first")]
        tracks[ours] = texts.reindex(tracks["track_id"].to_numpy()).fillna("").astype(str).to_numpy()
