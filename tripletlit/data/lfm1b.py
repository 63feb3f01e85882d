"""Load the raw LFM-1b files (one row per play) into the EvalRS tables.

``LFM-1b_LEs.txt`` holds one tab-separated row per play, ``user_id artist_id album_id track_id
timestamp``, with no header line; the full file has about 1.1 billion rows (~30 GB). It is read in
blocks of ``chunk_bytes``; every block is reduced, vectorised, to one row per (user, track) and
the partial results are merged lazily (a merge runs only once the pending partials are as large
as the merged table), so memory is bounded by the number of distinct (user, track) pairs, not by
the number of plays, and the total merge work stays O(n log n).

The aggregation rules (shared with :mod:`tripletlit.data.interactions`):

- ``user_track_count`` = number of plays (or the sum of the rows' ``user_track_count``);
- ``timestamp`` = the latest play; ``artist_id`` and ``album_id`` = those of the latest play
  (ties broken by the larger album id, then the larger artist id, so the result does not depend
  on row order or on how the file was cut into blocks).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from tripletlit.data import schema
from tripletlit.data.dataset import Dataset
from tripletlit.data.evalrs import read_csv
from tripletlit.errors import DataError

RAW_EVENT_COLUMNS = ("user_id", "artist_id", "album_id", "track_id", "timestamp")
DEFAULT_CHUNK_BYTES = 256 << 20

_ID_BITS = 31  # ids are validated int32 >= 0, so (user << 31) | track is a unique int64 key
_LOW_MASK = (1 << _ID_BITS) - 1
_CONVERSION_ERROR = re.compile(r"column #(\d+): .*conversion error to \w+: invalid value '(.*)'")


# --------------------------------------------------------------------------- aggregation


def _pack(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """One int64 per (high, low) pair of non-negative int32 values, ordered like the pairs."""
    return (high.astype(np.int64) << _ID_BITS) | low.astype(np.int64)


def _unpack(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The int32 (high, low) halves of :func:`_pack`."""
    return (packed >> _ID_BITS).astype(np.int32), (packed & _LOW_MASK).astype(np.int32)


def _groups(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort ``key``: the order, and the start and length of each run of equal keys in it."""
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_key[1:] != sorted_key[:-1]]))
    starts = starts[: len(key)]  # an empty key has no runs
    return order, starts, np.diff(np.append(starts, len(key)))


def aggregate_plays(plays: pd.DataFrame) -> pd.DataFrame:
    """Reduce play rows to one row per (user_id, track_id), sorted by user then track.

    ``plays`` needs ``user_id, artist_id, album_id, track_id, timestamp`` (non-negative int32
    values); an optional ``user_track_count`` column weighs each row (default: one play per
    row), so the function also merges its own partial results. The output has the columns of
    :data:`~tripletlit.data.schema.EVENT_COLUMNS`: the summed ``user_track_count`` (int64), the
    latest ``timestamp`` and the ``album_id``/``artist_id`` of that latest play (ties: the
    largest album id, then the largest artist id). One sort, then O(n) reductions.
    """
    if "user_track_count" in plays.columns:
        weights = plays["user_track_count"].to_numpy().astype(np.int64, copy=False)
    else:
        weights = np.ones(len(plays), dtype=np.int64)
    order, starts, sizes = _groups(_pack(plays["user_id"].to_numpy(), plays["track_id"].to_numpy()))
    if len(starts) == 0:
        return pd.DataFrame({c: np.zeros(0, np.int32) for c in schema.EVENT_COLUMNS})
    # (timestamp, album) packed in one int64: its maximum is the latest play, then largest album
    latest = _pack(plays["timestamp"].to_numpy(), plays["album_id"].to_numpy())[order]
    best = np.maximum.reduceat(latest, starts)
    is_best = latest == np.repeat(best, sizes)
    artist = np.where(is_best, plays["artist_id"].to_numpy()[order], -1)
    timestamp, album = _unpack(best)
    first = order[starts]
    return pd.DataFrame(
        {
            "user_id": plays["user_id"].to_numpy()[first],
            "artist_id": np.maximum.reduceat(artist, starts).astype(np.int32),
            "album_id": album,
            "track_id": plays["track_id"].to_numpy()[first],
            "timestamp": timestamp,
            "user_track_count": np.add.reduceat(weights[order], starts),
        }
    )


def track_albums(track_id: np.ndarray, album_id: np.ndarray) -> pd.DataFrame:
    """The distinct (track_id, album_id) pairs, sorted by track then album (int32 ids >= 0)."""
    key = np.sort(_pack(np.asarray(track_id), np.asarray(album_id)), kind="stable")
    # sort + drop repeats: the stable sort is fast on the sorted runs of merged partials
    track, album = _unpack(key[np.concatenate([[True], key[1:] != key[:-1]])[: len(key)]])
    return pd.DataFrame({"track_id": track, "album_id": album})


def _merge_track_albums(pairs: pd.DataFrame) -> pd.DataFrame:
    return track_albums(pairs["track_id"].to_numpy(), pairs["album_id"].to_numpy())


class _LazyMerge:
    """Collect partial tables and merge them with ``merge`` once the pending rows outnumber the
    merged ones: memory stays within about twice the merged table and the work stays O(n log n)."""

    def __init__(self, merge: Callable[[pd.DataFrame], pd.DataFrame]):
        self._merge = merge
        self._parts: list[pd.DataFrame] = []
        self._merged_rows = 0
        self._pending_rows = 0

    def add(self, part: pd.DataFrame) -> None:
        self._parts.append(part)
        self._pending_rows += len(part)
        if self._pending_rows >= self._merged_rows:
            self._collapse()

    def _collapse(self) -> None:
        if len(self._parts) > 1:
            self._parts = [self._merge(pd.concat(self._parts, ignore_index=True))]
        self._merged_rows = len(self._parts[0]) if self._parts else 0
        self._pending_rows = 0

    def result(self) -> pd.DataFrame | None:
        """The merged table, or None when nothing was added."""
        self._collapse()
        return self._parts[0] if self._parts else None


# --------------------------------------------------------------------------- tracks table


def build_tracks(
    events: pd.DataFrame,
    pairs: pd.DataFrame,
    titles: pd.Series | None = None,
    artist_names: pd.Series | None = None,
    album_names: pd.Series | None = None,
) -> pd.DataFrame:
    """The tracks table for the tracks of ``events`` (one row per (user, track)).

    ``artist_id`` is that of the track's latest play; ``albums_id`` holds every album id of
    ``pairs`` (distinct (track_id, album_id) rows, see :func:`track_albums`) for the track,
    sorted. ``titles``, ``artist_names`` and ``album_names`` are optional Series indexed by
    track, artist and album id; unknown names are ``""``, and ``albums`` is ``"[]"`` without
    ``album_names`` or else the Python-style list of names, e.g. ``"['Abbey Road']"``.
    """
    track = events["track_id"].to_numpy()
    order, starts, _ = _groups(track)
    track_ids = track[order[starts]]
    # (timestamp, artist) packed: the maximum per track is the artist of its latest play
    latest = _pack(events["timestamp"].to_numpy(), events["artist_id"].to_numpy())[order]
    _, artist_ids = _unpack(np.maximum.reduceat(latest, starts) if len(starts) else latest)

    pairs = pairs[np.isin(pairs["track_id"].to_numpy(), track_ids)]
    pair_track = pairs["track_id"].to_numpy()
    pair_album = pairs["album_id"].to_numpy().astype(np.int64)
    if not np.array_equal(np.unique(pair_track), track_ids):
        raise ValueError("every track of the events needs at least one (track_id, album_id) pair")
    breaks = np.flatnonzero(np.diff(pair_track)) + 1
    albums_id = pd.Series(np.split(pair_album, breaks) if len(pair_album) else [], dtype=object)

    if album_names is None:
        albums = np.full(len(track_ids), "[]", dtype=object)
    else:
        names = album_names.reindex(pair_album).fillna("").astype(str).map(repr)
        joined = names.groupby(pair_track, sort=True).agg(", ".join)
        albums = ("[" + joined + "]").reindex(track_ids).to_numpy(dtype=object)

    def lookup(names: pd.Series | None, ids: np.ndarray) -> np.ndarray:
        if names is None:
            return np.full(len(ids), "", dtype=object)
        return names.reindex(ids).fillna("").astype(str).to_numpy(dtype=object)

    return pd.DataFrame(
        {
            "track_id": track_ids,
            "track": lookup(titles, track_ids),
            "artist_id": artist_ids,
            "artist": lookup(artist_names, artist_ids),
            "albums_id": albums_id.to_numpy(),
            "albums": albums,
        }
    )


# --------------------------------------------------------------------------- raw files


def _first_line(path: Path) -> list[str]:
    """The tab-separated fields of the file's first line; fail on a missing or empty file."""
    try:
        with path.open("rb") as handle:
            line = handle.readline()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the path") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror}); check the path") from None
    if not line.strip():
        raise DataError(f"{path}: the file is empty or starts with a blank line; fix or re-download it")
    return [f.strip().decode("utf-8", "replace") for f in line.rstrip(b"\r\n").split(b"\t")]


def _has_header(fields: list[str]) -> bool:
    """A first line is a header unless its first field is a number."""
    return not fields[0].lstrip("+-").isdigit()


def _stream(
    path: Path,
    names: list[str],
    types: dict[str, pa.DataType],
    header: bool,
    chunk_bytes: int,
    include: list[str] | None = None,
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Yield ``(lines before the batch, batch)`` for a tab-separated file read in blocks.

    Quotes are plain characters and only empty fields are missing. A row with the wrong number of
    fields, or a value that does not convert to its column type, becomes a one-line DataError.
    """
    bad_rows: list[pacsv.InvalidRow] = []

    def on_invalid_row(row: pacsv.InvalidRow) -> str:
        bad_rows.append(row)
        return "error"

    lines = int(header)
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(
                block_size=max(int(chunk_bytes), 1024), skip_rows=int(header), column_names=names
            ),
            parse_options=pacsv.ParseOptions(
                delimiter="\t", quote_char=False, invalid_row_handler=on_invalid_row
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                null_values=[""],
                strings_can_be_null=True,
                include_columns=include or names,
            ),
        )
        for batch in reader:
            yield lines, batch
            lines += batch.num_rows
    except pa.ArrowInvalid as exc:
        if bad_rows:
            row = bad_rows[0]
            raise DataError(
                f"{path.name}: a row has {row.actual_columns} tab-separated fields instead of "
                f"{row.expected_columns} ({', '.join(names)}): {row.text[:80]!r}; fix or remove that row"
            ) from None
        match = _CONVERSION_ERROR.search(str(exc))
        if match and int(match.group(1)) < len(names):
            column = names[int(match.group(1))]
            _locate_bad_integer(path, names, header, column, chunk_bytes)
            raise DataError(
                f"{path.name}: column {column!r} must hold integers but has {match.group(2)!r}; "
                "fix or remove that row"
            ) from None
        first = str(exc).splitlines()[0] if str(exc) else "unreadable"
        raise DataError(f"{path.name}: cannot parse the file ({first}); fix or re-download it") from None


def _locate_bad_integer(
    path: Path, names: list[str], header: bool, column: str, chunk_bytes: int
) -> None:
    """Re-read ``column`` as text to raise the exact line and value of its first non-integer.

    Only runs after a conversion error, so the second pass costs nothing on good files.
    """
    types = {c: pa.string() for c in names}
    for lines, batch in _stream(path, names, types, header, chunk_bytes, include=[column]):
        values = pd.DataFrame({column: batch.column(0).to_numpy(zero_copy_only=False)})
        schema.integer_column(values, column, path.name, dtype="int64", header_lines=lines)


def _integer_frame(batch: pa.RecordBatch, path: Path, lines: int) -> pd.DataFrame:
    """A batch of integer columns as int32 numpy columns, checked (missing, negative, range)."""
    raw = pd.DataFrame({c: batch.column(c).to_numpy(zero_copy_only=False) for c in batch.schema.names})
    return pd.DataFrame({c: schema.integer_column(raw, c, path.name, header_lines=lines) for c in raw})


def _event_columns(path: Path) -> tuple[bool, list[str]]:
    """Whether the events file has a header, and its column order."""
    fields = _first_line(path)
    if not _has_header(fields):
        return False, list(RAW_EVENT_COLUMNS)
    if sorted(fields) != sorted(RAW_EVENT_COLUMNS):
        raise DataError(
            f"{path.name}: unexpected header {' '.join(fields)!r}; the columns must be "
            f"{' '.join(RAW_EVENT_COLUMNS)} (the raw LFM-1b file has no header line): fix or remove it"
        )
    return True, fields


def _aggregate_file(path: Path, chunk_bytes: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-(user, track) events and the distinct (track, album) pairs of a raw plays file."""
    header, names = _event_columns(path)
    events = _LazyMerge(aggregate_plays)
    pairs = _LazyMerge(_merge_track_albums)
    types = {c: pa.int64() for c in names}
    for lines, batch in _stream(path, names, types, header, chunk_bytes):
        plays = _integer_frame(batch, path, lines)
        events.add(aggregate_plays(plays))
        pairs.add(track_albums(plays["track_id"].to_numpy(), plays["album_id"].to_numpy()))
    merged = events.result()
    if merged is None or len(merged) == 0:
        raise DataError(f"{path}: the file has no listening events; re-download it")
    return merged, pairs.result()


TRACK_NAME_COLUMNS = ("track_id", "track_name", "artist_id")
ARTIST_NAME_COLUMNS = ("artist_id", "artist_name")
ALBUM_NAME_COLUMNS = ("album_id", "album_name", "artist_id")


def _read_names(
    path: str | os.PathLike | None, columns: tuple[str, ...], wanted: np.ndarray, chunk_bytes: int
) -> pd.Series | None:
    """``id -> name`` for the ids in ``wanted`` from a tab-separated ``id name [...]`` file
    (``columns`` names its fields; a header line is detected and skipped).

    Streams the file and keeps only the wanted ids, so the 32M-row LFM-1b track list is cheap.
    """
    if path is None:
        return None
    path = Path(path)
    header = _has_header(_first_line(path))
    key, name = columns[:2]
    wanted = np.unique(wanted)
    ids, texts = [], []
    types = {key: pa.int64(), name: pa.string()}
    for lines, batch in _stream(path, list(columns), types, header, chunk_bytes, include=[key, name]):
        frame = pd.DataFrame({key: batch.column(0).to_numpy(zero_copy_only=False)})
        id_values = schema.integer_column(frame, key, path.name, dtype="int64", header_lines=lines)
        keep = np.isin(id_values, wanted)
        ids.append(id_values[keep])
        texts.append(batch.column(1).filter(pa.array(keep)).to_numpy(zero_copy_only=False))
    series = pd.Series(
        np.concatenate(texts) if texts else np.zeros(0, object),
        index=np.concatenate(ids) if ids else np.zeros(0, np.int64),
        dtype=object,
    )
    return series[~series.index.duplicated(keep="first")].fillna("")


def load_users(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate ``LFM-1b_users.txt`` (tab-separated, with a header line).

    Only empty fields are missing: the country code ``NA`` (Namibia) stays a country.
    """
    path = Path(path)
    return schema.validate_users(read_csv(path, delimiter="\t"), file=path.name)


def load_lfm1b(
    events_path: str | os.PathLike,
    users_path: str | os.PathLike,
    tracks_path: str | os.PathLike | None = None,
    artists_path: str | os.PathLike | None = None,
    albums_path: str | os.PathLike | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Dataset:
    """Load raw LFM-1b files as a validated :class:`Dataset` named ``"lfm1b"``.

    ``events_path`` is ``LFM-1b_LEs.txt`` (one row per play; a header line is detected and
    allowed), ``users_path`` is ``LFM-1b_users.txt``. The optional ``LFM-1b_tracks.txt``
    (``track_id track_name artist_id``), ``LFM-1b_artists.txt`` (``artist_id artist_name``) and
    ``LFM-1b_albums.txt`` (``album_id album_name artist_id``) supply the names of the tracks
    table; without them names are empty. ``chunk_bytes`` is the size of the blocks the plays
    file is read in. Raises :class:`DataError` (one line) on missing files or bad values.
    """
    events_path = Path(events_path)
    users_path = Path(users_path)
    _first_line(users_path)  # fail on a missing users file before the long events pass
    raw_events, pairs = _aggregate_file(events_path, chunk_bytes)
    users = load_users(users_path)
    events = schema.validate_events(raw_events, file=events_path.name)
    del raw_events
    tracks = build_tracks(
        events,
        pairs,
        titles=_read_names(tracks_path, TRACK_NAME_COLUMNS, events["track_id"].to_numpy(), chunk_bytes),
        artist_names=_read_names(
            artists_path, ARTIST_NAME_COLUMNS, events["artist_id"].to_numpy(), chunk_bytes
        ),
        album_names=_read_names(
            albums_path, ALBUM_NAME_COLUMNS, pairs["album_id"].to_numpy(), chunk_bytes
        ),
    )
    tracks = schema.validate_tracks(tracks, file=events_path.name)
    schema.validate_references(
        events, tracks, users, files=(events_path.name, events_path.name, users_path.name), line_numbers=False
    )
    return Dataset(events, tracks, users, name="lfm1b", source=events_path.parent)
