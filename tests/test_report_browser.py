"""The HTML report in a real browser (headless Chromium): it renders, and no image is broken.

Slow: installs Debian's chromium when it is missing (as root; skipped otherwise). The
screenshot is kept as a test artefact in benchmarks/out/report-screenshot.png.
"""

from __future__ import annotations

import base64
import os
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import TINY_FIT

from tripletlit import report
from tripletlit.cli import main

REPO = Path(__file__).resolve().parents[1]
ARTEFACT = REPO / "benchmarks" / "out" / "report-screenshot.png"
FIT = ["fit", *TINY_FIT, "--folds", "2", "--train.val_users", "30"]
QUIET = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]  # fmt: skip

pytestmark = pytest.mark.slow


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and installing it needs root and apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        if result.returncode != 0:
            pytest.skip(f"{' '.join(command)} failed: {result.stderr.strip().splitlines()[-1:]}")
    found = shutil.which("chromium")
    if not found:
        pytest.skip("apt-get installed chromium but no chromium command is on PATH")
    return found


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs).get("src") or "")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    assert main([*FIT, "--out", str(root / "full")]) == 0
    assert main([*FIT, "--loss.lambda_user", "0", "--out", str(root / "no_user_user")]) == 0
    return report.build_report([root / "full", root / "no_user_user"], root / "report", formats=("png",))


def test_report_renders_in_chromium(page, tmp_path):
    browser = _chromium()
    shot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    result = subprocess.run([browser, *QUIET, f"--user-data-dir={profile}", f"--screenshot={shot}",
                             "--window-size=1400,4000", page.resolve().as_uri()],
                            capture_output=True, text=True, timeout=180)  # fmt: skip
    assert shot.is_file(), result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1400, 4000)
    from matplotlib import image as mpimg

    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.std() > 0.05, "the screenshot is blank"
    ARTEFACT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTEFACT)

    dom = subprocess.run([browser, *QUIET, f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=180)  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    images = _Images()
    images.feed(dom.stdout)
    panels = report.panel_files(page.parent)
    assert len(images.sources) == len(panels) == 5
    for src in images.sources:  # every image is inline and decodes to a PNG: nothing to break
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
