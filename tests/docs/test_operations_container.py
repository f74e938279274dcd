"""The container recipe (docs/operations/container/): the Containerfile copies files that exist and runs what
the systemd units run, compose.yaml builds this repository and migrates first."""

import re
import shlex
import tomllib
from pathlib import Path

import yaml
from django.conf import settings

from tests.docs.helpers import (
    COMPOSE,
    CONFIG_DOC,
    CONTAINERFILE,
    ROOT,
    documented,
    exec_start,
    parse_command,
)


def normalized(argv: list[str]) -> list[str]:
    """A process command without its install path and bind address: what the units and the image share."""
    argv = [Path(argv[0]).name, *argv[1:]]
    if "--bind" in argv:
        i = argv.index("--bind")
        argv[i + 1] = "ADDRESS"
    return argv


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
    # Every package the hub imports (the layers of pyproject's import contract), apps or not (core/).
    packages = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]
    )
    needed = {*local, *packages, "templates", "static", "manage.py", "pyproject.toml", "uv.lock"}

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
