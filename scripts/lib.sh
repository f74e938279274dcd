# shellcheck shell=bash
# Shared helpers for the scripts in this folder. Source it; do not run it.
#
#   ROOT             the repository root (the scripts cd there)
#   say / warn / die messages on stderr, prefixed with the calling script's name
#   as_root CMD...   runs CMD as root (directly when root, else through sudo)
#   apt_install PKG...  apt-get install, running `apt-get update` once per script run
#   ensure_uv        installs uv with pip when it is missing; sets the UV array
#   uv_sync          `uv sync --locked` (all groups, so the shared .venv keeps its dev tools)
#   is_running PID   true while PID exists and is not a zombie (an exited child not yet waited for)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT_NAME="$(basename "$0")"

# uv must use this machine's Python 3.11: it cannot download one here.
export UV_PYTHON_DOWNLOADS=never

say() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() {
    printf '[%s] ERROR: %s\n' "$SCRIPT_NAME" "$*" >&2
    exit 1
}

as_root() {
    if [[ "$(id -u)" == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root to run '$*' (not root, and sudo is not installed)"
    fi
}

_APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found: install these packages by hand: $*"
    if [[ "$_APT_UPDATED" == 0 ]]; then
        say "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        _APT_UPDATED=1
    fi
    say "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

UV=()
ensure_uv() {
    if command -v uv >/dev/null && uv --version >/dev/null 2>&1; then
        UV=(uv)
        return
    fi
    if ! python3 -m uv --version >/dev/null 2>&1; then
        command -v python3 >/dev/null || apt_install python3
        python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
        say "installing uv: python3 -m pip install uv"
        # Debian's own python3 refuses pip installs (PEP 668) unless told otherwise.
        python3 -m pip install --quiet uv ||
            python3 -m pip install --quiet --break-system-packages uv ||
            die "could not install uv with pip"
    fi
    # pip may put the uv binary outside PATH (or behind a stale pyenv shim); `python3 -m uv` always works.
    UV=(python3 -m uv)
}

uv_sync() {
    ensure_uv
    say "uv sync --locked"
    (cd "$ROOT" && "${UV[@]}" sync --locked --quiet)
}

is_running() {
    local stat
    [[ -n "$1" ]] && read -r stat 2>/dev/null </proc/"$1"/stat || return 1
    stat="${stat##*) }" # the fields after "pid (command name) "; the first is the state
    [[ "${stat%% *}" != Z ]]
}
