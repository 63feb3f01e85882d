"""Tests for tripletlit.data.download against a local HTTP server on 127.0.0.1 (no internet)."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import platformdirs
import pytest

from tripletlit.data import download as dl
from tripletlit.data.download import (
    COMPLETE_MARKER,
    EVALRS_FILES,
    EVALRS_FOLDER,
    default_cache_dir,
    download_evalrs,
    install_from_zip,
)
from tripletlit.errors import DownloadError, TripletlitError

EVENTS = "user_id,track_id,artist_id,album_id,timestamp\n" + "".join(
    f"{u},{1000 + i},{i % 7},{i % 11},{1_600_000_000 + 60 * i}\n"
    for i, u in enumerate([1, 2, 3, 4, 5] * 120)
)
TRACKS = "track_id,track,artist_id,artist,album_id,album\n1000,Song A,0,Band,0,First\n1001,Song B,1,Duo,1,Second\n"
USERS = "user_id,country,age,gender,playcount\n1,SE,25,m,300\n2,US,31,f,120\n3,DE,-1,n,55\n"
CONTENTS = {"evalrs_events.csv": EVENTS, "evalrs_tracks.csv": TRACKS, "evalrs_users.csv": USERS}


def make_zip(prefix: str = f"{EVALRS_FOLDER}/", files: dict[str, str] | None = None) -> bytes:
    """A small stored (uncompressed) zip, so that flipped bytes land in member data."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        if prefix:
            zf.writestr(prefix, "")
        for name, text in (CONTENTS if files is None else files).items():
            zf.writestr(prefix + name, text)
        zf.writestr(prefix + "song2vec.wv", b"\x00\x01fake-gensim")
    return buf.getvalue()


GOOD_ZIP = make_zip()


class Handler(BaseHTTPRequestHandler):
    """Serves ``server.payload`` at any path; behaviour switched by attributes on the server."""

    server: FakeServer

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        if self.path.startswith("/missing"):
            self.send_error(404)
            return
        if srv.status != 200:
            self.send_error(srv.status)
            return
        data = srv.payload
        start = 0
        if rng and not srv.ignore_range:
            match = re.fullmatch(r"bytes=(\d+)-", rng)
            assert match, rng
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        announced = srv.announce if srv.announce is not None else len(body)
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        if srv.stall_once:
            srv.stall_once = False
            time.sleep(0.5)  # longer than the client's timeout in the stall test
        if srv.cut_after is not None:
            self.wfile.write(body[: srv.cut_after])
            if not srv.always_cut:
                srv.cut_after = None
            self.close_connection = True
            return
        self.wfile.write(body)


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.payload = GOOD_ZIP
        self.requests: list[tuple[str, str | None]] = []
        self.status = 200
        self.ignore_range = False
        self.cut_after: int | None = None
        self.always_cut = False
        self.announce: int | None = None
        self.stall_once = False

    def handle_error(self, request, client_address) -> None:  # a client hanging up is expected
        pass

    def url(self, path: str = "/evalrs_dataset.zip") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture(autouse=True)
def _local_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxies (all traffic stays on 127.0.0.1) and no pauses between retries."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(dl, "_BACKOFF_S", 0.0)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    srv = FakeServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(srv: FakeServer, to: Path, **kwargs) -> Path:
    kwargs.setdefault("urls", (srv.url(),))
    kwargs.setdefault("progress", False)
    kwargs.setdefault("timeout", 5)
    return download_evalrs(to, **kwargs)


def assert_installed(folder: Path) -> None:
    for name, text in CONTENTS.items():
        assert (folder / name).read_text() == text
    assert (folder / "song2vec.wv").read_bytes() == b"\x00\x01fake-gensim"
    assert (folder / COMPLETE_MARKER).is_file()


def assert_nothing_left(to: Path) -> None:
    """No dataset folder, zip, part or temporary folder: nothing that could pass as a cache."""
    leftovers = sorted(p.name for p in to.iterdir()) if to.exists() else []
    assert leftovers == []


def test_happy_path_then_cached_without_network(server: FakeServer, tmp_path: Path) -> None:
    folder = fetch(server, tmp_path)
    assert folder == tmp_path / EVALRS_FOLDER
    assert_installed(folder)
    assert server.requests == [("/evalrs_dataset.zip", None)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [EVALRS_FOLDER]  # zip and .part removed
    # Second call: served from the cache, even when the only URL is unreachable.
    again = download_evalrs(
        tmp_path, urls=(f"http://127.0.0.1:{free_port()}/x.zip",), progress=False
    )
    assert again == folder
    assert len(server.requests) == 1


def test_progress_bar_and_keep_zip(server: FakeServer, tmp_path: Path) -> None:
    folder = fetch(server, tmp_path, progress=True, keep_zip=True)
    assert_installed(folder)
    assert (tmp_path / "evalrs_dataset.zip").read_bytes() == GOOD_ZIP
    assert not (tmp_path / "evalrs_dataset.zip.part").exists()


def test_kept_zip_reused_when_folder_incomplete(server: FakeServer, tmp_path: Path) -> None:
    fetch(server, tmp_path, keep_zip=True)
    (tmp_path / EVALRS_FOLDER / COMPLETE_MARKER).unlink()
    assert_installed(fetch(server, tmp_path, keep_zip=True))
    assert len(server.requests) == 1


def test_resume_after_connection_cut(server: FakeServer, tmp_path: Path) -> None:
    server.cut_after = len(GOOD_ZIP) // 3
    assert_installed(fetch(server, tmp_path))
    assert server.requests == [
        ("/evalrs_dataset.zip", None),
        ("/evalrs_dataset.zip", f"bytes={len(GOOD_ZIP) // 3}-"),
    ]


def test_resume_existing_part_from_earlier_run(server: FakeServer, tmp_path: Path) -> None:
    (tmp_path / "evalrs_dataset.zip.part").write_bytes(GOOD_ZIP[:100])
    assert_installed(fetch(server, tmp_path))
    assert server.requests == [("/evalrs_dataset.zip", "bytes=100-")]


def test_retry_after_read_timeout(server: FakeServer, tmp_path: Path) -> None:
    server.stall_once = True
    assert_installed(fetch(server, tmp_path, timeout=0.2))
    assert len(server.requests) == 2


def test_server_without_range_support_restarts_from_zero(
    server: FakeServer, tmp_path: Path
) -> None:
    server.ignore_range = True
    server.cut_after = 200
    assert_installed(fetch(server, tmp_path))
    assert [r for _, r in server.requests] == [None, "bytes=200-"]  # answered 200: whole file again


def test_416_on_stale_part_restarts_cleanly(server: FakeServer, tmp_path: Path) -> None:
    (tmp_path / "evalrs_dataset.zip.part").write_bytes(b"x" * (len(GOOD_ZIP) + 50))
    assert_installed(fetch(server, tmp_path))
    assert [r for _, r in server.requests] == [f"bytes={len(GOOD_ZIP) + 50}-", None]


def test_416_on_finished_part_is_accepted(server: FakeServer, tmp_path: Path) -> None:
    (tmp_path / "evalrs_dataset.zip.part").write_bytes(GOOD_ZIP)
    assert_installed(fetch(server, tmp_path))
    assert [r for _, r in server.requests] == [f"bytes={len(GOOD_ZIP)}-"]


def test_gives_up_after_retries_and_keeps_part_for_resume(
    server: FakeServer, tmp_path: Path
) -> None:
    server.cut_after, server.always_cut = 10, True
    with pytest.raises(
        DownloadError, match=r"broke off .* after 3 tries .*tripletlit data download"
    ) as exc:
        fetch(server, tmp_path, retries=2)
    assert "\n" not in str(exc.value)
    assert len(server.requests) == 3
    assert not (tmp_path / EVALRS_FOLDER).exists()
    assert (tmp_path / "evalrs_dataset.zip.part").stat().st_size == 30
    server.cut_after, server.always_cut = None, False
    assert_installed(fetch(server, tmp_path))
    assert server.requests[-1] == ("/evalrs_dataset.zip", "bytes=30-")


def test_404_names_url(server: FakeServer, tmp_path: Path) -> None:
    url = server.url("/missing/evalrs_dataset.zip")
    with pytest.raises(DownloadError, match=r"answered HTTP 404") as exc:
        fetch(server, tmp_path, urls=(url,))
    assert url in str(exc.value) and "--from-zip" in str(exc.value)
    assert "\n" not in str(exc.value)
    assert_nothing_left(tmp_path)


def test_403_names_url(server: FakeServer, tmp_path: Path) -> None:
    server.status = 403
    with pytest.raises(DownloadError, match=re.escape(server.url()) + r" answered HTTP 403"):
        fetch(server, tmp_path)


def test_unreachable_host(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/evalrs_dataset.zip"
    with pytest.raises(DownloadError, match=r"cannot reach " + re.escape(url)) as exc:
        download_evalrs(tmp_path, urls=(url,), progress=False, timeout=2)
    message = str(exc.value)
    assert isinstance(exc.value, TripletlitError)
    assert "check your connection" in message and "--from-zip FILE" in message
    assert "\n" not in message
    assert not (tmp_path / EVALRS_FOLDER).exists()


def test_falls_back_to_mirror_in_order(server: FakeServer, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/evalrs_dataset.zip"
    urls = (dead, server.url("/missing.zip"), server.url())
    assert_installed(fetch(server, tmp_path, urls=urls))
    assert [p for p, _ in server.requests] == ["/missing.zip", "/evalrs_dataset.zip"]


def test_corrupt_zip_crc_leaves_nothing(server: FakeServer, tmp_path: Path) -> None:
    data = bytearray(GOOD_ZIP)
    at = data.find(EVENTS.encode()) + len(EVENTS) // 2
    data[at : at + 4] = bytes(b ^ 0xFF for b in data[at : at + 4])
    server.payload = bytes(data)
    with pytest.raises(
        DownloadError,
        match=r"evalrs_events.csv fails its CRC check.*tripletlit data download` again",
    ):
        fetch(server, tmp_path)
    assert_nothing_left(tmp_path)


def test_truncated_zip_leaves_nothing(server: FakeServer, tmp_path: Path) -> None:
    server.payload = GOOD_ZIP[: len(GOOD_ZIP) // 2]  # consistent Content-Length, but half a zip
    with pytest.raises(DownloadError, match=r"not a readable zip"):
        fetch(server, tmp_path)
    assert_nothing_left(tmp_path)


def test_wrong_short_content_length_leaves_nothing(server: FakeServer, tmp_path: Path) -> None:
    server.announce = len(GOOD_ZIP) - 40  # server lies: the client stops early, zip is cut
    with pytest.raises(DownloadError, match=r"evalrs_dataset.zip from http://127\.0\.0\.1"):
        fetch(server, tmp_path)
    assert_nothing_left(tmp_path)


def test_sha256_checked(server: FakeServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"checksum mismatch"):
        fetch(server, tmp_path, sha256="0" * 64)
    assert_nothing_left(tmp_path)
    good = hashlib.sha256(GOOD_ZIP).hexdigest().upper()
    assert_installed(fetch(server, tmp_path, sha256=good))


def test_zip_without_csvs_rejected(server: FakeServer, tmp_path: Path) -> None:
    server.payload = make_zip(files={"evalrs_events.csv": EVENTS})
    with pytest.raises(DownloadError, match=r"missing evalrs_tracks.csv, evalrs_users.csv"):
        fetch(server, tmp_path)
    assert_nothing_left(tmp_path)


def test_install_from_zip_good(tmp_path: Path) -> None:
    src = tmp_path / "downloads" / "evalrs_dataset.zip"
    src.parent.mkdir()
    src.write_bytes(make_zip(prefix=""))  # CSVs at the zip root also work
    folder = install_from_zip(src, tmp_path / "cache")
    assert folder == tmp_path / "cache" / EVALRS_FOLDER
    assert_installed(folder)
    assert src.read_bytes() == make_zip(prefix="")  # the user's file is left alone
    # A complete folder is then used by download_evalrs without any network.
    assert download_evalrs(tmp_path / "cache", urls=(), progress=False) == folder


@pytest.mark.parametrize(
    "content, pattern",
    [
        (b"this is not a zip at all", r"not a readable zip"),
        (GOOD_ZIP[:-30], r"not a readable zip"),
        (make_zip(files={"readme.txt": "hi"}), r"missing evalrs_events.csv"),
    ],
)
def test_install_from_zip_bad(tmp_path: Path, content: bytes, pattern: str) -> None:
    src = tmp_path / "mine.zip"
    src.write_bytes(content)
    with pytest.raises(DownloadError, match=pattern) as exc:
        install_from_zip(src, tmp_path / "cache")
    assert str(src) in str(exc.value) and "--from-zip" in str(exc.value)
    assert src.read_bytes() == content  # never deleted
    assert not (tmp_path / "cache" / EVALRS_FOLDER).exists()


def test_install_from_missing_zip(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"does not exist"):
        install_from_zip(tmp_path / "nope.zip", tmp_path)


def test_default_cache_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: FakeServer
) -> None:
    monkeypatch.setenv("TRIPLETLIT_CACHE", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    assert fetch(server, None) == tmp_path / "env-cache" / EVALRS_FOLDER
    monkeypatch.delenv("TRIPLETLIT_CACHE")
    assert default_cache_dir() == Path(platformdirs.user_cache_dir("tripletlit"))


def test_expected_files_constant() -> None:
    assert EVALRS_FILES == ("evalrs_events.csv", "evalrs_tracks.csv", "evalrs_users.csv")
    assert dl.EVALRS_URLS[0].startswith("https://evarl-2022-public-dataset")
