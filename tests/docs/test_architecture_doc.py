"""
docs/architecture.md stays true: every file or folder it names exists, its picture shows the layers in the order
the import-linter contract enforces, and the checks `make lint` adds find what they forbid.
"""

import importlib.util
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
PATH = re.compile(
    r"`((?:core|organizations|integrations|tokens|inventory|orders|automations|api|console|config|harness"
    r"|scripts|tests|bench)/[\w./-]*)`"
)


def contract_layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    return [name.strip() for layer in layers for name in layer.split("|")]


def checker():
    spec = importlib.util.spec_from_file_location(
        "check_architecture", ROOT / "scripts" / "check_architecture.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_path_the_page_names_exists():
    named = sorted(set(PATH.findall(DOC.read_text())))
    assert len(named) > 20, named
    missing = [path for path in named if not (ROOT / path.rstrip("/")).exists()]
    assert not missing, f"docs/architecture.md names what is not there: {missing}"


def test_the_picture_shows_the_enforced_layers_top_down():
    picture = DOC.read_text().split("```mermaid", 1)[1].split("```", 1)[0]
    declared = re.findall(r"^\s*(\w+)\[", picture, re.M)
    assert declared == contract_layers()


def test_every_layer_is_in_the_readme_layout():
    layout = (ROOT / "README.md").read_text().split("## Layout", 1)[1]
    for layer in contract_layers():
        assert f"| `{layer}/` |" in layout, layer


def test_the_check_finds_get_model_outside_migrations_but_not_in_a_migration_operation(tmp_path):
    source = tmp_path / "reach.py"
    source.write_text(
        "from django.apps import apps\n"
        "def forwards(apps, schema_editor):\n"
        "    return apps.get_model('orders', 'Order')\n"
        "def sneaky():\n"
        "    return apps.get_model('orders', 'Order')\n"
    )
    assert checker().file_findings(source, tmp_path) == ["reach.py:5: apps.get_model outside a migration"]


def test_the_check_finds_a_module_over_500_lines(tmp_path):
    source = tmp_path / "long.py"
    source.write_text("X = 1\n" * 501)
    assert checker().file_findings(source, tmp_path) == [
        "long.py: 501 lines (at most 500 outside migrations)"
    ]
    source.write_text("X = 1\n" * 500)
    assert checker().file_findings(source, tmp_path) == []


def test_the_check_finds_a_circle_hidden_in_a_function(tmp_path, monkeypatch):
    package = tmp_path / "zzcircle"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("def later():\n    from zzcircle import high\n    return high\n")
    (package / "high.py").write_text("from zzcircle import low\n")
    (package / "alone.py").write_text("from zzcircle import high\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert checker().cycle_findings(["zzcircle"]) == ["import circle between zzcircle.high, zzcircle.low"]


def test_the_hub_has_no_circle_today():
    assert checker().cycle_findings() == []
