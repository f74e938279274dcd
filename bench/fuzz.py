"""
A long run of the API fuzz (tests/hardening/test_fuzz_api.py): every operation of the served OpenAPI
document with --examples positive and --examples negative examples (the suite runs 25 of each), against a
throwaway PostgreSQL and Redis (or, with --reuse-env, DATABASE_URL and REDIS_URL: pytest-django makes its
own test_<name> database there). Prints, per operation, how long it took, what it answered and whether it
held; writes bench/results/fuzz.json; exits 1 if any operation failed (pytest's report says why).

    .venv/bin/python bench/fuzz.py [--examples 500] [-k 'orders'] [--reuse-env]
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from _harness import (
    RESULTS_DIR,
    ROOT,
    Started,
    add_common_arguments,
    django_env,
    main,
    run_meta,
    start_services,
)

TEST = "tests/hardening/test_fuzz_api.py"


def run(args, stack: contextlib.ExitStack) -> dict:
    started = Started()
    database_url, redis_url = start_services(stack, started, args.reuse_env)
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fuzz-")))
    stats, junit = folder / "stats.jsonl", folder / "junit.xml"
    env = {
        **os.environ,
        **django_env(database_url, redis_url, folder),
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        "FUZZ_EXAMPLES": str(args.examples),
        "FUZZ_STATS": str(stats),
    }
    argv = [sys.executable, "-m", "pytest", TEST, "-q", "-p", "no:warnings", "-p", "no:cacheprovider"]
    argv += ["--junitxml", str(junit), "-k", f"answers_as_documented and ({args.k})" if args.k else "answers"]
    print(f"Fuzzing with {args.examples} examples per operation and mode…")
    began = time.monotonic()
    result = subprocess.run(argv, cwd=ROOT, env=env, text=True, capture_output=True)  # noqa: S603 - our argv
    seconds = time.monotonic() - began
    if result.returncode not in (0, 1):
        raise SystemExit(
            f"pytest could not run (exit {result.returncode}):\n{result.stdout[-3000:]}{result.stderr}"
        )

    answered = {}
    for line in stats.read_text().splitlines() if stats.exists() else []:
        row = json.loads(line)
        answered[row["operation"]] = row["statuses"]
    operations = []
    for case in ET.parse(junit).getroot().iter("testcase"):  # noqa: S314 - pytest's own report
        name = case.get("name", "")
        label = name[name.index("[") + 1 : -1] if "[" in name else name
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        operations.append(
            {
                "operation": label,
                "seconds": round(float(case.get("time", 0)), 2),
                "passed": failure is None,
                "failure": (failure.get("message") or "")[:500] if failure is not None else None,
                "answered": answered.get(label, {}),
            }
        )
    examples = sum(sum(op["answered"].values()) for op in operations)
    return {
        "meta": {
            **run_meta("fuzz.py", started, args.reuse_env, "in-process WSGI (pytest)"),
            "pytest_exit": result.returncode,
        },
        "examples_per_operation_and_mode": args.examples,
        "operations": len(operations),
        "failed": sum(not op["passed"] for op in operations),
        "examples": examples,
        "seconds": round(seconds, 1),
        "by_operation": operations,
        "pytest_tail": result.stdout[-4000:] if result.returncode else "",
    }


def print_report(report: dict) -> None:
    print(
        f"\n{report['operations']} operations, {report['examples']} examples in {report['seconds']} s "
        f"({report['examples_per_operation_and_mode']} per operation and mode); {report['failed']} failed\n"
    )
    print(f"{'operation':<52} {'s':>6}  answered")
    for op in report["by_operation"]:
        counts = Counter(op["answered"])
        shown = ", ".join(f"{k}×{v}" for k, v in sorted(counts.items()))
        print(f"{op['operation']:<52} {op['seconds']:>6}  {'' if op['passed'] else 'FAILED '}{shown}")
    if report["failed"]:
        print("\n" + report["pytest_tail"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--examples", type=int, default=500, help="per operation and generation mode (500)")
    parser.add_argument("-k", default="", help="only operations whose test id matches (pytest -k)")
    add_common_arguments(parser, RESULTS_DIR / "fuzz.json", "pytest-django makes and drops test_<name> in it")
    arguments = parser.parse_args()
    code = main(arguments, run, print_report)
    sys.exit(code or (1 if json.loads(arguments.output.read_text())["failed"] else 0))
