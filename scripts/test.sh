#!/usr/bin/env bash
# `make test` and `make check`: the lint, then the test suite against a throwaway PostgreSQL and Redis.
#
#   scripts/test.sh [PYTEST ARGS...]           make test: lint, the security audit, the whole suite
#   scripts/test.sh --check [PYTEST ARGS...]   make check: lint, the suite without the `system` tests (the
#                                              real processes and the browser) on one pytest-xdist worker
#                                              per core, no audit (it needs the network)
#
#   1. installs what is missing: uv, the locked dependencies (with the dev group), and the Debian
#      packages postgresql, redis-server (and for the whole suite chromium and nodejs) when their
#      binaries are not found;
#   2. runs `make lint` (and for `make test` the security audit, scripts/audit.py: bandit, pip-audit);
#   3. runs .venv/bin/pytest with the words of $PYTEST_ARGS (shell quoting allowed) and this script's
#      arguments through `python -m harness.services run`, which starts PostgreSQL and Redis on free
#      loopback ports in temp folders, exports their URLs, and stops both by their PIDs whatever happened;
#   4. exits with pytest's exit code (5, "no tests ran", fails too).
#
# The servers are started by the Python harness (harness/services.py), after step 1 made the virtualenv.
#
# Example: PYTEST_ARGS='-k "lifecycle and not browser" -x' make test
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

check=0
if [[ "${1:-}" == --check ]]; then
    check=1
    shift
fi

started_at="$EPOCHREALTIME"
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$started_at" "$EPOCHREALTIME"; }

# pg_has_bin: true when initdb and pg_ctl are installed (Debian's /usr/lib/postgresql/<major>/bin or PATH).
pg_has_bin() {
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null
}

# --- 1. what the suite needs
uv_sync
missing=()
pg_has_bin || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
if ((!check)); then
    # Playwright drives the machine's Chromium (never `playwright install`: it downloads a browser).
    command -v chromium >/dev/null || missing+=(chromium)
    # The connector guide's JavaScript blocks (docs/connectors, run by tests/connector_guide) need Node.js 18+.
    command -v node >/dev/null || command -v nodejs >/dev/null || missing+=(nodejs)
fi
if ((${#missing[@]})); then
    apt_install "${missing[@]}"
    pg_has_bin || die "postgresql is installed but initdb/pg_ctl are still not found"
fi

# --- 2. lint (and the security audit) first: they are quick, and need no server
make --no-print-directory lint
if ((!check)); then
    say "security audit: bandit and pip-audit (scripts/audit.py; exceptions in scripts/audit-exceptions.toml)"
    .venv/bin/python scripts/audit.py
fi

# --- 3. the suite, against servers the harness starts and stops
test_tmp="$(mktemp -d -t switchyard-test.XXXXXX)"
trap 'rm -rf "$test_tmp"' EXIT

SECRET_KEY="$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))')"
export SECRET_KEY
export DEBUG=false
export HTTPS_ONLY=false
# The suite delivers to receivers on 127.0.0.1; the SSRF tests switch this off where they test it.
export WEBHOOK_ALLOW_PRIVATE_TARGETS=true
# Keep the suite's files (cache, secret key, ...) out of the developer's var/.
export VAR_DIR="$test_tmp/var"

# pytest rewrites the asserts of every test module it imports (~8 s of CPU a process for this suite) and keeps
# the result beside Python's bytecode, unless PYTHONDONTWRITEBYTECODE is set: then the bytecode goes to a cache
# folder outside the tree instead, so that each run, and each pytest-xdist worker, does not rewrite it again.
if [[ -n "${PYTHONDONTWRITEBYTECODE:-}" ]]; then
    unset PYTHONDONTWRITEBYTECODE
    export PYTHONPYCACHEPREFIX="${PYTHONPYCACHEPREFIX:-$HOME/.cache/switchyard/pycache}"
fi

pytest_args=()
eval "pytest_args=(${PYTEST_ARGS:-})"
if ((check)); then
    pytest_args=(-m "not system" "${pytest_args[@]}")
    # The API fuzz's budget (tests/hardening/test_fuzz_api.py): `make test` runs its 25 examples per
    # operation and mode, the quick loop 5 (FUZZ_EXAMPLES=25 make check runs the full budget here too).
    export FUZZ_EXAMPLES="${FUZZ_EXAMPLES:-5}"
    # One worker per core (at most 4: each takes a Redis db of its own, tests/conftest.py) with pytest-xdist,
    # handed at most two tests at a time: in its default chunks (up to an eighth of the suite) one worker was
    # left with the last long tests, the other idle (119 s of a 979 s run at load average 7).
    if .venv/bin/python -c 'import xdist' 2>/dev/null; then
        pytest_args=(-n auto --maxprocesses 4 --maxschedchunk 2 "${pytest_args[@]}")
    else
        warn "pytest-xdist is not installed: the suite runs in one process"
    fi
fi
say "setup took $(elapsed) s; running pytest"
set +e
.venv/bin/python -m harness.services run -- .venv/bin/pytest "${pytest_args[@]}" "$@"
status=$?
set -e
# --- 4. pytest's status is the script's: 5 ("no tests ran") fails as well.
if ((status == 5)); then
    warn "pytest collected no tests (exit 5): check the arguments"
fi
exit "$status"
