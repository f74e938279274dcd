"""
The process harness the tests and the benches share: every process they start runs on 127.0.0.1 with a free
port, in a process group of its own, and is stopped by its own id (never by name), whatever happened.

* harness.procs: a process with its log file (Proc), free ports, stopping a PID, the registry of what started;
* harness.services: throwaway PostgreSQL clusters and redis-servers (and `python -m harness.services`, which
  scripts/test.sh uses to run the suite against a pair of them);
* harness.hub: the hub's own processes — gunicorn (with config/gunicorn.py), a Celery worker and beat — and
  `manage.py` against their database;
* harness.receivers: webhook receivers served in the calling process;
* harness.fixtures: the pytest side — fixtures, the failure report hook, the check that no secret the hub
  handed out reached a log.
"""
