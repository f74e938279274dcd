"""
The security audit `make test` runs after the lint: bandit over our code, pip-audit over the locked
dependencies. A finding fails the run unless it is recorded with a reason:

* bandit: on the flagged statement, ruff's own comment for the same check, `# noqa: S<nnn> - <reason>`
  (ruff's flake8-bandit codes are bandit's test ids with S for B, so one comment answers both tools and the
  reason is read where the code is), or an entry in scripts/audit-exceptions.toml;
* pip-audit: an entry in scripts/audit-exceptions.toml naming the vulnerability id (or one of its aliases).

pip-audit asks a vulnerability service (PyPI's JSON API, or OSV). When it cannot reach one, every package is
reported "could not be audited": that is printed loudly and fails the run only with AUDIT_STRICT=1 (so a
machine without that service can still test; CI with network access should set it).

Run it alone with `.venv/bin/python scripts/audit.py [--only bandit|pip-audit]`.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EXCEPTIONS = ROOT / "scripts" / "audit-exceptions.toml"
# Our code: the apps, config, the examples connector authors copy, the benches and the scripts.
BANDIT_TARGETS = [
    "config",
    "core",
    "api",
    "console",
    "harness",
    "organizations",
    "integrations",
    "tokens",
    "automations",
    "orders",
    "inventory",
    "examples",
    "bench",
    "scripts",
    "manage.py",
]
BANDIT_EXCLUDE = "*/migrations/*,./tests/*,./.venv/*,./var/*"
NOQA = re.compile(r"#\s*noqa:\s*(?P<codes>[A-Z0-9, ]+?)\s+-\s+(?P<reason>\S.*)$")
REASON_MIN = 8  # characters: "ok" or "fine" is not a reason


@dataclass(frozen=True)
class Finding:
    tool: str
    ident: str  # bandit test id (B608) or vulnerability id
    where: str  # file:line, or package==version
    text: str

    def __str__(self):
        return f"{self.tool} {self.ident} at {self.where}: {self.text}"


def load_exceptions(path: Path = EXCEPTIONS) -> dict:
    """
    The recorded exceptions: [[bandit]] test, file (a glob), reason and [[pip-audit]] id, reason. An entry without a
    reason of a few words is itself an error.
    """
    data = tomllib.loads(path.read_text()) if path.exists() else {}
    for section in ("bandit", "pip-audit"):
        for entry in data.get(section, []):
            if len(str(entry.get("reason", "")).strip()) < REASON_MIN:
                raise SystemExit(f"{path.name}: the [[{section}]] entry {entry} needs a reason")
    return data


def noqa_reason(lines: list[str], line_range: list[int], test_id: str) -> str | None:
    """The reason of a `# noqa: S<nnn> - reason` for this bandit test on any line of the statement."""
    code = "S" + test_id.removeprefix("B")
    for number in line_range:
        if not 0 < number <= len(lines):
            continue
        match = NOQA.search(lines[number - 1])
        if match and code in re.split(r"[,\s]+", match["codes"]) and len(match["reason"]) >= REASON_MIN:
            return match["reason"]
    return None


def bandit_findings(report: dict, exceptions: dict, root: Path = ROOT) -> tuple[list[Finding], int]:
    """Unrecorded findings of a bandit JSON report, and how many were recorded."""
    recorded = [(e["test"], e["file"]) for e in exceptions.get("bandit", [])]
    open_findings, accepted = [], 0
    sources: dict[str, list[str]] = {}
    for result in report.get("results", []):
        filename = str(Path(result["filename"]).as_posix()).removeprefix("./")
        if filename not in sources:
            sources[filename] = (root / filename).read_text().splitlines()
        line_range = result.get("line_range") or [result["line_number"]]
        if any(
            test == result["test_id"] and fnmatch(filename, pattern) for test, pattern in recorded
        ) or noqa_reason(sources[filename], line_range, result["test_id"]):
            accepted += 1
            continue
        open_findings.append(
            Finding("bandit", result["test_id"], f"{filename}:{result['line_number']}", result["issue_text"])
        )
    return open_findings, accepted


def pip_audit_findings(report: dict, exceptions: dict) -> tuple[list[Finding], int, list[str]]:
    """Unrecorded vulnerabilities of a pip-audit JSON report, how many were recorded, and unaudited packages."""
    recorded = {e["id"] for e in exceptions.get("pip-audit", [])}
    open_findings, accepted, skipped = [], 0, []
    for dep in report.get("dependencies", []):
        if "skip_reason" in dep:
            skipped.append(dep["name"])
            continue
        for vuln in dep.get("vulns", []):
            if recorded & {vuln["id"], *vuln.get("aliases", [])}:
                accepted += 1
                continue
            fixed = ", ".join(vuln.get("fix_versions", [])) or "no fixed version"
            open_findings.append(
                Finding("pip-audit", vuln["id"], f"{dep['name']}=={dep['version']}", f"fixed in {fixed}")
            )
    return open_findings, accepted, skipped


def run_bandit() -> dict:
    argv = [str(BIN / "bandit"), "-q", "-r", *BANDIT_TARGETS, "-x", BANDIT_EXCLUDE, "-f", "json"]
    # bandit exits 1 when it finds anything: the JSON decides, not the exit code.
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)  # noqa: S603 - fixed argv
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"bandit failed:\n{done.stderr or done.stdout}") from None
    if report.get("errors"):
        raise SystemExit(f"bandit could not scan: {report['errors']}")
    return report


def locked_requirements(lock: Path = ROOT / "uv.lock") -> list[str]:
    """Every package pinned in uv.lock (all groups), as name==version; the project itself excluded."""
    packages = tomllib.loads(lock.read_text())["package"]
    return [f"{p['name']}=={p['version']}" for p in packages if "virtual" not in p.get("source", {})]


def run_pip_audit() -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as requirements:
        requirements.write("\n".join(locked_requirements()) + "\n")
        requirements.flush()
        argv = [str(BIN / "pip-audit"), "-r", requirements.name, "--disable-pip", "--no-deps"]
        argv += ["--format", "json", "--progress-spinner", "off", "--timeout", "20"]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)  # noqa: S603 - fixed argv
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"pip-audit failed:\n{done.stderr or done.stdout}") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["bandit", "pip-audit"])
    args = parser.parse_args(argv)
    exceptions = load_exceptions()
    strict = os.environ.get("AUDIT_STRICT", "") in {"1", "true", "yes"}
    failures: list[Finding] = []
    status = 0
    if args.only in (None, "bandit"):
        found, accepted = bandit_findings(run_bandit(), exceptions)
        failures += found
        print(f"bandit: {len(found)} open finding(s), {accepted} recorded with a reason")
    if args.only in (None, "pip-audit"):
        report = run_pip_audit()
        found, accepted, skipped = pip_audit_findings(report, exceptions)
        failures += found
        total = len(report.get("dependencies", []))
        print(
            f"pip-audit: {len(found)} open vulnerability(ies), {accepted} recorded, "
            f"{total - len(skipped)} of {total} packages audited"
        )
        if skipped:
            print(
                f"pip-audit: WARNING: {len(skipped)} package(s) could not be audited (is the vulnerability "
                f"service reachable from here?): {', '.join(sorted(skipped)[:8])}"
                + (" …" if len(skipped) > 8 else ""),
                file=sys.stderr,
            )
            if strict:
                print("pip-audit: AUDIT_STRICT is set: unaudited packages fail the run", file=sys.stderr)
                status = 1
    for finding in failures:
        print(f"  {finding}", file=sys.stderr)
    if failures:
        print(
            "Fix each finding, or record it with a reason: `# noqa: S<nnn> - <reason>` on the line for bandit, "
            f"or an entry in {EXCEPTIONS.relative_to(ROOT)}.",
            file=sys.stderr,
        )
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
