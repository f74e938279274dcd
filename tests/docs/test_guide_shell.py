"""
The connector guide's shell lines run as written from the repository's root after `make run`: Python is the
project's virtualenv (`.venv/bin/python`, never a bare `python` that may not exist or lack Django), and
every variable a chapter's shell blocks use is defined before it — in the chapter's own blocks, or exported
in the guide's "Before you start". What chapter 2 says `register_integration --help` lists, it lists, and
its table of the built-in connectors is the catalog the hub installs.
"""

import re
from pathlib import Path

import pytest
from django.core.management import load_command_class

from integrations.catalog import BUILTIN_CONNECTORS

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "connectors"
CHAPTERS = sorted(GUIDE.glob("[0-9][0-9]-*.md"))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
SHELL = {"sh", "bash", "shell"}
BARE_PYTHON = re.compile(r"(?:^|[\s(|;&`])python3?\s")
ASSIGNED = re.compile(r"(?:^|[\s;(])(?:export\s+)?([A-Z_][A-Z0-9_]*)=")
USED = re.compile(r"\$\{?([A-Z_][A-Z0-9_]*)")
SHELL_OWN = {"PWD", "HOME", "PATH"}


def shell_blocks(text: str) -> list[str]:
    return [code for kind, code in FENCE.findall(text) if kind in SHELL]


def before_you_start() -> set[str]:
    """What the guide's README has the reader export before any chapter."""
    (console,) = [
        code for kind, code in FENCE.findall((GUIDE / "README.md").read_text()) if kind == "console"
    ]
    return set(re.findall(r"^\$ export ([A-Z_][A-Z0-9_]*)=", console, re.M))


def undefined(blocks: list[str], known: set[str]) -> list[str]:
    defined, missing = set(known) | SHELL_OWN, []
    for code in blocks:
        for line in code.splitlines():
            # A use on a line counts only if the name was defined on an earlier line (or earlier on this one).
            for match in USED.finditer(line):
                name = match.group(1)
                earlier = {m.group(1) for m in ASSIGNED.finditer(line[: match.start()])}
                if name not in defined and name not in earlier:
                    missing.append(f"${name} in: {line.strip()}")
            defined |= set(ASSIGNED.findall(line))
    return missing


def test_before_you_start_exports_the_url_the_key_and_the_organization():
    assert {"SWITCHYARD_URL", "SWITCHYARD_KEY", "SWITCHYARD_ORG"} <= before_you_start()


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda path: path.name)
def test_shell_lines_use_the_virtualenv_python(chapter):
    bare = [
        line.strip()
        for code in shell_blocks(chapter.read_text())
        for line in code.splitlines()
        if BARE_PYTHON.search(line)
    ]

    assert not bare, f"write .venv/bin/python: {bare}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda path: path.name)
def test_shell_variables_are_defined_before_use(chapter):
    missing = undefined(shell_blocks(chapter.read_text()), before_you_start())

    assert not missing, missing


def test_the_checks_catch_a_bare_python_and_an_undefined_variable():
    blocks = shell_blocks(
        '```sh\nexport A=1\necho $A ${B}\nC=$(python manage.py x --org "$A")\n```\n'
        "```python\nprint('$D')\n```\n```sh\necho $C\n```\n"
    )

    assert undefined(blocks, set()) == ["$B in: echo $A ${B}"]
    assert [line for code in blocks for line in code.splitlines() if BARE_PYTHON.search(line)] == [
        'C=$(python manage.py x --org "$A")'
    ]


def test_register_integration_help_lists_each_builtin_connectors_recommended_grants():
    parser = load_command_class("tokens", "register_integration").create_parser(
        "manage.py", "register_integration"
    )
    text = " ".join(parser.format_help().split())

    for spec in BUILTIN_CONNECTORS:
        assert f"{spec['key']}: {', '.join(spec['recommended_grants'])}" in text


def test_chapter_2_lists_the_builtin_connectors_and_their_grants():
    text = (GUIDE / "02-register.md").read_text()
    rows = dict(re.findall(r"^\| `([\w-]+)` \| \w+ \| (.+?) \|$", text, re.M))
    by_key = {spec["key"]: spec for spec in BUILTIN_CONNECTORS}

    assert set(rows) == set(by_key)
    for key, cell in rows.items():
        if cell.startswith("as `"):
            cell = rows[cell[4:-1]]
        assert re.findall(r"`([\w:]+)`", cell) == by_key[key]["recommended_grants"], key
