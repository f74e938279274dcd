"""scripts/audit.py: what fails `make test`'s security audit and what a recorded reason lets through."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("audit", ROOT / "scripts" / "audit.py")
audit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audit)

BIN = Path(sys.executable).parent


def bandit_report(folder: Path) -> dict:
    """A real bandit run over `folder`, as the audit runs it over the project."""
    done = subprocess.run(
        [str(BIN / "bandit"), "-q", "-r", ".", "-f", "json"], cwd=folder, capture_output=True, text=True
    )
    return json.loads(done.stdout)


@pytest.fixture
def code(tmp_path):
    def write(source: str) -> Path:
        (tmp_path / "module.py").write_text(source)
        return tmp_path

    return write


def test_an_unrecorded_bandit_finding_is_open(code):
    folder = code("import subprocess\n\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n")
    found, accepted = audit.bandit_findings(bandit_report(folder), {}, root=folder)
    assert {f.ident for f in found} == {"B404", "B602"}
    assert accepted == 0
    assert all(f.where.startswith("module.py:") for f in found)


def test_ruffs_noqa_with_a_reason_records_the_same_bandit_check(code):
    folder = code(
        "import subprocess  # noqa: S404 - runs our own tools\n\n\n"
        "def run(cmd):\n"
        "    return subprocess.call(cmd, shell=True)  # noqa: S602 - cmd is a constant of this module\n"
    )
    found, accepted = audit.bandit_findings(bandit_report(folder), {}, root=folder)
    assert found == []
    assert accepted == 2


@pytest.mark.parametrize(
    "comment",
    [
        "# noqa: S602",  # no reason
        "# noqa: S602 - ok",  # not a reason
        "# noqa: S603 - another check, with a long enough reason",  # another check
    ],
)
def test_a_noqa_without_a_reason_or_for_another_check_records_nothing(code, comment):
    folder = code(
        f"import subprocess  # noqa: S404 - runs our own tools\n\nsubprocess.call('/bin/ls', shell=True)  {comment}\n"
    )
    found, _ = audit.bandit_findings(bandit_report(folder), {}, root=folder)
    assert [f.ident for f in found] == ["B602"]


def test_the_exceptions_file_records_a_check_for_files_matching_its_glob(code):
    folder = code("import random\n\nvalue = random.random()\n")
    report = bandit_report(folder)
    assert [r["test_id"] for r in report["results"]] == ["B311"]
    recorded = {"bandit": [{"test": "B311", "file": "mod*.py", "reason": "workload shapes"}]}
    assert audit.bandit_findings(report, recorded, root=folder) == ([], 1)
    elsewhere = {"bandit": [{"test": "B311", "file": "bench/*.py", "reason": "workload shapes"}]}
    assert len(audit.bandit_findings(report, elsewhere, root=folder)[0]) == 1


def test_an_exception_without_a_reason_is_refused(tmp_path):
    path = tmp_path / "exceptions.toml"
    path.write_text('[[pip-audit]]\nid = "GHSA-aaaa-bbbb-cccc"\nreason = ""\n')
    with pytest.raises(SystemExit, match="needs a reason"):
        audit.load_exceptions(path)


PIP_AUDIT_REPORT = {
    "dependencies": [
        {
            "name": "django",
            "version": "5.2.0",
            "vulns": [
                {"id": "PYSEC-2025-1", "aliases": ["CVE-2025-0001"], "fix_versions": ["5.2.1"]},
                {"id": "GHSA-aaaa-bbbb-cccc", "aliases": [], "fix_versions": []},
            ],
        },
        {"name": "httpx", "version": "0.28.1", "vulns": []},
        {"name": "tablib", "skip_reason": "Dependency not found on PyPI and could not be audited"},
    ]
}


def test_a_vulnerability_is_open_unless_one_of_its_ids_is_recorded():
    found, accepted, skipped = audit.pip_audit_findings(PIP_AUDIT_REPORT, {})
    assert [(f.ident, f.where) for f in found] == [
        ("PYSEC-2025-1", "django==5.2.0"),
        ("GHSA-aaaa-bbbb-cccc", "django==5.2.0"),
    ]
    assert "fixed in 5.2.1" in found[0].text
    assert (accepted, skipped) == (0, ["tablib"])

    recorded = {"pip-audit": [{"id": "CVE-2025-0001", "reason": "we do not use the affected feature"}]}
    found, accepted, _ = audit.pip_audit_findings(PIP_AUDIT_REPORT, recorded)
    assert [f.ident for f in found] == ["GHSA-aaaa-bbbb-cccc"]
    assert accepted == 1


def test_the_audit_reads_every_locked_package():
    requirements = audit.locked_requirements()
    names = {line.split("==")[0] for line in requirements}
    assert {"django", "celery", "pytest", "bandit"} <= names  # runtime and dev groups
    assert "switchyard" not in names
    assert all(line.count("==") == 1 for line in requirements)


def test_the_projects_own_code_has_no_open_bandit_finding():
    found, accepted = audit.bandit_findings(audit.run_bandit(), audit.load_exceptions())
    assert found == [], "\n".join(map(str, found))
    assert accepted > 0
