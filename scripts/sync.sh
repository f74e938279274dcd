#!/usr/bin/env bash
# `make sync`: installs uv if it is missing, then the locked dependencies (dev group included) into .venv/.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
uv_sync
