"""
docs/connectors/reference.md is generated from the OpenAPI document by scripts/api_reference.py: the
committed file must be exactly what the script writes for today's API, so an endpoint, a field or a
grant that changes without the reference being regenerated fails here.
"""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "api_reference.py"
spec = importlib.util.spec_from_file_location("api_reference", SCRIPT)
api_reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(api_reference)


@pytest.fixture(scope="module")
def document():
    return api_reference.openapi()


def test_the_committed_reference_is_what_the_script_generates_today(document):
    generated = api_reference.render(document)
    committed = api_reference.TARGET.read_text()
    assert committed == generated, (
        "docs/connectors/reference.md is out of date: run .venv/bin/python scripts/api_reference.py"
    )


def test_every_operation_is_in_the_reference_with_its_grant(document):
    text = api_reference.render(document)
    operations = [
        (method, path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
        if method in api_reference.METHODS
    ]
    assert len(operations) >= 30
    for method, path, operation in operations:
        heading = f"### `{method.upper()} {path}`"
        assert heading in text
        section = text.split(heading, 1)[1].split("\n### ", 1)[0]
        grant = operation["x-required-grant"]  # every operation declares one (None: any key)
        assert (f"Grant: `{grant}`." if grant else "Grant: none") in section


def test_every_link_inside_the_reference_has_its_anchor(document):
    text = api_reference.render(document)
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', text))
    anchors |= {h.lower().replace("_", "-") for h in re.findall(r"^## (\S+)$", text, re.M)}
    targets = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert targets and targets <= anchors, targets - anchors


def test_the_check_mode_fails_on_a_stale_file_and_names_the_fix(tmp_path, monkeypatch):
    stale = tmp_path / "reference.md"
    stale.write_text("# an old reference\n")
    monkeypatch.setattr(api_reference, "TARGET", stale)
    monkeypatch.setattr(sys, "argv", ["api_reference.py", "--check"])
    assert api_reference.main() == 1
    monkeypatch.setattr(sys, "argv", ["api_reference.py"])
    assert api_reference.main() == 0
    monkeypatch.setattr(sys, "argv", ["api_reference.py", "--check"])
    assert api_reference.main() == 0


def test_the_script_runs_on_its_own_without_a_database_or_a_server():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
