"""Dashboard HTML from a small hand-made record: escaping, links, and a headless-Chromium screenshot."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reasoning_sae.interpret.render import render_feature, visible, write_site

HEADER_RGB = (0x1B, 0x3A, 0x8A)  # the feature page's header block colour (feature.html.j2 .hdr)


def context(tokens, acts, center):
    return {"sequence": 0, "position": center, "activation": acts[center], "token": tokens[center],
            "tokens": tokens, "acts": acts, "center": center, "max_index": int(np.argmax(acts))}


def record(feature: int | None = 4242) -> dict:
    top = context(["Let", " me", " <script>", "alert(1)", "\n", " Wait"], [0.0, 0.1, 0.4, 0.0, 0.2, 2.5], 5)
    low = context(["so", " wait"], [0.0, 0.3], 1)
    return {
        "feature": feature, "f_max": 2.5, "f_max_at": {"sequence": 0, "position": 5, "token": " Wait"},
        "fires": 12, "tokens": 400, "density": 0.03,
        "histogram": {"edges": [0.1, 0.3, 1.0, 3.0], "counts": [5, 4, 3]},
        "top_contexts": [top], "quantiles": [{"band": 0, "low": 0.1, "high": 0.5, "examples": [low]}],
        "logits": {"top": [{"id": 5, "token": " wait", "value": 0.8}],
                   "bottom": [{"id": 9, "token": "</b>", "value": -0.6}],
                   "histogram": {"edges": [-1.0, 0.0, 1.0], "counts": [10, 20]}},
        "score": {"reason_score": 0.0031, "rank": 1, "share_pos": 0.004, "share_neg": 0.001, "mean_pos": 0.2,
                  "mean_neg": 0.01, "entropy": 0.9, "words": {"wait": 0.3, "let me": 0.1}},
        "in_top_set": True,
    }


def test_feature_page_escapes_tokens_and_shows_the_parts():
    html = render_feature(record(), {"model": "tiny", "hook": "blocks.2.hook_resid_post"})
    assert "&lt;script&gt;" in html and "<script>" not in html and "&lt;/b&gt;" in html
    assert "Feature 4242" in html and "⏎" in html and "<svg" in html
    assert 'class="tok max ctr"' in html  # the maximum (and example) token: bold
    assert "background-color:rgba(255,106,0,1.000)" in html and "background-color:rgba(255,106,0,0.160)" in html
    assert "not</b> decoder-norm folded" in html
    assert ">␣wait</span>" in html  # logit tables show leading spaces


def test_visible_whitespace():
    assert visible(" a\n\tb") == " a⏎⇥b" and visible(" a", spaces=True) == "␣a"


def test_index_links_resolve(tmp_path):
    records = {7: {**record(7), "score": {**record()["score"], "reason_score": 0.001, "rank": 2}}, 4242: record()}
    index = write_site(records, tmp_path, {"model": "tiny", "hook": "h"})
    html = index.read_text()
    links = re.findall(r'href="([^"]+)"', html)
    assert links == ["features/4242.html", "features/7.html"]  # best score first
    assert all((tmp_path / link).is_file() for link in links)
    assert "fires on: ␣Wait" in html
    page = (tmp_path / "features" / "7.html").read_text()
    assert (tmp_path / "features" / re.search(r'href="([^"]+)"', page).group(1)).resolve() == index.resolve()


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium from PATH, installed with apt-get when missing and possible (root, apt), else a skip."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not on PATH and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"],
                    ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "fonts-dejavu-core"]):
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1200)
        except subprocess.TimeoutExpired:
            pytest.skip(f"installing chromium timed out at `{' '.join(command)}`")
        if done.returncode != 0:
            pytest.skip(f"could not install chromium: `{' '.join(command)}` failed: {done.stderr.strip()[-300:]}")
    return shutil.which("chromium") or pytest.skip("chromium installed but not on PATH")


def screenshot(browser: str, page: Path, tmp_path: Path) -> np.ndarray:
    png = page.with_suffix(".png")
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={tmp_path / ('profile-' + page.stem)}", "--window-size=1000,800",
               f"--screenshot={png}", page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert png.is_file(), f"no screenshot (exit {done.returncode}): {done.stderr[-1000:]}"
    return np.asarray(Image.open(png).convert("RGB")).astype(np.int16)


def test_page_screenshot_in_headless_chromium(chromium, tmp_path):
    pages = {}
    for name, feature in (("with_id", 4242), ("blank_id", None)):
        pages[name] = tmp_path / f"{name}.html"
        pages[name].write_text(render_feature(record(feature), {"model": "tiny", "hook": "h"}), encoding="utf-8")
    shot, blank = (screenshot(chromium, pages[name], tmp_path) for name in ("with_id", "blank_id"))
    assert shot.shape[:2] == (800, 1000)
    assert shot.reshape(-1, 3).std(0).max() > 20  # not a blank page
    header = np.abs(shot - HEADER_RGB).max(-1) < 8
    assert header[:60].mean() > 0.5  # the header block is drawn at the top
    changed = np.abs(shot[:60] - blank[:60]).max(-1) > 60
    assert changed.sum() > 300  # the feature id's glyphs, light on the header colour
    assert not (np.abs(shot[60:] - blank[60:]).max(-1) > 60).any()  # and nothing else differs
