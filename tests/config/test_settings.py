"""Settings come from the environment with safe production defaults."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(code_or_args, env_overrides, *, drop=()):
    # DJANGO_ALLOW_ASYNC_UNSAFE is set for the browser tests of this session; `check --deploy` rightly flags it.
    env = {k: v for k, v in os.environ.items() if k not in (*drop, "DJANGO_ALLOW_ASYNC_UNSAFE")}
    env.update(env_overrides)
    args = code_or_args if isinstance(code_or_args, list) else ["-c", code_or_args]
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


SHOW = (
    "import django, json; django.setup(); from django.conf import settings as s;"
    "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'], 'name': str(s.DATABASES['default']['NAME']),"
    "'debug': s.DEBUG, 'ssl': s.SECURE_SSL_REDIRECT, 'secure_cookie': s.SESSION_COOKIE_SECURE,"
    "'hsts': s.SECURE_HSTS_SECONDS, 'broker': s.CELERY_BROKER_URL}))"
)


def test_defaults_are_embedded_and_safe(tmp_path):
    # Given no DATABASE_URL, no DEBUG, no broker: the first-run defaults.
    result = run(
        SHOW,
        {"DJANGO_SETTINGS_MODULE": "config.settings", "VAR_DIR": str(tmp_path)},
        drop=("DATABASE_URL", "DEBUG", "HTTPS_ONLY", "CELERY_BROKER_URL", "SECRET_KEY"),
    )

    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["engine"] == "django.db.backends.sqlite3"
    assert shown["name"].startswith(str(tmp_path))
    assert shown["debug"] is False and shown["ssl"] is True and shown["secure_cookie"] is True
    assert shown["hsts"] >= 31_536_000
    assert shown["broker"] == "filesystem://"
    # The generated secret key lives in var/, readable by its owner only.
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_database_url_selects_postgresql(tmp_path):
    result = run(
        SHOW,
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "VAR_DIR": str(tmp_path),
            "DATABASE_URL": "postgres://u@127.0.0.1:5999/shop",
        },
    )

    assert json.loads(result.stdout)["engine"] == "django.db.backends.postgresql"


def test_check_deploy_is_clean_when_debug_is_off(tmp_path):
    result = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        {"VAR_DIR": str(tmp_path), "DEBUG": "false"},
        drop=("HTTPS_ONLY", "SECRET_KEY"),
    )

    assert result.returncode == 0, result.stdout + result.stderr
