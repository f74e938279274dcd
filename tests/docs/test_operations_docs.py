"""
docs/operations/ stays true to the code:

1. configuration.md's tables list every environment variable the code reads (found with `ast` in
   config/settings.py and the rest of our Python, and `${NAME:-…}` in scripts/*.sh), with the literal
   default the code gives it, and nothing the code does not read;
2. every `manage.py <command> …` line in the pages' ```sh blocks names a real management command whose
   parser accepts the options (placeholders in CAPS replaced by plausible values; nothing touches the
   database);
3. the systemd units, the Containerfile and compose.yaml run the commands and queues the code defines,
   and copy files that exist.
"""

import ast
import contextlib
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, get_commands, load_command_class

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "docs" / "operations"
CONFIG_DOC = OPS / "configuration.md"
SYSTEMD = OPS / "systemd"
CONTAINERFILE = OPS / "container" / "Containerfile"
GUNICORN_CONFIG = ROOT / "config" / "gunicorn.py"
COMPOSE = OPS / "container" / "compose.yaml"
ENV_EXAMPLE = SYSTEMD / "switchyard.env.example"
PACKAGES = ("core", "organizations", "integrations", "tokens", "inventory", "orders", "automations", "api", "console", "config")
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


# --- 1. environment variables ------------------------------------------------------------------------------

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


# --- 2. manage.py command lines ------------------------------------------------------------------------------

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
SH_BLOCK = re.compile(r"^\s*```sh\n(.*?)^\s*```", re.MULTILINE | re.DOTALL)


def sh_lines(markdown: str) -> list[str]:
    """The command lines of the ```sh blocks, continuation lines joined."""
    lines = []
    for block in SH_BLOCK.findall(markdown):
        text = re.sub(r"\\\n\s*", " ", block)
        lines += [line.strip() for line in text.splitlines() if line.strip()]
    return lines


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


# --- 3. systemd units and the container recipe ---------------------------------------------------------------


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


def queue_names() -> set[str]:
    return {queue.name for queue in settings.CELERY_TASK_QUEUES}


def option(argv: list[str], *names: str) -> str | None:
    for i, word in enumerate(argv):
        for name in names:
            if word == name and i + 1 < len(argv):
                return argv[i + 1]
            if word.startswith(name + "="):
                return word.split("=", 1)[1]
    return None


def normalized(argv: list[str]) -> list[str]:
    """A process command without its install path and bind address: what the units and the image share."""
    argv = [Path(argv[0]).name, *argv[1:]]
    if "--bind" in argv:
        i = argv.index("--bind")
        argv[i + 1] = "ADDRESS"
    return argv


@pytest.mark.parametrize(
    "name", ["switchyard-web.service", "switchyard-worker.service", "switchyard-beat.service"]
)
def test_units_run_from_the_install_with_the_environment_file(name):
    keys = unit(name)
    argv = exec_start(name)

    assert keys["User"] == ["switchyard"]
    assert keys["WorkingDirectory"] == ["/opt/switchyard"]
    assert keys["EnvironmentFile"] == ["/etc/switchyard/switchyard.env"]
    assert keys["WantedBy"] == ["switchyard.target"]
    assert keys["PartOf"] == ["switchyard.target"]
    assert argv[0].startswith("/opt/switchyard/.venv/bin/")
    assert (ROOT / ".venv" / "bin" / Path(argv[0]).name).exists(), f"{argv[0]} is not installed by uv sync"
    assert (SYSTEMD / "switchyard.target").exists()


def gunicorn_config() -> dict:
    namespace: dict = {}
    exec(GUNICORN_CONFIG.read_text(), namespace)  # noqa: S102 - our own gunicorn config file
    return namespace


def test_the_web_unit_serves_config_wsgi():
    argv = exec_start("switchyard-web.service")

    assert Path(argv[0]).name == "gunicorn"
    assert argv[1] == "config.wsgi"
    assert "application = " in (ROOT / "config" / "wsgi.py").read_text()
    # The config, relative to WorkingDirectory: no control socket (the service user has no home for it).
    assert option(argv, "-c", "--config") == "config/gunicorn.py"
    assert gunicorn_config()["control_socket_disable"] is True


def run_sh_gunicorn() -> list[str]:
    """scripts/run.sh's gunicorn command (after `start gunicorn`), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "scripts" / "run.sh").read_text())
    [line] = [line for line in text.splitlines() if line.startswith("start gunicorn ")]
    return shlex.split(line)[2:]


def harness_gunicorn() -> list[str]:
    """The gunicorn command of the real-process tests (harness/hub.py), as it would start."""
    from harness.hub import Hub

    class Captured(Hub):
        def start(self, name, argv, env=None):
            return argv

    return Captured(url="", env={}, log_dir=ROOT, port=1).start_gunicorn()


def bench_gunicorn(folder: Path) -> list[str]:
    """The benches' gunicorn command (bench/_harness.py), as it would start (its log goes to `folder`)."""
    if str(ROOT / "bench") not in sys.path:
        sys.path.append(str(ROOT / "bench"))  # the bench folder is not a package: its modules import so
    spec = importlib.util.spec_from_file_location("bench_harness", ROOT / "bench" / "_harness.py")
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)

    class Starting(Exception):
        pass

    class Captured(harness.Proc):
        def start(self):
            raise Starting(self.argv, self.log_path)

    harness.Proc = Captured
    with pytest.raises(Starting) as starting, contextlib.ExitStack() as stack:
        harness.start_gunicorn(stack, harness.Started(), {}, 2, 4, folder)
    argv, log = starting.value.args
    assert log.parent == folder
    return argv[2:]  # after `python -m`


def gunicorn_commands(folder: Path) -> dict[str, list[str]]:
    """Every gunicorn command the repository documents or runs: {where: argv}."""
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    commands = {
        "switchyard-web.service": exec_start("switchyard-web.service"),
        "Containerfile": yaml.safe_load(
            re.search(r"^CMD (\[.*\])$", CONTAINERFILE.read_text(), re.M).group(1)
        ),
        "compose.yaml": compose["web"]["command"],
        "scripts/run.sh": run_sh_gunicorn(),
        "harness/hub.py": harness_gunicorn(),
        "bench/_harness.py": bench_gunicorn(folder),
    }
    for page in sorted(OPS.rglob("*.md")):
        for n, line in enumerate(sh_lines(page.read_text())):
            argv = shlex.split(line, comments=True)
            if argv and Path(argv[0]).name == "gunicorn":
                commands[f"{page.relative_to(OPS)}, command {n}"] = argv
    return commands


def takes_the_config(argv: list[str]) -> bool:
    """`-c config/gunicorn.py`, relative to the repository (every command's working directory) or absolute."""
    value = option(argv, "-c", "--config")
    return value is not None and (ROOT / value).resolve() == GUNICORN_CONFIG.resolve()


def test_every_gunicorn_command_takes_the_repositorys_config(tmp_path):
    # config/gunicorn.py holds the access log format that logs no Basic user name and no query string
    # (issue 14, finding 6); a command without it, or with a format of its own, would log API keys again.
    commands = gunicorn_commands(tmp_path)
    wrong = {
        where: argv
        for where, argv in commands.items()
        if not takes_the_config(argv) or option(argv, "--access-logformat") is not None
    }

    assert not wrong, wrong
    assert {"switchyard-web.service", "scripts/run.sh", "harness/hub.py", "bench/_harness.py"} <= set(
        commands
    )
    assert any(where.startswith("deploy.md") for where in commands)
    assert "%(u)s" not in gunicorn_config()["access_log_format"]


def test_the_worker_and_beat_units_use_the_celery_app_and_the_database_scheduler():
    worker = exec_start("switchyard-worker.service")
    beat = exec_start("switchyard-beat.service")

    assert worker[:4] == ["/opt/switchyard/.venv/bin/celery", "-A", "config", "worker"]
    assert option(worker, "-Q", "--queues") is None  # the default worker consumes every queue
    assert beat[:4] == ["/opt/switchyard/.venv/bin/celery", "-A", "config", "beat"]
    assert option(beat, "--scheduler", "-S") == settings.CELERY_BEAT_SCHEDULER
    assert "app = Celery(" in (ROOT / "config" / "celery.py").read_text()


def test_every_queue_named_in_the_docs_exists_and_each_has_a_dedicated_worker_line():
    named: dict[str, set[str]] = {}
    for path in [*OPS.rglob("*.md"), *SYSTEMD.iterdir(), CONTAINERFILE, COMPOSE]:
        for match in re.finditer(r"(?:-Q|--queues)[ =]([\w,]+)", path.read_text()):
            named.setdefault(str(path.relative_to(OPS)), set()).update(match.group(1).split(","))
    unknown = {page: queues - queue_names() for page, queues in named.items() if queues - queue_names()}

    assert not unknown, f"queues the settings do not define: {unknown}"
    assert named.get("scaling.md") == queue_names()
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert routed <= queue_names()
    for queue in queue_names():
        assert f"`{queue}`" in (OPS / "deploy.md").read_text()


def containerfile_copies() -> list[str]:
    sources = []
    for line in CONTAINERFILE.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"]:
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def test_the_containerfile_copies_files_that_exist_and_every_local_app():
    copied = containerfile_copies()
    text = CONTAINERFILE.read_text()
    local = {
        entry.split(".")[0] for entry in settings.INSTALLED_APPS if (ROOT / entry.split(".")[0]).is_dir()
    }
    needed = {*local, "templates", "static", "manage.py", "pyproject.toml", "uv.lock"}

    assert copied
    assert [path for path in copied if not (ROOT / path).exists()] == []
    assert needed <= {path.rstrip("/") for path in copied}
    assert re.search(r"^FROM python:3\.11-slim-bookworm$", text, re.MULTILINE)
    assert "uv sync --locked --no-dev" in text
    assert re.search(r"^USER switchyard$", text, re.MULTILINE)


def test_the_containerfile_and_compose_run_what_the_units_run():
    cmd = re.search(r"^CMD (\[.*\])$", CONTAINERFILE.read_text(), re.MULTILINE)
    compose = yaml.safe_load(COMPOSE.read_text())["services"]

    assert cmd
    web = normalized(yaml.safe_load(cmd.group(1)))
    assert web == normalized(exec_start("switchyard-web.service"))
    assert normalized(compose["web"]["command"]) == web
    assert normalized(compose["worker"]["command"]) == normalized(exec_start("switchyard-worker.service"))
    assert normalized(compose["beat"]["command"]) == normalized(exec_start("switchyard-beat.service"))


def test_compose_builds_this_repository_and_migrates_first():
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    table = documented(CONFIG_DOC.read_text())

    assert {"postgres", "redis", "web", "worker", "beat", "migrate"} <= set(compose)
    migrate = compose["migrate"]["command"]
    assert migrate[:2] == ["python", "manage.py"]
    parse_command(migrate[2:])
    assert migrate[2] == "migrate"
    for name in ("web", "worker", "beat", "migrate"):
        service = compose[name]
        context = (COMPOSE.parent / service["build"]["context"]).resolve()
        assert context == ROOT
        assert (context / service["build"]["dockerfile"]).resolve() == CONTAINERFILE
        assert set(service["environment"]) <= set(table), f"{name}: undocumented variables"
    for name in ("web", "worker", "beat"):
        assert compose[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_the_containerfile_collects_static_files_with_a_real_command():
    run = re.search(r"python manage\.py (collectstatic[^&\\\n]*)", CONTAINERFILE.read_text())

    assert run
    parse_command(shlex.split(run.group(1)))
    assert "WHITENOISE_USE_FINDERS=false" in CONTAINERFILE.read_text()


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
