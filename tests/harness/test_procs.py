"""harness.procs: a Proc runs in a process group of its own and is stopped by its id, children included."""

import os
import signal
import sys
import time

import pytest

from harness import procs
from harness.procs import Proc, free_port, is_running

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process groups and /proc: Linux")


def test_stop_ends_the_whole_group_and_closes_the_log(tmp_path):
    # A leader that starts a child which ignores SIGTERM: stop() must still leave nothing behind.
    script = "trap '' TERM; sleep 60 & echo child $!; wait"
    proc = Proc("group", ["sh", "-c", script], env=dict(os.environ), log_dir=tmp_path).start()
    proc.wait_for_text("child ", timeout=30)
    child = int(proc.text().split("child ", 1)[1].split()[0])
    assert os.getpgid(child) == proc.pid  # the leader's own group, not ours
    assert os.getpgid(0) != proc.pid

    proc.stop(timeout=2)

    assert not proc.alive()
    # The group's SIGKILL is sent; on a loaded machine the orphan may take a moment to be gone.
    deadline = time.monotonic() + 30
    while is_running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not is_running(child)
    assert proc in procs.started
    proc.stop()  # a second stop is harmless


def test_stop_of_the_leader_alone_lets_it_stop_its_children(tmp_path):
    script = "trap 'kill $c; exit 0' TERM; sleep 60 & c=$!; echo up; wait"
    proc = Proc("leader", ["sh", "-c", script], env=dict(os.environ), log_dir=tmp_path).start()
    proc.wait_for_text("up", timeout=30)

    proc.stop(signal.SIGTERM, 10, group=False)

    assert proc.popen.returncode == 0  # it ran its own shutdown (a SIGKILL would give -9)


def test_a_log_is_appended_to_across_restarts(tmp_path):
    proc = Proc("twice", ["sh", "-c", "echo run"], env=dict(os.environ), log=tmp_path / "twice.log")
    for _ in range(2):
        proc.start()
        proc.popen.wait(timeout=30)
        proc.stop()

    assert proc.text().split() == ["run", "run"] and proc.starts == 2


def test_free_port_is_free_on_loopback():
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # nothing holds it
