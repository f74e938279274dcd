#!/usr/bin/env bash
# `make test`: the lint and the test suite against a throwaway PostgreSQL and Redis.
#
#   1. installs what is missing: uv, the locked dependencies (with the dev group), and the Debian
#      packages postgresql, redis-server, chromium and nodejs when their binaries are not found;
#   2. runs `make lint` and the security audit, scripts/audit.py (bandit, pip-audit; stops if either fails);
#   3. starts PostgreSQL and Redis on free loopback ports, in temp folders;
#   4. runs .venv/bin/pytest with the words of $PYTEST_ARGS (shell quoting allowed) and this script's
#      arguments, against them;
#   5. stops both servers by their PIDs, whatever happened, and exits with pytest's exit code.
#
# Example: PYTEST_ARGS='-k "lifecycle and not browser" -x' make test
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"
cd "$ROOT"

started_at="$EPOCHREALTIME"
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$started_at" "$EPOCHREALTIME"; }

# --- 1. what the suite needs
uv_sync
missing=()
pg_find_bin || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
# Playwright drives the machine's Chromium (never `playwright install`: it downloads a browser).
command -v chromium >/dev/null || missing+=(chromium)
# The connector guide's JavaScript blocks (docs/connectors, run by tests/connector_guide) need Node.js 18+.
command -v node >/dev/null || command -v nodejs >/dev/null || missing+=(nodejs)
if ((${#missing[@]})); then
    apt_install "${missing[@]}"
    pg_find_bin || die "postgresql is installed but initdb/pg_ctl are still not found"
fi

# --- 2. lint and the security audit first: they are quick, and need no server
make --no-print-directory lint
say "security audit: bandit and pip-audit (scripts/audit.py; exceptions in scripts/audit-exceptions.toml)"
.venv/bin/python scripts/audit.py

# --- 3. the servers, stopped on any exit (a failure, Ctrl-C, or the end of the run)
trap services_stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pg_start
redis_start
test_tmp="$(mktemp -d -t switchyard-test.XXXXXX)"
trap 'services_stop; rm -rf "$test_tmp"' EXIT

export DATABASE_URL # set by pg_start
export CELERY_BROKER_URL="redis://127.0.0.1:$REDIS_PORT/0"
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/1"
SECRET_KEY="$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))')"
export SECRET_KEY
export DEBUG=false
export HTTPS_ONLY=false
# The suite delivers to receivers on 127.0.0.1; the SSRF tests switch this off where they test it.
export WEBHOOK_ALLOW_PRIVATE_TARGETS=true
# Keep the suite's files (cache, secret key, ...) out of the developer's var/.
export VAR_DIR="$test_tmp/var"

say "PostgreSQL $DATABASE_URL (pid $PG_PID), Redis redis://127.0.0.1:$REDIS_PORT (pid $REDIS_PID)"
say "setup took $(elapsed) s; running pytest"

# --- 4. the suite
pytest_args=()
eval "pytest_args=(${PYTEST_ARGS:-})"
set +e
.venv/bin/pytest "${pytest_args[@]}" "$@"
status=$?
set -e
# --- 5. the EXIT trap stops the servers; pytest's status is the script's (5, "no tests ran", fails too).
exit "$status"
