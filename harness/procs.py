"""
A process the harness starts (Proc): its own session and process group, its output in a log file, stopped
by its own id — SIGTERM (or another signal) to the group, SIGKILL after a timeout. Every Proc started is
recorded in `started`, in order, so a failing test can show their logs and the secret check can read them.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
PYTHON = str(BIN / "python") if (BIN / "python").exists() else sys.executable

START_TIMEOUT = 90  # seconds for a process to come up on a loaded two-core machine
STOP_TIMEOUT = 15

started: list["Proc"] = []  # every Proc started in this Python process, in order


class HarnessError(RuntimeError):
    """A process or server did not start or stop as it must (its log's tail is in the message)."""


class Missing(HarnessError):
    """A program the harness needs is not installed (tests skip, benches stop with the message)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie (a zombie child of ours is reaped here)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    # Someone else's zombie (an orphan its new parent has not reaped yet) has exited too.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: kill(0) is all there is to go by
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


def stop_pid(pid: int, sig: int, name: str, timeout: float = 30) -> None:
    """Send `sig` to one process we started, wait for it to exit, SIGKILL it after `timeout` seconds."""
    if not is_running(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_running(pid):
            return
        time.sleep(0.05)
    print(f"  {name} (pid {pid}) did not stop in {timeout:.0f} s: killing it", file=sys.stderr)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def run_command(argv: list, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run of a fixed argument list (no shell), output captured, in a session of its own."""
    kwargs.setdefault("start_new_session", True)  # Ctrl-C in the terminal must not reach it halfway
    return subprocess.run(argv, capture_output=True, check=False, **kwargs)  # noqa: S603 - argv lists built here, no shell


def spawn(argv: list, **kwargs) -> subprocess.Popen:
    """A long-running server in its own session, so Ctrl-C in the terminal reaches only us: we stop it."""
    return subprocess.Popen(argv, start_new_session=True, **kwargs)  # noqa: S603 - argv lists built here, no shell


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Proc:
    """
    A subprocess in its own process group with its output in a log file (`log`, else a new file in
    `log_dir`; appended to across restarts). With `json_lines`, stdout is read by a thread that keeps each
    JSON line as an event (the examples' log format) and copies it to the log.
    """

    def __init__(
        self,
        name: str,
        argv: list,
        *,
        env: dict,
        log_dir: Path | None = None,
        log: Path | None = None,
        json_lines: bool = False,
    ):
        self.name, self.argv, self.env, self.json_lines = name, [str(a) for a in argv], env, json_lines
        self.log_path = log or Path(log_dir) / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.events: list[dict] = []
        self.changed = threading.Condition()
        self.popen: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None
        self.eof = False  # its stdout ended (json_lines)
        self.stopped = False
        self.starts = 0
        self._log = None

    def start(self) -> "Proc":
        self._log = open(self.log_path, "a", buffering=1)  # noqa: SIM115 - closed in stop()
        self.popen = spawn(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if self.json_lines else self._log,
            stderr=self._log if self.json_lines else subprocess.STDOUT,
            text=True,
        )
        self.stopped, self.eof = False, False
        self.starts += 1
        if self not in started:
            started.append(self)
        if self.json_lines:
            self.reader = threading.Thread(target=self._read, name=f"read-{self.name}", daemon=True)
            self.reader.start()
        return self

    def _read(self) -> None:
        for line in self.popen.stdout:
            self._log.write(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self.changed:
                self.events.append(event)
                self.changed.notify_all()
        with self.changed:
            self.eof = True
            self.changed.notify_all()

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # the group is gone already
            os.killpg(self.popen.pid, sig)  # the group this process leads (its own session)

    def kill_group(self) -> None:
        """SIGKILL to the whole process group (a prefork worker and its children), then reap the leader."""
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=STOP_TIMEOUT)
        self._close()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT, *, group: bool = True) -> None:
        """
        `sig` to the group (or, `group=False`, to the leader alone: a gunicorn master or a Celery worker
        stops its own children); SIGKILL to the group if it has not exited within `timeout` seconds, and to
        any child the leader left behind.
        """
        if self.popen is None or self.stopped:
            return
        self.stopped = True
        if self.popen.poll() is None:
            if group:
                self._signal_group(sig)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.popen.pid, sig)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._log.write(f"\n[harness] {self.name} did not stop in {timeout} s: SIGKILL\n")
                self._signal_group(signal.SIGKILL)
                self.popen.wait(timeout=STOP_TIMEOUT)
        self._signal_group(signal.SIGKILL)  # children the leader left behind, if any
        self._close()

    def _close(self) -> None:
        if self.reader is not None:
            self.reader.join(timeout=5)  # the rest of its output, before the pipe and the log close
        if self.popen.stdout:
            self.popen.stdout.close()
        if self._log is not None and not self._log.closed:
            self._log.close()

    def text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 150) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def wait_for_text(self, needle: str, timeout: float = START_TIMEOUT, *, after: int = 0) -> None:
        """Wait until the log has `needle` (past its first `after` characters)."""
        deadline = time.monotonic() + timeout
        while needle not in self.text()[after:]:
            if not self.alive():
                raise AssertionError(f"{self.name} exited ({self.popen.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {needle!r} within {timeout} s:\n{self.tail()}")
            time.sleep(0.2)

    def wait_for(self, event: str, timeout: float = 30.0, **fields) -> dict:
        """The first JSON event named `event` whose fields equal `fields`; fails on timeout or a "fatal"."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for item in self.events:
                    if item.get("event") == event and all(item.get(k) == v for k, v in fields.items()):
                        return item
                    if item.get("event") == "fatal":
                        raise AssertionError(f"{self.name} failed: {item}")
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    raise AssertionError(
                        f"{self.name}: no {event} {fields} within {timeout} s (alive: {self.alive()}):\n"
                        + self.tail()
                    )
                self.changed.wait(min(left, 0.5))

    def matching(self, event: str, **fields) -> list[dict]:
        with self.changed:
            return [
                e
                for e in self.events
                if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
            ]


def stop_all_started() -> None:
    """Stop every process started here, newest first (a killed worker among them is reaped)."""
    for proc in reversed(started):
        proc.stop()
