"""
Every `manage.py <command> …` line in docs/operations/'s ```sh blocks names a real management command whose
parser accepts the options (placeholders in CAPS replaced by plausible values; nothing touches the database),
and every support command of ours is documented.
"""

import re
import shlex

import pytest
from django.core.management import CommandError, get_commands

from tests.docs.helpers import OPS, PACKAGES, parse_command, sh_lines

PLACEHOLDERS = {
    "ID": "1",
    "SLUG": "acme",
    "PREFIX": "abcd1234",
    "TIME": "2025-01-31T08:00",
    "DATE": "2025-01-31",
    "EMAIL": "ops@example.com",
    "USERNAME": "ops@example.com",
    "PASSWORD": "a-long-Passw0rd",
    "ADDRESS": "203.0.113.7",
    "FILE": "integration.json",
    "NAME": "Acme",
    "G": "orders:read",
}
PLACEHOLDER = re.compile(r"\b(" + "|".join(PLACEHOLDERS) + r")\b")


def manage_py_args(line: str) -> list[str] | None:
    """The words after `manage.py` up to the first shell operator or comment, placeholders filled; None if none."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = list(lexer)
    if "manage.py" not in words:
        return None
    args = []
    for word in words[words.index("manage.py") + 1 :]:
        if word and set(word) <= set("();<>|&"):
            break
        args.append(PLACEHOLDER.sub(lambda m: PLACEHOLDERS[m.group(1)], word))
    return args


def documented_command_lines() -> list[tuple[str, str, list[str]]]:
    found = []
    for page in sorted(OPS.glob("*.md")):
        for line in sh_lines(page.read_text()):
            args = manage_py_args(line)
            if args is not None:
                found.append((page.name, line, args))
    return found


def test_the_command_line_extractor():
    markdown = (
        "```sh\n.venv/bin/python manage.py replay_deliveries --integration ID \\\n"
        "    --since TIME --dry-run   # count first\n"
        "docker compose exec web python manage.py run_engine routing --org SLUG | tee out\n"
        "echo not a command\n```\n"
    )

    assert [manage_py_args(line) for line in sh_lines(markdown)] == [
        ["replay_deliveries", "--integration", "1", "--since", "2025-01-31T08:00", "--dry-run"],
        ["run_engine", "routing", "--org", "acme"],
        None,
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["no_such_command"],
        ["revoke_keys", "--key", "abcd1234"],  # no such option
        ["revoke_keys"],  # one of --integration, --org, --prefix is required
        ["export_integration", "one"],  # the id is a number
        ["set_integration_status", "1", "connected"],  # --reason is required
        ["run_engine", "routng"],  # no such engine
        ["set_integration_status", "1", "paused", "--reason", "x"],  # no such status
        ["replay_deliveries", "--status", "succeeded"],  # only failed and dead are replayed
        ["replay_deliveries", "--since", "yesterday"],  # neither an ISO time nor a duration
    ],
)
def test_a_wrong_command_line_fails(args):
    with pytest.raises(CommandError):
        parse_command(args)


def test_every_documented_command_line_parses():
    lines = documented_command_lines()
    failures = []
    for page, line, args in lines:
        try:
            parse_command(args)
        except CommandError as exc:
            failures.append(f"{page}: {line}\n    {exc}")

    assert not failures, "\n".join(failures)
    assert len(lines) > 40


def test_every_support_command_is_documented():
    # A command added to one of our apps must be described in the operations docs.
    ours = sorted(name for name, app in get_commands().items() if app in PACKAGES)
    used = {args[0] for _, _, args in documented_command_lines()}
    text = "\n".join(page.read_text() for page in OPS.glob("*.md"))
    missing = [name for name in ours if name not in used and f"`{name}`" not in text]

    assert len(ours) >= 12
    assert not missing, f"support commands the operations docs never mention: {missing}"
