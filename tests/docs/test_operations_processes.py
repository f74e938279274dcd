"""
The systemd units and every gunicorn command run what the code defines: config.wsgi with config/gunicorn.py
(its access log format), the Celery app with the database scheduler, and queues the settings define.
"""

import contextlib
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings

from tests.docs.helpers import (
    COMPOSE,
    CONTAINERFILE,
    GUNICORN_CONFIG,
    OPS,
    ROOT,
    SYSTEMD,
    exec_start,
    sh_lines,
    unit,
)


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
