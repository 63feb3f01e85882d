"""Fetch the EvalRS 2022 data set: resumable download, integrity checks, atomic install.

The zip is streamed to ``<cache>/evalrs_dataset.zip.part`` (resumed with an HTTP ``Range``
header after an interruption), checked (announced size, optional SHA-256, the CRC of every
member, the three CSV files present), unpacked into a temporary folder and moved into place
as ``<cache>/evalrs_dataset``. A ``.complete`` marker says the folder may be trusted; a
download or zip that fails a check is deleted, never left behind as a cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath

import platformdirs

from tripletlit import __version__
from tripletlit.errors import DownloadError
from tripletlit.files import atomic_dir, write_text_atomic

EVALRS_URLS = (
    "https://evarl-2022-public-dataset.s3.us-east-1.amazonaws.com/evalrs_dataset.zip",
    "https://cikm-evalrs-dataset.s3.us-west-2.amazonaws.com/evalrs_dataset.zip",
)
EVALRS_FOLDER = "evalrs_dataset"
EVALRS_FILES = ("evalrs_events.csv", "evalrs_tracks.csv", "evalrs_users.csv")
OPTIONAL_FILES = ("song2vec.wv",)
COMPLETE_MARKER = ".complete"

_CHUNK = 1 << 20
_BACKOFF_S = 1.0  # first pause between retries; doubles each time, capped at 30 s
_USER_AGENT = f"tripletlit/{__version__}"
_RETRY_HINT = "run `tripletlit data download` again"
_FROM_ZIP_HINT = (
    "download evalrs_dataset.zip again and run `tripletlit data download --from-zip FILE`"
)

Reporter = Callable[[int, "int | None"], None]


class _Unavailable(Exception):
    """One URL could not serve the file (host unreachable, or an HTTP error status)."""

    def __init__(self, message: str, offline: bool):
        super().__init__(message)
        self.offline = offline


class _Transient(Exception):
    """The transfer broke off part way; worth retrying from where it stopped."""


def default_cache_dir() -> Path:
    """Return the folder downloads go to: ``$TRIPLETLIT_CACHE`` if set, else the user cache dir."""
    env = os.environ.get("TRIPLETLIT_CACHE")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("tripletlit"))


def download_evalrs(
    to: str | os.PathLike | None = None,
    urls: Sequence[str] = EVALRS_URLS,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60,
    retries: int = 3,
    keep_zip: bool = False,
) -> Path:
    """Download, verify and unpack the EvalRS data set; return the folder ``to/evalrs_dataset``.

    A folder already complete (the three CSVs and our ``.complete`` marker) is returned
    without touching the network. Otherwise ``urls`` are tried in order; a partial
    ``evalrs_dataset.zip.part`` is resumed, and a broken transfer is retried ``retries``
    times. The zip is checked (size, ``sha256`` if given, CRC of every member, CSVs present)
    before being unpacked atomically; it is kept as ``evalrs_dataset.zip`` only if
    ``keep_zip``. Raises :class:`DownloadError` with a one-line message on any failure.
    """
    root = Path(to) if to is not None else default_cache_dir()
    target = root / EVALRS_FOLDER
    if _is_complete(target):
        return target
    zip_path = root / f"{EVALRS_FOLDER}.zip"
    if zip_path.is_file():  # kept by an earlier run: reuse it if it still checks out
        with contextlib.suppress(DownloadError):
            return _install(
                zip_path, target, sha256, str(zip_path), _RETRY_HINT, owned=True, keep=keep_zip
            )
    if not urls:
        raise DownloadError("no URL to download the EvalRS data set from: pass at least one URL")
    root.mkdir(parents=True, exist_ok=True)
    part = root / f"{EVALRS_FOLDER}.zip.part"
    failures: list[_Unavailable] = []
    with _progress_bar(progress, zip_path.name) as report:
        for url in urls:
            try:
                total = _fetch(url, part, timeout=timeout, retries=retries, report=report)
                break
            except _Unavailable as exc:
                failures.append(exc)
        else:
            raise DownloadError(_unavailable_message(failures))
    size = part.stat().st_size
    if total is not None and size != total:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{zip_path.name} from {url} has {size} bytes but the server announced {total}: {_RETRY_HINT}"
        )
    os.replace(part, zip_path)
    return _install(
        zip_path,
        target,
        sha256,
        f"{zip_path.name} from {url}",
        _RETRY_HINT,
        owned=True,
        keep=keep_zip,
    )


def install_from_zip(
    zip_path: str | os.PathLike, to: str | os.PathLike | None = None, sha256: str | None = None
) -> Path:
    """Verify a local ``evalrs_dataset.zip`` (downloaded by hand) and unpack it into ``to``.

    Returns the folder ``to/evalrs_dataset`` (``to`` defaults to :func:`default_cache_dir`),
    replacing any earlier one. The zip itself is never modified or deleted. Raises
    :class:`DownloadError` naming the file if it is missing, corrupt or not the data set.
    """
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise DownloadError(f"{zip_path} does not exist: check the path given to --from-zip")
    root = Path(to) if to is not None else default_cache_dir()
    return _install(
        zip_path,
        root / EVALRS_FOLDER,
        sha256,
        str(zip_path),
        _FROM_ZIP_HINT,
        owned=False,
        keep=True,
    )


def _is_complete(folder: Path) -> bool:
    """True if ``folder`` holds the three CSVs and the marker written after a verified install."""
    return (folder / COMPLETE_MARKER).is_file() and all(
        (folder / f).is_file() for f in EVALRS_FILES
    )


def _fetch(url: str, part: Path, *, timeout: float, retries: int, report: Reporter) -> int | None:
    """Download ``url`` into ``part``, resuming what is there; return the announced total size."""
    opener = urllib.request.build_opener()  # built per call so proxy variables are read now
    failures = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        try:
            response = opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                if exc.code != 416 or not offset:
                    raise _Unavailable(
                        f"{url} answered HTTP {exc.code} {exc.reason}", offline=False
                    ) from exc
                if _content_range(exc.headers.get("Content-Range"))[1] == offset:
                    return offset  # the .part already holds the whole file
                part.unlink()  # the .part does not fit this file: start again from zero
                continue
        except urllib.error.URLError as exc:
            raise _Unavailable(f"cannot reach {url} ({exc.reason})", offline=True) from exc
        except (OSError, http.client.HTTPException) as exc:  # connected, but no proper answer
            problem: Exception = exc
        else:
            with response:
                try:
                    return _receive(response, part, offset, report)
                except _Transient as exc:
                    problem = exc
        failures += 1
        if failures > retries:
            size = part.stat().st_size if part.exists() else 0
            raise DownloadError(
                f"download of {url} broke off at {size} bytes after {failures} tries "
                f"({str(problem) or type(problem).__name__}): {_RETRY_HINT} to resume"
            )
        time.sleep(min(_BACKOFF_S * 2 ** (failures - 1), 30.0))


def _receive(
    response: http.client.HTTPResponse, part: Path, offset: int, report: Reporter
) -> int | None:
    """Append (206) or write (200) the response body to ``part``; return the file's total size."""
    length = _to_int(response.headers.get("Content-Length"))
    if response.status == 206:
        start, total = _content_range(response.headers.get("Content-Range"))
        if start != offset:
            part.unlink(missing_ok=True)
            raise _Transient(f"server resumed at byte {start} instead of {offset}")
    else:  # 200: the whole file, also when a Range we sent was ignored
        start, total = 0, length
    end = start + length if length is not None else total
    done = start
    report(done, total)
    with open(part, "ab" if start else "wb") as out:
        while True:
            try:
                chunk = response.read(_CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                raise _Transient(str(exc) or type(exc).__name__) from exc
            if not chunk:
                break
            out.write(chunk)
            done += len(chunk)
            report(done, total)
    if end is not None and done < end:
        raise _Transient(f"connection closed after {done} of {end} bytes")
    return total if total is not None else end


def _install(
    zip_path: Path,
    target: Path,
    sha256: str | None,
    label: str,
    hint: str,
    *,
    owned: bool,
    keep: bool,
) -> Path:
    """Verify ``zip_path`` and unpack it into ``target``; delete a bad zip only if ``owned``."""
    try:
        prefix = _verify_zip(zip_path, sha256, label, hint)
    except DownloadError:
        if owned:
            zip_path.unlink(missing_ok=True)
        raise
    _extract(zip_path, prefix, target, label)  # a verified zip survives a failed unpack
    write_text_atomic(target / COMPLETE_MARKER, f"verified install from {label}\n")
    if owned and not keep:
        zip_path.unlink(missing_ok=True)
    return target


def _verify_zip(zip_path: Path, sha256: str | None, label: str, hint: str) -> str:
    """Check checksum, CRCs and the CSV files; return the folder prefix of the CSVs in the zip."""
    if sha256:
        digest = hashlib.sha256()
        with open(zip_path, "rb") as f:
            for block in iter(lambda: f.read(_CHUNK), b""):
                digest.update(block)
        if digest.hexdigest() != sha256.strip().lower():
            raise DownloadError(
                f"checksum mismatch for {label}: SHA-256 {digest.hexdigest()}, expected {sha256}: {hint}"
            )
    try:
        with zipfile.ZipFile(zip_path) as zf:
            bad = zf.testzip()
            names = set(zf.namelist())
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise DownloadError(f"{label} is not a readable zip ({exc}): {hint}") from exc
    if bad is not None:
        raise DownloadError(f"{label} is corrupt: member {bad} fails its CRC check: {hint}")
    first = EVALRS_FILES[0]
    prefixes = sorted(
        (n[: -len(first)] for n in names if n == first or n.endswith("/" + first)), key=len
    )
    for prefix in prefixes:
        if all(prefix + f in names for f in EVALRS_FILES) and not prefix.startswith("__MACOSX"):
            return prefix
    missing = [f for f in EVALRS_FILES if not any(n.endswith(f) for n in names)] or list(
        EVALRS_FILES
    )
    raise DownloadError(
        f"{label} does not hold the EvalRS data set (missing {', '.join(missing)}): {hint}"
    )


def _extract(zip_path: Path, prefix: str, target: Path, label: str) -> None:
    """Unpack the members under ``prefix`` into a temporary folder that then replaces ``target``."""
    try:
        with atomic_dir(target) as tmp, zipfile.ZipFile(zip_path) as zf:
            for info in zf.infolist():
                if info.is_dir() or not info.filename.startswith(prefix):
                    continue
                rel = PurePosixPath(info.filename[len(prefix) :])
                if rel.is_absolute() or ".." in rel.parts:
                    raise DownloadError(
                        f"{label} holds an unsafe path {info.filename!r}: use the official EvalRS zip"
                    )
                dest = tmp.joinpath(*rel.parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
    except OSError as exc:
        raise DownloadError(
            f"cannot unpack {label} into {target} ({exc}): free some disk space or pick another folder, then {_RETRY_HINT}"
        ) from exc


def _unavailable_message(failures: list[_Unavailable]) -> str:
    """One line for 'no URL could serve the file', with the advice that fits the failures."""
    what = "; ".join(str(f) for f in failures)
    if any(f.offline for f in failures):
        advice = "check your connection, or download evalrs_dataset.zip elsewhere"
    else:
        advice = "the file may have moved: download evalrs_dataset.zip elsewhere"
    return f"{what}: {advice} and run `tripletlit data download --from-zip FILE`"


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """Parse ``bytes START-END/TOTAL`` or ``bytes */TOTAL`` into (START, TOTAL); None if absent."""
    if not header or not header.startswith("bytes "):
        return None, None
    span, _, total = header[len("bytes ") :].partition("/")
    return _to_int(span.split("-")[0]), _to_int(total)


def _to_int(value: str | None) -> int | None:
    """``int(value)``, or None for a missing or non-numeric header."""
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


@contextlib.contextmanager
def _progress_bar(enabled: bool, label: str) -> Iterator[Reporter]:
    """Yield ``report(done, total)``: a rich progress bar on stderr, or nothing when disabled."""
    if not enabled:
        yield lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
