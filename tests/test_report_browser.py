"""`circleback audit --html/--png`, opened the way a person would: in a real (headless) Chromium.

Chromium is Debian's `chromium` package; `make test` installs it when it is missing. This test fails, never
skips, when the browser cannot run: a report nobody has seen rendered is not tested.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import matplotlib.image
import numpy
import pytest
from cli_runner import in_process, private_home

CHROMIUM = "/usr/bin/chromium"
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
NAMES = ("Grace Hopper", "Linus <Torvalds> & Co", "Women in Tech London")
PLAN = """\
owner: {name: Ada Lovelace, email: ada@example.com}
timezone: Europe/London
mindset: Relationships are the currency of leadership.
working_hours: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:30"}
review: {every: month}
connections:
  - {name: Grace Hopper, email: grace@navy.example, role: mentor, stage: nurture, every: 2 weeks,
     next_action: Send her the compiler article}
  - {name: "Linus <Torvalds> & Co", stage: elevate, every: month, role: peer, next_action: Ask for a review}
  - {name: Women in Tech London, kind: group, target: true, stage: find, every: month,
     next_action: Attend the next meetup}
"""


@pytest.fixture
def report(tmp_path: Path) -> Path:
    plan = private_home(tmp_path) / "plan.yaml"
    plan.write_text(PLAN)
    cb = in_process(tmp_path)
    at = ("--plan", str(plan), "--now", NOW.isoformat())
    assert cb("sync", *at)[0] == 0
    for name, day, kind in (
        ("Grace Hopper", "2026-09-01", "give"),
        ("Grace Hopper", "2026-10-20", "give"),
        ("Linus <Torvalds> & Co", "2026-10-05", "ask"),
        ("Linus <Torvalds> & Co", "2026-11-02", "ask"),
    ):
        assert cb("log", "add", name, "--on", day, "--kind", kind, *at)[0] == 0
    page, png = tmp_path / "audit.html", tmp_path / "audit.png"
    status, out, err = cb("audit", "--html", str(page), "--png", str(png), *at)
    assert status == 0, err
    assert f"wrote {page}" in out and f"wrote {png}" in out
    return page


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test` as root (it installs Debian's chromium)")
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    if proc.returncode != 0:
        pytest.fail(f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def test_the_page_needs_nothing_from_the_network(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    # Namespace names (xmlns) are identifiers, never fetched; references inside the page (#id, used by
    # the SVG's markers and clip paths) load nothing; anything else a browser would load is an error.
    found = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)|url\(\s*["']?([^)"']+)|(@import)""", text)
    references = [next(part for part in groups if part) for groups in found]
    assert references, "the SVG's own references were expected"
    assert [r for r in references if not r.startswith("#")] == []
    assert "<script" not in text and "<link" not in text
    assert "<svg" in text and "<style>" in text


def test_chromium_renders_the_report_with_every_name(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,900", report.as_uri(), profile=tmp_path / "p1")
    pixels = numpy.asarray(matplotlib.image.imread(str(shot)))
    assert pixels.shape[0] == 900 and pixels.shape[1] == 1200
    assert float(pixels.std()) > 0.05, "the screenshot is blank"
    # Enough non-white pixels for a chart with marks, not just a stray line.
    ink = numpy.mean(pixels[..., :3], axis=2) < 0.8
    assert float(ink.mean()) > 0.01

    dom = chromium("--dump-dom", report.as_uri(), profile=tmp_path / "p2").stdout
    visible = html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", " ", dom, flags=re.S)))
    words = " ".join(visible.split())
    for name in NAMES:
        assert name in words, name
    assert "every 2 weeks" in words  # the cadence is visible
    assert "2 give, 2 ask: 50% give" in words  # the balance, beside the rule of thumb
    assert "rule of thumb: about 90% give" in words


def test_png_is_the_same_chart(report: Path) -> None:
    png = report.with_name("audit.png")
    pixels = numpy.asarray(matplotlib.image.imread(str(png)))
    assert pixels.ndim == 3 and pixels.shape[1] > 1000
    assert float(pixels.std()) > 0.05


def test_chromium_is_a_real_browser() -> None:
    # Guards against a stand-in that exits 0 without rendering anything.
    assert shutil.which("chromium") is not None or Path(CHROMIUM).exists()
    version = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert version.stdout.startswith("Chromium ")
