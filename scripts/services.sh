# shellcheck shell=bash
# Throwaway PostgreSQL and Redis for tests, on free loopback ports. Source it (after lib.sh); do not run it.
#
#   pg_find_bin      sets PG_BIN to a folder holding initdb and pg_ctl; fails if there is none
#   pg_start         initdb + start in a new temp folder (data/, server.log, the Unix socket);
#                    exports DATABASE_URL=postgres://app@127.0.0.1:PORT/app; sets PG_PORT, PG_PID
#   pg_stop          stops that server by its PID and removes its folder (safe to call twice)
#   redis_start      starts redis-server (no persistence); sets REDIS_PORT, REDIS_PID
#   redis_stop       stops it by its PID and removes its folder (safe to call twice)
#   services_stop    both of the above; meant for `trap services_stop EXIT`
#
# Both servers run in the background in their own session, so Ctrl-C in the terminal does not reach
# them: whoever starts them must stop them (a trap), and only by the PIDs recorded here.

PG_BIN=""
PG_DIR=""
PG_PORT=""
PG_PID=""
PG_AS=() # runs a command as the cluster's owner: initdb refuses to run as root
REDIS_DIR=""
REDIS_PORT=""
REDIS_PID=""

pg_find_bin() {
    local dir
    # Debian's packages: /usr/lib/postgresql/<major>/bin (newest major first), else whatever is on PATH.
    for dir in $(compgen -G '/usr/lib/postgresql/*/bin' | sort -V -r) "$(dirname "$(command -v pg_ctl || echo /nonexistent/x)")"; do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            PG_BIN="$dir"
            return 0
        fi
    done
    return 1
}

# _stop_pid PID SIGNAL NAME: sends SIGNAL, waits up to 20 s, then SIGKILL.
_stop_pid() {
    local pid="$1" sig="$2" name="$3" i
    is_running "$pid" || return 0
    kill -s "$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
        is_running "$pid" || return 0
        sleep 0.1
    done
    warn "$name (pid $pid) did not stop in 20 s: killing it"
    kill -s KILL "$pid" 2>/dev/null || true
}

pg_start() {
    [[ -n "$PG_BIN" ]] || pg_find_bin || die "PostgreSQL server binaries (initdb, pg_ctl) not found"
    PG_DIR="$(mktemp -d -t switchyard-pg.XXXXXX)"
    PG_AS=()
    if [[ "$(id -u)" == 0 ]]; then
        local owner=postgres
        id -u postgres >/dev/null 2>&1 || owner=nobody
        chown "$owner" "$PG_DIR"
        PG_AS=(runuser -u "$owner" --)
    fi
    "${PG_AS[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U app -E UTF8 --locale=C --no-sync \
        >"$PG_DIR/initdb.log" 2>&1 || {
        cat "$PG_DIR/initdb.log" >&2
        die "initdb failed"
    }
    local attempt
    for attempt in 1 2 3; do # a free port can be taken between the check and the bind: try another
        PG_PORT="$(free_port)"
        # -F: no fsync (tests only); -k: the Unix socket in the data folder, not /var/run/postgresql.
        if "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 \
            -o "-p $PG_PORT -k $PG_DIR -h 127.0.0.1 -F" start >/dev/null; then
            PG_PID="$(head -n 1 "$PG_DIR/data/postmaster.pid")"
            break
        fi
        warn "PostgreSQL did not start on port $PG_PORT (attempt $attempt):"
        tail -n 5 "$PG_DIR/server.log" >&2 || true
    done
    [[ -n "$PG_PID" ]] || die "could not start PostgreSQL"
    local createdb="$PG_BIN/createdb"
    [[ -x "$createdb" ]] || createdb="$(command -v createdb)" || die "createdb not found"
    "$createdb" -h 127.0.0.1 -p "$PG_PORT" -U app app
    export DATABASE_URL="postgres://app@127.0.0.1:$PG_PORT/app"
}

pg_stop() {
    if [[ -n "$PG_PID" ]]; then
        _stop_pid "$PG_PID" INT PostgreSQL # SIGINT: "fast" shutdown
        PG_PID=""
    fi
    if [[ -n "$PG_DIR" ]]; then
        rm -rf "$PG_DIR"
        PG_DIR=""
    fi
}

# _redis_ping PORT: true when a Redis on 127.0.0.1:PORT answers PONG (bash's /dev/tcp; no redis-cli needed).
_redis_ping() {
    local fd reply=""
    exec {fd}<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'PING\r\n' >&"$fd"
    IFS= read -r -t 2 reply <&"$fd" || true
    exec {fd}>&-
    [[ "$reply" == +PONG* ]]
}

redis_start() {
    command -v redis-server >/dev/null || die "redis-server not found"
    REDIS_DIR="$(mktemp -d -t switchyard-redis.XXXXXX)"
    local attempt i
    for attempt in 1 2 3; do
        REDIS_PORT="$(free_port)"
        rm -f "$REDIS_DIR/redis.pid"
        redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize yes --pidfile "$REDIS_DIR/redis.pid" --dir "$REDIS_DIR" \
            --logfile "$REDIS_DIR/redis.log"
        for ((i = 0; i < 50; i++)); do
            if [[ -s "$REDIS_DIR/redis.pid" ]] && _redis_ping "$REDIS_PORT" 2>/dev/null; then
                REDIS_PID="$(cat "$REDIS_DIR/redis.pid")"
                return 0
            fi
            sleep 0.1
        done
        warn "Redis did not start on port $REDIS_PORT (attempt $attempt):"
        tail -n 5 "$REDIS_DIR/redis.log" >&2 || true
        [[ -s "$REDIS_DIR/redis.pid" ]] && _stop_pid "$(cat "$REDIS_DIR/redis.pid")" TERM Redis
    done
    die "could not start Redis"
}

redis_stop() {
    if [[ -n "$REDIS_PID" ]]; then
        _stop_pid "$REDIS_PID" TERM Redis
        REDIS_PID=""
    fi
    if [[ -n "$REDIS_DIR" ]]; then
        rm -rf "$REDIS_DIR"
        REDIS_DIR=""
    fi
}

services_stop() {
    pg_stop
    redis_stop
}
