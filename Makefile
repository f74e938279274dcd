# Switchyard. `make run` to try it, `make test` to check it. The logic lives in scripts/.
SHELL := /bin/bash
# uv must use this machine's Python 3.11: it cannot download one here.
export UV_PYTHON_DOWNLOADS := never
# Extra pytest arguments for `make test` and `make check`, e.g. make test PYTEST_ARGS='-k lifecycle -x'
export PYTEST_ARGS

RUFF := .venv/bin/ruff

.PHONY: help run test check lint audit fmt clean sync

help:
	@echo "make run    install, migrate, seed demo data, serve http://127.0.0.1:8000/admin/ (PORT=...) + worker + beat"
	@echo "make test   lint, audit, then the whole suite against a throwaway PostgreSQL and Redis (PYTEST_ARGS=...)"
	@echo "make check  lint, then the suite without the real-process and browser tests (-m 'not system'), same servers"
	@echo "make lint   ruff, the layer contracts (lint-imports) and scripts/check_architecture.py (circles, get_model, 500 lines)"
	@echo "make audit  bandit and pip-audit; a finding fails unless recorded with a reason (scripts/audit.py)"
	@echo "make fmt    ruff format and ruff check --fix"
	@echo "make clean  remove var/ (SQLite database, broker folder, logs, secret key)"
	@echo "make sync   install uv if missing and the locked dependencies into .venv/"

run:
	scripts/run.sh

test:
	scripts/test.sh

check:
	scripts/test.sh --check

sync:
	@scripts/sync.sh

lint: sync
	@status=0; \
	$(RUFF) check . || status=1; \
	$(RUFF) format --check . || status=1; \
	.venv/bin/lint-imports --no-cache || status=1; \
	.venv/bin/python scripts/check_architecture.py || status=1; \
	exit $$status

audit: sync
	.venv/bin/python scripts/audit.py

fmt: sync
	$(RUFF) format .
	$(RUFF) check --fix .

clean:
	rm -rf var/
