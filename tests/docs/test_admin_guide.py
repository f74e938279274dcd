"""
docs/admin-guide.md and its screenshots stay together:

1. every image the guide references is in docs/images/admin, every PNG there is referenced, and they are
   exactly the shots scripts/screenshots.py takes (fast, no browser);
2. scripts/screenshots.py, run for real (its own temp hub, gunicorn, headless Chromium), produces every PNG
   the guide references, each a valid PNG of the size of the committed one (browser test).
"""

import importlib.util
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "admin-guide.md"
IMAGES = ROOT / "docs" / "images" / "admin"
SCRIPT = ROOT / "scripts" / "screenshots.py"
IMAGE_REF = re.compile(r"!\[[^\]]*\]\((images/admin/[^)\s]+)\)")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCRIPT_TIMEOUT = 600  # seconds; about a minute on a quiet two-core machine


def load_script():
    spec = importlib.util.spec_from_file_location("screenshots_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def referenced() -> list[str]:
    """The PNG file names the guide shows, in order."""
    return [Path(ref).name for ref in IMAGE_REF.findall(GUIDE.read_text())]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR", f"{path.name} has no IHDR chunk"
    assert data[-12:][4:8] == b"IEND", f"{path.name} is truncated (no IEND chunk)"
    return struct.unpack(">II", data[16:24])


def test_guide_images_exist_and_every_png_is_referenced():
    names = referenced()
    assert names, "the guide references no image"
    assert len(names) == len(set(names)), (
        f"images referenced twice: {sorted({n for n in names if names.count(n) > 1})}"
    )
    on_disk = {p.name for p in IMAGES.glob("*.png")}
    assert not set(names) - on_disk, (
        f"referenced but missing in docs/images/admin: {sorted(set(names) - on_disk)}"
    )
    assert not on_disk - set(names), (
        f"in docs/images/admin but not referenced: {sorted(on_disk - set(names))}"
    )
    shots = {f"{name}.png" for name in load_script().SHOTS}
    assert set(names) == shots, (
        f"guide vs scripts/screenshots.py SHOTS: only in the guide {sorted(set(names) - shots)}, "
        f"only in the script {sorted(shots - set(names))}"
    )


def test_committed_screenshots_are_valid_and_small():
    script = load_script()
    for name in referenced():
        path = IMAGES / name
        width, height = png_size(path)
        assert width == script.WIDTH, f"{name}: {width} px wide, expected {script.WIDTH}"
        assert 100 <= height <= script.MAX_HEIGHT, f"{name}: {height} px tall"
        assert path.stat().st_size < 300_000, f"{name}: {path.stat().st_size} bytes"


@pytest.mark.browser
def test_screenshot_script_regenerates_every_image(tmp_path):
    script = load_script()
    if not Path(script.CHROMIUM).exists():
        pytest.skip(f"no Chromium at {script.CHROMIUM} (make test installs it)")
    out = tmp_path / "shots"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)],
        cwd=ROOT,
        env=dict(os.environ),  # the script replaces the database, broker and cache settings with its own
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"scripts/screenshots.py failed:\n{done.stdout}\n{done.stderr}"
    assert "Login: " not in done.stdout + done.stderr  # the demo password is never printed

    for name in referenced():
        made = out / name
        assert made.is_file(), f"{name} was not produced"
        assert made.stat().st_size > 5_000, f"{name} is nearly empty"
        width, height = png_size(made)
        committed_width, committed_height = png_size(IMAGES / name)
        assert width == committed_width == script.WIDTH, f"{name}: {width} px wide"
        # Same data, same pages: the height moves only with wrapped text (dates, generated ids).
        assert abs(height - committed_height) <= max(40, committed_height // 5), (
            f"{name}: {height} px tall, the committed one {committed_height} px"
        )
