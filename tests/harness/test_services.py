"""
`python -m harness.services run -- CMD` (what scripts/test.sh runs pytest through): CMD sees a PostgreSQL
and a Redis of its own, its exit status is the runner's, and both servers are gone afterwards.
"""

import re
import subprocess
import sys

from harness.procs import PYTHON, ROOT, is_running

PROBE = """
import os, sys
import psycopg, redis
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    assert conn.execute("select current_user").fetchone() == ("app",)
assert redis.Redis.from_url(os.environ["REDIS_URL"]).ping()
assert redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).ping()
print("urls", os.environ["DATABASE_URL"], os.environ["REDIS_URL"])
sys.exit(3)
"""


def test_run_gives_the_command_its_own_servers_and_stops_them():
    done = subprocess.run(
        [PYTHON, "-m", "harness.services", "run", "--", sys.executable, "-c", PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 3, done.stderr  # the command's own status
    urls = re.search(r"urls (postgres://app@127\.0\.0\.1:\d+/app) (redis://127\.0\.0\.1:\d+/1)", done.stdout)
    assert urls, done.stdout
    pids = [int(pid) for pid in re.findall(r"\(pid (\d+)\)", done.stderr)]
    assert len(pids) == 2, done.stderr  # PostgreSQL's postmaster and redis-server
    assert not any(is_running(pid) for pid in pids)
