#!/usr/bin/env bash
# `make run`: Switchyard on this machine with the embedded defaults, in the foreground.
#
#   installs uv and the locked dependencies if needed, migrates, seeds the demo data, then runs
#     gunicorn config.wsgi on 127.0.0.1:$PORT (default 8000)  -> logs to this terminal
#     celery -A config worker                                -> var/log/worker.log
#     celery -A config beat (database scheduler)             -> var/log/beat.log
#   and prints the admin URL and the demo login once the admin answers.
#
# SQLite under var/ and the filesystem Celery broker under var/: no PostgreSQL or Redis needed (set
# DATABASE_URL, CELERY_BROKER_URL, REDIS_URL to use them). Ctrl-C (or SIGTERM) stops all three.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

PORT="${PORT:-8000}"
# Plain http on localhost: no HTTPS redirect, no secure-only cookies.
export DEBUG="${DEBUG:-true}"
export HTTPS_ONLY="${HTTPS_ONLY:-false}"
# Development: webhooks and manifest calls may target this machine (the examples/ connectors run here).
export WEBHOOK_ALLOW_PRIVATE_TARGETS="${WEBHOOK_ALLOW_PRIVATE_TARGETS:-true}"
LOG_DIR="var/log"
PY=.venv/bin/python

port_is_free() { # as gunicorn binds: SO_REUSEADDR, so connections in TIME_WAIT do not count
    python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}

uv_sync
mkdir -p "$LOG_DIR"
port_is_free "$PORT" || die "port $PORT on 127.0.0.1 is in use: choose another, e.g. PORT=8001 make run"

say "manage.py migrate"
"$PY" manage.py migrate --noinput

say "manage.py seed_demo"
# Captured in memory, not in a log file: its last line carries the demo password.
seed_output="$("$PY" manage.py seed_demo 2>&1)" || {
    printf '%s\n' "$seed_output" >&2
    die "manage.py seed_demo failed (its output is above)"
}
printf '%s\n' "$seed_output" | sed '/^Login: /d'
login="$(printf '%s\n' "$seed_output" | grep -m 1 -o 'Login: .*' || true)"
login="${login#Login: }"
[[ -n "$login" ]] || die "seed_demo printed no 'Login:' line"

# --- the three processes; stopped by their own PIDs on any exit
declare -A NAME=() # pid -> name
PIDS=()

stop_all() {
    trap '' INT TERM # a second Ctrl-C must not cut the shutdown short
    local pid i alive
    alive="$(running_pids)" || return 0
    say "stopping$(for pid in $alive; do printf ' %s (pid %s)' "${NAME[$pid]}" "$pid"; done)"
    for pid in $alive; do
        kill -s TERM "$pid" 2>/dev/null || true
    done
    for ((i = 0; i < 200; i++)); do # up to 20 s for a warm shutdown (running tasks finish)
        running_pids >/dev/null || break
        sleep 0.1
    done
    for pid in $(running_pids); do
        warn "${NAME[$pid]} (pid $pid) did not stop in 20 s: killing it"
        kill -s KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    say "stopped"
}

# running_pids: prints the started PIDs still running; false when there are none.
running_pids() {
    local pid found=1
    for pid in "${PIDS[@]}"; do
        if is_running "$pid"; then
            echo "$pid"
            found=0
        fi
    done
    return "$found"
}

start() { # start NAME COMMAND...: in the background, remembered for stop_all
    local name="$1"
    shift
    "$@" &
    PIDS+=("$!")
    NAME[$!]="$name"
}

trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# config/gunicorn.py: the access log format (no Basic user name, no query string) and no control socket.
start gunicorn .venv/bin/gunicorn config.wsgi -c config/gunicorn.py --bind "127.0.0.1:$PORT" --workers 2 \
    --access-logfile - --graceful-timeout 10
start worker .venv/bin/celery -A config worker --loglevel INFO >>"$LOG_DIR/worker.log" 2>&1
start beat .venv/bin/celery -A config beat --loglevel INFO \
    --scheduler django_celery_beat.schedulers:DatabaseScheduler >>"$LOG_DIR/beat.log" 2>&1

# --- wait for the admin to answer over HTTP
url="http://127.0.0.1:$PORT/admin/"
for ((i = 0; ; i++)); do
    if "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' \
        "${url}login/" 2>/dev/null; then
        break
    fi
    ((i < 120)) || die "the admin did not answer at ${url}login/ within 60 s"
    for pid in "${PIDS[@]}"; do
        is_running "$pid" || die "${NAME[$pid]} exited during start-up (see the messages above and $LOG_DIR/)"
    done
    sleep 0.5
done

cat <<EOF

  ==================================================================
   Switchyard is running.

   Admin:   $url
   Login:   $login

   Logs:    gunicorn on this terminal;
            worker in $LOG_DIR/worker.log, beat in $LOG_DIR/beat.log
   Stop:    Ctrl-C (stops all three)
  ==================================================================

EOF

# --- stay in the foreground; if any of the three exits, stop the others and fail
status=0
wait -n "${PIDS[@]}" || status=$?
for pid in "${PIDS[@]}"; do
    is_running "$pid" || die "${NAME[$pid]} (pid $pid) exited with status $status: stopping the others (logs: terminal, $LOG_DIR/)"
done
die "a process exited with status $status: stopping the others"
