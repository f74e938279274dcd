"""
What the benches measure with: CPU seconds per process group read from /proc (a process and all its
descendants, the exited ones included), the machine's busy time, and a load loop of N client threads over a
warm-up and a measured window with its percentiles and usual figures.
"""

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- CPU accounting from /proc ------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of it and its reaped children) of one process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    # utime, stime, cutime, cstime: exited children (PostgreSQL backends, gunicorn workers) count too.
    return int(fields[1]), sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def tree_cpu_seconds(root_pid: int | None) -> float:
    """CPU seconds used so far by a process and all its descendants (e.g. gunicorn and its workers)."""
    if root_pid is None:
        return 0.0
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))):
            stats[int(entry.name)] = stat
    total, todo = 0.0, [root_pid]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
            todo.extend(child for child, (parent, _) in stats.items() if parent == pid)
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy (not idle, not waiting for I/O) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS


def cpu_snapshot(started) -> dict[str, float]:
    """CPU seconds so far of this process, of each server we started, and of the whole machine."""
    return {
        "client": time.process_time(),
        "gunicorn": tree_cpu_seconds(started.gunicorn_pid),
        "postgres": tree_cpu_seconds(started.postgres_pid),
        "redis": tree_cpu_seconds(started.redis_pid),
        "machine": machine_busy_seconds(),
    }


def cpu_percentages(before: dict, after: dict, seconds: float) -> dict[str, int]:
    """Per process group, in % of one core; `other` is what the rest of the machine used meanwhile."""
    used = {name: (after[name] - before[name]) / seconds * 100 for name in before}
    machine = used.pop("machine")
    return {**{k: round(v) for k, v in used.items()}, "other": round(machine - sum(used.values()))}


CPU_GROUPS = ("client", "gunicorn", "postgres", "redis", "other")


# --- load ---------------------------------------------------------------------------------------------


@dataclass
class ClientTally:
    """One load thread's results for the measured window."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    last_end: float = 0.0
    error_samples: list[str] = field(default_factory=list)


# request(client, thread index) → None when the answer was the expected one, else a short description.
Request = Callable[[object, int], str | None]


def _client_loop(request, client, index, failures, measure_from, until, stop, tally: ClientTally) -> None:
    """Repeat one request on one client (connection); record those started inside the window."""
    while not stop.is_set():
        began = time.perf_counter()
        if began >= until:
            return
        try:
            problem = request(client, index)
        except failures as exc:
            problem = f"{type(exc).__name__}: {exc}"
        ended = time.perf_counter()
        if began >= measure_from:
            tally.last_end = ended
            if problem is None:
                tally.latencies.append(ended - began)
            else:
                tally.errors += 1
                if len(tally.error_samples) < 3:
                    tally.error_samples.append(problem)


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def run_load(
    clients: Sequence,
    request: Request,
    warmup: float,
    seconds: float,
    started,
    *,
    failures: tuple[type[BaseException], ...] = (httpx.HTTPError,),
    probe: Callable[[], float] | None = None,
) -> dict:
    """
    One thread per client repeating `request` for warmup + seconds; figures of the last `seconds`: answers,
    errors (a wrong answer or one of `failures` raised), elapsed, latencies (sorted), CPU per process group,
    and the change of `probe()` (e.g. Redis' command counter) over the window.
    """
    stop = threading.Event()
    tallies = [ClientTally() for _ in clients]
    now = time.perf_counter()
    measure_from, until = now + warmup, now + warmup + seconds
    threads = [
        threading.Thread(
            target=_client_loop,
            args=(request, client, index, failures, measure_from, until, stop, tally),
            daemon=True,
        )
        for index, (client, tally) in enumerate(zip(clients, tallies, strict=True))
    ]
    try:
        for thread in threads:
            thread.start()
        time.sleep(max(0.0, measure_from - time.perf_counter()))
        cpu_before = cpu_snapshot(started)
        probe_before = probe() if probe else None
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.2)
        cpu_after = cpu_snapshot(started)
        probe_after = probe() if probe else None
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=35)
    last_end = max(t.last_end for t in tallies)
    elapsed = last_end - measure_from if last_end else seconds
    latencies = sorted(lat for t in tallies for lat in t.latencies)
    return {
        "answers": len(latencies),
        "errors": sum(t.errors for t in tallies),
        "error_samples": [s for t in tallies for s in t.error_samples][:3],
        "elapsed": elapsed,
        "latencies": latencies,
        # In % of one core (100 × os.cpu_count() is the whole machine); `other`: processes not ours.
        "cpu_pct": cpu_percentages(cpu_before, cpu_after, elapsed),
        "probe_delta": probe_after - probe_before if probe else None,
    }


def load_figures(result: dict) -> dict:
    """The usual figures of a run_load result: count, errors, seconds, per second, p50 and p99 in ms."""
    latencies, elapsed = result["latencies"], result["elapsed"]
    return {
        "requests": result["answers"],
        "errors": result["errors"],
        "error_samples": result["error_samples"],
        "seconds": round(elapsed, 2),
        "rps": round(result["answers"] / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "cpu_pct": result["cpu_pct"],
    }


def httpx_clients(base: str, count: int, headers: dict | None = None) -> list[httpx.Client]:
    """`count` httpx clients with one keep-alive connection each."""
    return [
        httpx.Client(
            base_url=base,
            headers=headers or {},
            timeout=30,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        for _ in range(count)
    ]
