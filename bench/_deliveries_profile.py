"""
Where bench/deliveries.py's time goes: the SQL of one dispatch and of one delivery batch and a profile of
one batch, in this process; and a py-spy profile of the workers, summarised by where the samples fall.
"""

import contextlib
import cProfile
import pstats
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from _deliveries_phases import throughput
from _deliveries_work import Fixture, emit_batch
from _harness import (
    ROOT,
    spawn,
    sql_verb,
    stop_pid,
    tail,
    verb_counts,
)

# --- in-process: the SQL of a dispatch and of a delivery batch; a profile of one batch ------------------


def _frame_name(key) -> str:
    filename, line, name = key
    path = Path(filename)
    with contextlib.suppress(ValueError):
        path = path.relative_to(ROOT)
    text = str(path)
    if "site-packages/" in text:
        text = text.split("site-packages/", 1)[1]
    return f"{text}:{line}({name})" if line else name


def _queries(captured) -> list[dict]:
    return [{"verb": sql_verb(q["sql"]), "sql": q["sql"]} for q in captured.captured_queries]


def _shape(sql: str) -> str:
    """The statement with its literals blanked: consecutive statements of one shape are listed once."""
    return re.sub(r"\b\d+(\.\d+)?\b", "?", re.sub(r"'[^']*'", "?", sql))


def _query_summary(queries: list[dict], seconds: float) -> dict:
    grouped: list[dict] = []
    for q in queries:
        shape = _shape(q["sql"])
        if grouped and grouped[-1]["shape"] == shape:
            grouped[-1]["times"] += 1
        else:
            sql = " ".join(q["sql"][:400].split())
            grouped.append(
                {"verb": q["verb"], "times": 1, "chars": len(q["sql"]), "sql": sql, "shape": shape}
            )
    for row in grouped:
        del row["shape"]
    return {
        "ms": round(seconds * 1000, 1),
        "count": len(queries),
        "by_verb": verb_counts(queries),
        "queries": grouped,  # consecutive statements of the same shape once, with how many times
    }


def in_process(fixture: Fixture) -> dict:
    """Two batches emitted and dispatched in-process; the SQL of the dispatch and of a delivery batch."""
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from config.celery import app
    from integrations.webhooks import delivery, outbox

    batch = settings.WEBHOOK_BATCH_SIZE
    emit_batch(fixture, "inproc", 2 * batch)
    with CaptureQueriesContext(connection) as captured:
        began = time.perf_counter()
        dispatched, made = outbox.dispatch_outbox()
        dispatch_s = time.perf_counter() - began
    results = {
        "dispatch": {
            "events": dispatched,
            "deliveries": made,
            **_query_summary(_queries(captured), dispatch_s),
        }
    }
    delivery.deliver_due()  # warms the pool's connections and the thread pool
    profile = cProfile.Profile()
    with CaptureQueriesContext(connection) as captured:
        began = time.perf_counter()
        profile.enable()
        sent = delivery.deliver_due()
        profile.disable()
        deliver_s = time.perf_counter() - began
    results["deliver_batch"] = {"deliveries": sent, **_query_summary(_queries(captured), deliver_s)}
    stats = pstats.Stats(profile)
    rows = sorted(stats.stats.items(), key=lambda item: item[1][3], reverse=True)  # cumulative
    results["profile"] = {
        "note": "cProfile of one deliver_due() in the bench process: the calling thread only (the POSTs run "
        "on the pool's threads, so they show as the wait in executor.map)",
        "seconds": round(deliver_s, 4),
        "top_cumulative": [
            {
                "function": _frame_name(key),
                "calls": nc,
                "tottime_ms": round(tt * 1000, 2),
                "cumtime_ms": round(ct * 1000, 2),
            }
            for key, (_cc, nc, tt, ct, _callers) in rows[:25]
        ],
        "top_own": [
            {"function": _frame_name(key), "calls": nc, "tottime_ms": round(tt * 1000, 2)}
            for key, (_cc, nc, tt, _ct, _callers) in sorted(
                stats.stats.items(), key=lambda item: item[1][2], reverse=True
            )[:15]
        ],
    }
    if sent != batch or made != 2 * batch:
        raise SystemExit(
            f"In-process: {made} deliveries made of {2 * batch}, a batch of {sent} sent of {batch}"
        )
    results["purged_messages"] = app.control.purge()  # the doorbells these rang: the workers are not up yet
    return results


# --- the workers ---------------------------------------------------------------------------------------


# --- py-spy: where the workers' time goes --------------------------------------------------------------


def py_spy_profile(binary: str, fixture, receiver, args, started, pids, folder: Path) -> dict:
    """Phase (2) again on its own integration, with py-spy sampling the worker processes."""
    out = folder / "py-spy.txt"
    argv = [binary, "record", "--pid", str(pids.workers), "--subprocesses", "--format", "raw"]
    argv += ["--rate", "100", "--nonblocking", "--full-filenames", "--output", str(out)]
    log = folder / "py-spy.log"
    with log.open("wb") as sink:
        proc = spawn(argv, stdout=sink, stderr=subprocess.STDOUT)
    time.sleep(1.0)  # attached
    try:
        figures = throughput(fixture, receiver, args, started, pids, phase="profile")
    finally:
        stop_pid(proc.pid, signal.SIGINT, "py-spy")
    if not out.exists():
        return {"error": f"py-spy wrote nothing: {tail(log, 5)}", "throughput": figures}
    return {
        "throughput_while_sampled": {k: figures[k] for k in ("events", "seconds", "deliveries_per_s")},
        **stack_summary(out.read_text(errors="replace")),
    }


FUNC = re.compile(r"^(?P<name>.+?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# Where a sample is, by the innermost engine or library frame on its stack (first match wins).
BUCKETS = (
    ("HTTP send (post_signed: httpx, sockets, signing)", ("core/outbound.py",)),
    ("record_outcomes (attempts, delivery updates, counters)", ("record_outcomes",)),
    ("claim (SELECT … FOR UPDATE SKIP LOCKED, UPDATE, SELECT)", ("claim (",)),
    ("dispatch_outbox (outbox → deliveries)", ("dispatch_outbox",)),
    ("ring / publish to the broker", ("ring (", "enqueue (")),
    ("sweep", ("sweep (",)),
    ("other engine code", ("integrations/",)),
    ("celery / kombu (task machinery, broker)", ("celery/", "kombu/", "billiard/")),
)


def stack_summary(raw: str) -> dict:
    """Collapsed stacks → samples by engine step (BUCKETS), by function inclusive, and by leaf function."""
    total = 0
    own, inclusive, buckets = Counter(), Counter(), Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        names, ours = [], set()
        for frame in frames:
            match = FUNC.match(frame)
            name = f"{match['name']} ({_short(match['file'])})" if match else frame
            names.append(name)
            if match and _is_project(match["file"]):
                ours.add(name)
        if names:
            own[names[-1]] += n
        for name in ours:  # inclusive: the project's own functions (the rest is the same root chain)
            inclusive[name] += n
        for bucket, needles in BUCKETS:
            if any(needle in frame for frame in frames for needle in needles):
                buckets[bucket] += n
                break
        else:
            buckets["idle / elsewhere (worker main loop, threads waiting)"] += n

    def share(counter, top):
        return [
            {"function": k, "samples": v, "pct": round(100 * v / total, 1)}
            for k, v in counter.most_common(top)
        ]

    return {
        "samples": total,
        "by_step": share(buckets, 20),
        "inclusive": share(inclusive, 30),
        "own": share(own, 20),
    }


def _is_project(path: str) -> bool:
    """A file of this checkout (py-spy runs with --full-filenames), not of the venv."""
    return path.startswith(f"{ROOT}/") and "/.venv/" not in path and "site-packages/" not in path


def _short(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(ROOT))
    return path
