"""docs/security.md points at tests: every one it names must exist, so the threat model cannot drift."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
# `tests/x/test_y.py::test_z`, `tests/x/test_y.py` alone, and `::test_z` (in the file named last before it).
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`")
OWASP_2023 = [f"API{n}:2023" for n in range(1, 11)]


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def references() -> list[tuple[str, str | None]]:
    found, current = [], None
    for match in REFERENCE.finditer(DOC.read_text()):
        path, name = match.groups()
        if path is None and name is None:
            continue
        current = path or current
        assert current, f"`::{name}` before any test file is named"
        found.append((current, name))
    return found


def test_every_test_the_threat_model_names_exists():
    missing = []
    for path, name in references():
        file = ROOT / path
        if not file.exists():
            missing.append(path)
        elif name and name not in defined_tests(file):
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/security.md names tests that do not exist: {missing}"
    assert len(references()) > 50


def test_each_owasp_item_has_a_section_pointing_at_tests():
    text = DOC.read_text()
    sections = re.split(r"^### ", text, flags=re.MULTILINE)
    for item in OWASP_2023:
        section = next((s for s in sections if s.startswith(item)), None)
        assert section is not None, f"no section for {item}"
        assert REFERENCE.search(section), f"the {item} section points at no test"
