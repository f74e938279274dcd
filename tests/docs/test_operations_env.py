"""
docs/operations/configuration.md's tables list every environment variable the code reads (found with `ast` in
config/settings.py and the rest of our Python, and `${NAME:-…}` in scripts/*.sh), with the literal default the
code gives it, and nothing the code does not read; the systemd environment file example holds documented
variables and placeholders only.
"""

import ast
import re
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.docs.helpers import CONFIG_DOC, ENV_EXAMPLE, OPS, PACKAGES, ROOT, documented

VAR_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
MUST_SET = (
    "SECRET_KEY",
    "ENCRYPTION_KEYS",
    "API_KEY_PEPPERS",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "REDIS_URL",
    "BEHIND_PROXY",
)


# --- environment variables ---------------------------------------------------------------------------------

# django-environ's readers: env("X"), env.int("X"), env.db("X"), …
ENV_METHODS = {
    "str", "int", "bool", "float", "list", "tuple", "dict", "json", "url", "path", "bytes", "db", "db_url",
    "email", "email_url", "cache", "cache_url", "search_url", "get_value",
}  # fmt: skip


def _is_os_environ(node) -> bool:
    return (isinstance(node, ast.Name) and node.id == "environ") or (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _env_instances(tree) -> set[str]:
    """Names bound to `environ.Env(...)` (or `Env(...)`), besides the conventional `env`."""
    names = {"env"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called == "Env":
                names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _name_argument(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def _default_node(call: ast.Call):
    for keyword in call.keywords:
        if keyword.arg == "default":
            return keyword.value
    return call.args[1] if len(call.args) > 1 else None


def env_reads(source: str) -> dict[str, ast.AST | None]:
    """{variable name: the default's AST node (None without one)} for every environment read in `source`."""
    tree = ast.parse(source)
    instances = _env_instances(tree)
    found: dict[str, ast.AST | None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func, name = node.func, _name_argument(node)
            if name is None:
                continue
            is_read = (
                (isinstance(func, ast.Name) and func.id in instances | {"getenv"})
                or (
                    isinstance(func, ast.Attribute)
                    and isinstance(func.value, ast.Name)
                    and func.value.id in instances
                    and func.attr in ENV_METHODS
                )
                or (
                    isinstance(func, ast.Attribute)
                    and _is_os_environ(func.value)
                    and func.attr in {"get", "setdefault", "pop"}
                )
                or (
                    isinstance(func, ast.Attribute)
                    and func.attr == "getenv"
                    and isinstance(func.value, ast.Name)
                    and func.value.id == "os"
                )
            )
            if is_read:
                found[name] = _default_node(node)
        elif isinstance(node, ast.Subscript) and _is_os_environ(node.value):
            key = node.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                found.setdefault(key.value, None)
    return {name: default for name, default in found.items() if VAR_NAME.match(name)}


SHELL_READ = re.compile(r"\$\{([A-Z][A-Z0-9_]*):?-")


def shell_reads(text: str) -> set[str]:
    """Variables a shell script reads from the environment with a default: ${NAME:-…} or ${NAME-…}."""
    return set(SHELL_READ.findall(text))


def python_sources() -> list[Path]:
    files = [ROOT / "manage.py", *sorted((ROOT / "scripts").glob("*.py"))]
    for package in PACKAGES:
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def code_reads() -> dict[str, dict[str, ast.AST | None]]:
    """{file (relative): {variable: default node}} for our Python and scripts/*.sh."""
    reads = {}
    for path in python_sources():
        if found := env_reads(path.read_text()):
            reads[str(path.relative_to(ROOT))] = found
    for path in sorted((ROOT / "scripts").glob("*.sh")):
        if found := shell_reads(path.read_text()):
            reads[str(path.relative_to(ROOT))] = dict.fromkeys(found)
    return reads


def literal_default(node) -> str | None:
    """The text configuration.md must show for a literal default (5, 15.0 → 15, False → false), else None."""
    if node is None:
        return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        left, right = literal_default(node.left), literal_default(node.right)
        if left is None or right is None:
            return None
        product = float(left) * float(right)
        return str(int(product)) if product.is_integer() else str(product)
    if not isinstance(node, ast.Constant) or node.value in ("", None):
        return None
    value = node.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    return str(value)


PARSER_CASES = [
    ('import environ\nenv = environ.Env()\nX = env.int("API_THING", default=5)', {"API_THING": "5"}),
    ('env = environ.Env()\nX = env("PLAIN")', {"PLAIN": None}),
    ('e = Env()\nX = e.bool("ON", default=False)', {"ON": "false"}),
    ('env = environ.Env()\nX = env.float("F", default=2.0)', {"F": "2"}),
    ('env = environ.Env()\nX = env.int("W", default=24 * 3600)', {"W": "86400"}),
    ('import os\nX = os.environ.get("A", "100")', {"A": "100"}),
    ('import os\nX = os.environ["B"]', {"B": None}),
    ('import os\nX = os.getenv("C")', {"C": None}),
    ('import os\nos.environ.setdefault("D", "config.settings")', {"D": "config.settings"}),
    # Not reads of a named variable: settings attributes, other dicts, computed names, lower case.
    ('from django.conf import settings\nX = settings.NOT_ENV\nY = {}.get("NOT_ENV")', {}),
    ('import os\nname = "X"\nY = os.environ.get(name)\nZ = os.environ.get("lower")', {}),
]


@pytest.mark.parametrize(("source", "expected"), PARSER_CASES)
def test_the_env_parser_finds_exactly_the_reads(source, expected):
    found = env_reads(source)

    assert {name: literal_default(node) for name, node in found.items()} == expected


def test_the_shell_parser_finds_defaulted_reads():
    assert shell_reads('PORT="${PORT:-8000}"\nexport D="${DEBUG-true}"\necho "${ROOT}" "$HOME"') == {
        "PORT",
        "DEBUG",
    }


def test_the_table_parser_takes_names_from_the_first_cell_only():
    text = (
        "| variable | default | what |\n|---|---|---|\n| `ONE` | `5` | see `OTHER` |\n"
        "| `TWO` / `THREE` | `1` | x |\nProse mentions `FOUR`.\n"
    )

    assert documented(text) == {"ONE": "`5`", "TWO": "`1`", "THREE": "`1`"}


def test_settings_reads_are_found():
    # The parser must see what settings.py really does (guards against a silent change of its idiom).
    reads = env_reads((ROOT / "config" / "settings.py").read_text())

    assert {"SECRET_KEY", "DATABASE_URL", "ENCRYPTION_KEYS", "WEBHOOK_CONCURRENCY"} <= set(reads)
    assert len(reads) > 50


def test_every_variable_the_code_reads_is_documented():
    table = documented(CONFIG_DOC.read_text())
    missing = sorted(
        f"{name} (read in {path})"
        for path, reads in code_reads().items()
        for name in reads
        if name not in table
    )

    assert not missing, f"docs/operations/configuration.md lacks: {missing}"


def test_every_documented_variable_is_read_by_the_code():
    read = {name for reads in code_reads().values() for name in reads}
    ghosts = sorted(set(documented(CONFIG_DOC.read_text())) - read)

    assert not ghosts, f"docs/operations/configuration.md documents variables nothing reads: {ghosts}"


def test_documented_defaults_match_the_code():
    table = documented(CONFIG_DOC.read_text())
    wrong, checked = [], 0
    for path, reads in code_reads().items():
        for name, node in reads.items():
            expected = literal_default(node)
            if expected is None or name not in table:
                continue
            checked += 1
            if f"`{expected}`" not in table[name]:
                wrong.append(
                    f"{name}: the code's default is {expected!r} ({path}), the page says {table[name]!r}"
                )

    assert not wrong, "\n".join(wrong)
    assert checked > 40


# --- the systemd environment file -------------------------------------------------------------------------


def env_example() -> dict[str, str]:
    """Every NAME=value of the example file, commented-out ones included."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if match := re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line):
            values[match.group(1)] = match.group(2)
    return values


def test_the_environment_file_example_holds_documented_variables_and_placeholders_only():
    values = env_example()
    table = documented(CONFIG_DOC.read_text())

    assert set(values) <= set(table), f"undocumented: {set(values) - set(table)}"
    assert set(MUST_SET) <= set(values)
    for name in ("SECRET_KEY", "ENCRYPTION_KEYS", "API_KEY_PEPPERS", "DATABASE_URL"):
        assert "CHANGE-ME" in values[name], f"{name} must be a placeholder"


def test_the_encryption_key_placeholder_stops_start_up():
    # deploy.md says a forgotten placeholder cannot run: core/crypto.py refuses it.
    from core.crypto import encryption_keys

    with pytest.raises(ImproperlyConfigured):
        encryption_keys([env_example()["ENCRYPTION_KEYS"]], "any-secret-key")


def test_every_must_set_variable_is_in_the_deploy_table():
    table = documented((OPS / "deploy.md").read_text())

    assert set(MUST_SET) <= set(table)
