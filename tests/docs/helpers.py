"""Shared parsing of the docs/operations/ tests: the pages' paths, configuration tables, ```sh blocks, management
command lines (parsed without a database) and systemd units."""

import re
import shlex
import tomllib
from pathlib import Path

from django.core.management import CommandError, get_commands, load_command_class

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "docs" / "operations"
CONFIG_DOC = OPS / "configuration.md"
SYSTEMD = OPS / "systemd"
CONTAINERFILE = OPS / "container" / "Containerfile"
GUNICORN_CONFIG = ROOT / "config" / "gunicorn.py"
COMPOSE = OPS / "container" / "compose.yaml"
ENV_EXAMPLE = SYSTEMD / "switchyard.env.example"
# The hub's packages: those the import contract (pyproject.toml) layers.
PACKAGES = tuple(
    tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]
)


TABLE_NAME = re.compile(r"`([A-Z][A-Z0-9_]*)`")


def documented(text: str) -> dict[str, str]:
    """{variable: its default cell} for each table row whose first cell names variables in backticks."""
    rows = {}
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 2:
            continue
        for name in TABLE_NAME.findall(cells[0]):
            rows[name] = cells[1]
    return rows


SH_BLOCK = re.compile(r"^\s*```sh\n(.*?)^\s*```", re.MULTILINE | re.DOTALL)


def sh_lines(markdown: str) -> list[str]:
    """The command lines of the ```sh blocks, continuation lines joined."""
    lines = []
    for block in SH_BLOCK.findall(markdown):
        text = re.sub(r"\\\n\s*", " ", block)
        lines += [line.strip() for line in text.splitlines() if line.strip()]
    return lines


def parse_command(args: list[str]) -> None:
    """Raise CommandError unless args[0] is a management command whose parser accepts the rest."""
    name, rest = args[0], args[1:]
    commands = get_commands()
    if name not in commands:
        raise CommandError(f"Unknown command: {name}")
    command = load_command_class(commands[name], name)
    options = command.create_parser("manage.py", name).parse_args(rest)
    check_values(name, options)


def check_values(name: str, options) -> None:
    """The values our commands check in handle(), not in argparse, by the commands' own checkers (no DB)."""
    from automations.management.commands.run_engine import check_engine
    from integrations.management.commands._common import check_status
    from integrations.management.commands.replay_deliveries import parse_since, parse_statuses

    if name == "run_engine":
        check_engine(options.engine)
    elif name in ("set_integration_status", "integration_status") and options.status:
        check_status(options.status)
    elif name == "replay_deliveries":
        parse_statuses(options.status)
        if options.since:
            parse_since(options.since)


def unit(name: str) -> dict[str, list[str]]:
    """{key: [values]} of a unit file, continuation lines joined (sections merged: keys do not repeat)."""
    text = re.sub(r"\\\n\s*", " ", (SYSTEMD / name).read_text())
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def exec_start(name: str) -> list[str]:
    values = unit(name)["ExecStart"]
    assert len(values) == 1, f"{name}: one ExecStart"
    return shlex.split(values[0])
