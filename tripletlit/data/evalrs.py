"""Read and write an EvalRS dataset folder (the three CSVs of the official zip).

The first load parses the CSVs with pyarrow, validates them and caches the validated tables as
parquet (in ``DIR/.tripletlit-cache/``, or in the user cache when ``DIR`` is read-only); later
loads read the parquet files only, which takes seconds even for the 37.9M-row events table.
The cache is keyed by each CSV's size and modification time, so editing a CSV rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tripletlit.data import schema
from tripletlit.data.dataset import Dataset
from tripletlit.errors import DataError
from tripletlit.files import atomic_dir, atomic_path, write_text_atomic

log = logging.getLogger(__name__)

CACHE_FOLDER = ".tripletlit-cache"
CACHE_VERSION = 1
TABLES = {"events": schema.EVENTS_FILE, "tracks": schema.TRACKS_FILE, "users": schema.USERS_FILE}


def read_csv(path: Path, delimiter: str = ",", types: dict | None = None) -> pd.DataFrame:
    """Parse a CSV with pyarrow; only empty fields are missing values (``NA`` is Namibia).

    ``types`` (column -> arrow type) parses those columns straight into compact types, which
    keeps the 37.9M-row events file within a few GB; if a value does not convert, the file is
    parsed again without them so that validation can name the bad value and its line.
    """
    def parse(column_types):
        return pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(null_values=[""], strings_can_be_null=True,
                                                 column_types=column_types or {}),  # fmt: skip
        )

    try:
        try:
            table = parse(types)
        except pa.ArrowInvalid:
            if not types:
                raise
            table = parse(None)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the path") from None
    except pa.ArrowInvalid as exc:
        first = str(exc).splitlines()[0] if str(exc) else "unreadable"
        raise DataError(f"{path.name}: cannot parse as CSV ({first}); fix or re-download the file") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: the file has no rows; regenerate or re-download it")
    return table.to_pandas(self_destruct=True, split_blocks=True)


def _fingerprint(folder: Path) -> dict:
    return {
        name: [(folder / name).stat().st_size, (folder / name).stat().st_mtime_ns]
        for name in TABLES.values()
    }


def _cache_dir(folder: Path) -> Path:
    local = folder / CACHE_FOLDER
    if os.access(folder, os.W_OK):
        return local
    from tripletlit.data.download import default_cache_dir

    key = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:16]
    return default_cache_dir() / "tables" / key


def _tracks_to_arrow(tracks: pd.DataFrame) -> pa.Table:
    lengths = tracks["albums_id"].map(len).to_numpy()
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = np.concatenate(list(tracks["albums_id"])) if len(tracks) else np.zeros(0, np.int64)
    albums = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.astype(np.int64)))
    plain = pa.Table.from_pandas(tracks.drop(columns=["albums_id"]), preserve_index=False)
    return plain.add_column(4, "albums_id", albums)


def _write_cache(dataset: Dataset, cache: Path, fingerprint: dict) -> None:
    with atomic_dir(cache) as tmp:
        pq.write_table(pa.Table.from_pandas(dataset.events, preserve_index=False), tmp / "events.parquet")
        pq.write_table(_tracks_to_arrow(dataset.tracks), tmp / "tracks.parquet")
        pq.write_table(pa.Table.from_pandas(dataset.users, preserve_index=False), tmp / "users.parquet")
        (tmp / "manifest.json").write_text(
            json.dumps({"version": CACHE_VERSION, "sources": fingerprint}, indent=1)
        )


def _read_cache(cache: Path, fingerprint: dict) -> tuple[pd.DataFrame, ...] | None:
    manifest = cache / "manifest.json"
    if not manifest.exists():
        return None
    try:
        meta = json.loads(manifest.read_text())
        if meta.get("version") != CACHE_VERSION or meta.get("sources") != json.loads(json.dumps(fingerprint)):
            return None
        events = pq.read_table(cache / "events.parquet").to_pandas()
        tracks = pq.read_table(cache / "tracks.parquet").to_pandas()
        users = pq.read_table(cache / "users.parquet").to_pandas()
    except (OSError, ValueError, pa.ArrowException) as exc:
        log.warning("parquet cache %s is unreadable (%s): rebuilding it from the CSVs", cache, exc)
        return None
    tracks["albums_id"] = tracks["albums_id"].map(lambda a: np.asarray(a, dtype=np.int64))
    return events, tracks, users


def load_evalrs(folder: str | os.PathLike, cache: bool = True) -> Dataset:
    """Load and validate an EvalRS dataset folder (``evalrs_events.csv``, ``evalrs_tracks.csv``,
    ``evalrs_users.csv``; ``song2vec.wv`` optional)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"{folder}: no such data folder; run `tripletlit data download` or "
            f"`tripletlit data generate --out {folder}`"
        )
    for name in TABLES.values():
        if not (folder / name).is_file():
            raise DataError(
                f"{folder / name}: file not found; an EvalRS folder needs {', '.join(TABLES.values())}"
            )
    fingerprint = _fingerprint(folder)
    cache_dir = _cache_dir(folder)
    tables = _read_cache(cache_dir, fingerprint) if cache else None
    if tables is None:
        raw_events = read_csv(folder / schema.EVENTS_FILE, types={c: pa.int32() for c in schema.EVENT_COLUMNS})
        # the official file starts with the LFM-1b event id as an unnamed index column
        events = schema.validate_events(raw_events)
        del raw_events
        tracks = schema.validate_tracks(read_csv(folder / schema.TRACKS_FILE))
        users = schema.validate_users(read_csv(folder / schema.USERS_FILE))
        schema.validate_references(events, tracks, users)
        tables = (events, tracks, users)
        if cache:
            try:
                _write_cache(Dataset(*tables), cache_dir, fingerprint)
            except OSError as exc:
                log.warning("could not write the parquet cache in %s (%s)", cache_dir, exc)
    song2vec = folder / schema.SONG2VEC_FILE
    return Dataset(
        *tables,
        name=folder.name,
        source=folder,
        song2vec=song2vec if song2vec.exists() else None,
    )


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        pacsv.write_csv(
            pa.Table.from_pandas(df, preserve_index=False),
            tmp,
            write_options=pacsv.WriteOptions(quoting_style="needed"),
        )


def write_evalrs(
    dataset: Dataset,
    folder: str | os.PathLike,
    event_ids: np.ndarray | None = None,
    cache: bool = True,
) -> Path:
    """Write ``dataset`` as an EvalRS folder in the official CSV format.

    Events get a leading unnamed event-id column (``event_ids``, default 0..n-1) like the
    official file; ``albums_id`` is written as ``"[1, 605875]"``. Each file is written
    atomically. With ``cache`` the tables are validated and the parquet cache is written too,
    so the first :func:`load_evalrs` of the folder does not parse the CSVs again.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    events = dataset.events
    ids = np.arange(len(events), dtype=np.int64) if event_ids is None else event_ids
    _write_csv(pd.concat([pd.DataFrame({"": ids}), events.reset_index(drop=True)], axis=1),
               folder / schema.EVENTS_FILE)
    tracks = dataset.tracks.copy()
    if len(tracks) and not isinstance(tracks["albums_id"].iloc[0], str):
        tracks["albums_id"] = schema.format_album_ids(tracks["albums_id"])
    _write_csv(tracks, folder / schema.TRACKS_FILE)
    _write_csv(dataset.users, folder / schema.USERS_FILE)
    if dataset.meta:
        write_text_atomic(folder / "tripletlit.json", json.dumps(dataset.meta, indent=1, default=str))
    if cache:
        events = schema.validate_events(dataset.events)
        validated = Dataset(events, schema.validate_tracks(dataset.tracks), schema.validate_users(dataset.users))
        schema.validate_references(validated.events, validated.tracks, validated.users)
        _write_cache(validated, _cache_dir(folder), _fingerprint(folder))
    return folder
