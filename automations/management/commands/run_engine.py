"""`run_engine (hold|routing|inventory|exceptions) [--org SLUG]`: run one engine now
(docs/operations/runbook.md)."""

import json
import time

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from automations import engines
from automations.choices import Engine, RunOutcome
from automations.engine_settings import engine_enabled
from automations.models import EngineSettings, EngineStatus
from integrations.management.commands._common import get_organization
from organizations.models import Organization

SKIPPED = "skipped"


class Command(BaseCommand):
    help = (
        "Run one engine now, for one organization or each in turn, and print what it did: a line per "
        "organization (its counts, or why it was skipped or failed) and the totals. Exits non-zero when the "
        "engine failed in any organization."
    )

    def add_arguments(self, parser):
        parser.add_argument("engine", help=f"The engine: {', '.join(Engine.values)}.")
        parser.add_argument("--org", metavar="SLUG", help="Only this organization (default: every one).")
        parser.add_argument("--json", action="store_true", help="JSON instead of lines of text.")

    def handle(self, *args, **options):
        engine = check_engine(options["engine"])
        if options["org"] is not None:
            orgs = [get_organization(options["org"])]
        else:
            orgs = list(Organization.objects.order_by("slug"))
        off = set(
            EngineSettings.objects.filter(organization__in=orgs, **{f"{engine}_enabled": False}).values_list(
                "organization_id", flat=True
            )
        )
        results = []
        for number, org in enumerate(orgs, 1):
            result = self.run(engine, org, skip=org.pk in off)
            results.append(result)
            if options["json"]:
                if len(orgs) > 1:  # progress on stderr: stdout stays one JSON document
                    self.stderr.write(f"{number}/{len(orgs)} {org.slug}: {result['outcome']}")
            else:
                self.stdout.write(_line(result))
        totals = _totals(results)
        if options["json"]:
            self.stdout.write(json.dumps({"engine": engine, "organizations": results, **totals}, indent=2))
        else:
            self.stdout.write(_summary(engine, totals))
        if totals["failed"]:
            failed = ", ".join(r["organization"] for r in results if r["outcome"] == RunOutcome.FAILED)
            raise CommandError(f"The {engine} engine failed in {failed}; see the errors above.")

    def run(self, engine, org, *, skip) -> dict:
        """One organization: the engine's counts and its recorded status, or why nothing ran."""
        result = {"organization": org.slug, "outcome": SKIPPED, "counts": {}, "duration_ms": 0, "error": ""}
        if skip:
            result["error"] = "switched off"
            return result
        started, clock = timezone.now(), time.monotonic()
        try:
            counts = engines.run_now(engine, org) or {}
        except Exception as error:  # recorded on the engine's status by running(); the next org still runs
            counts = {}
            result["error"] = f"{type(error).__name__}: {error}"
        # "organizations" (how many the engine ran in) is what this command reports line by line.
        result["counts"] = {key: value for key, value in counts.items() if value and key != "organizations"}
        result["duration_ms"] = int((time.monotonic() - clock) * 1000)
        status = EngineStatus.objects.filter(
            organization=org, engine=engine, last_run_at__gte=started
        ).first()
        if status is not None and status.last_outcome == RunOutcome.FAILED:
            result["error"] = result["error"] or status.last_error
        if result["error"] or counts.get("failed"):
            result["outcome"] = RunOutcome.FAILED
            result["error"] = result["error"] or "failed (see the logs)"
        elif status is None and not engine_enabled(org, engine):
            result["outcome"], result["error"] = SKIPPED, "switched off"  # switched off since our look
        else:
            result["outcome"] = RunOutcome.OK
        return result


def check_engine(value: str) -> Engine:
    # Checked here, not by argparse `choices`: call_command does not apply choices to positional values.
    try:
        return Engine(str(value).strip().lower())
    except ValueError:
        raise CommandError(f"Unknown engine {value!r}; one of: {', '.join(Engine.values)}.") from None


def _counts(counts: dict) -> str:
    return ", ".join(f"{value} {key.replace('_', ' ')}" for key, value in counts.items()) or "nothing to do"


def _line(result: dict) -> str:
    if result["outcome"] == SKIPPED:
        return f"{result['organization']}: skipped ({result['error']})"
    if result["outcome"] == RunOutcome.FAILED:
        return f"{result['organization']}: FAILED after {result['duration_ms']} ms: {result['error']}"
    return f"{result['organization']}: {_counts(result['counts'])} ({result['duration_ms']} ms)"


def _totals(results: list[dict]) -> dict:
    counts: dict[str, int] = {}
    for result in results:
        for key, value in result["counts"].items():
            counts[key] = counts.get(key, 0) + value
    by_outcome = {
        o: sum(r["outcome"] == o for r in results) for o in (RunOutcome.OK, RunOutcome.FAILED, SKIPPED)
    }
    return {
        "totals": counts,
        "ran": by_outcome[RunOutcome.OK],
        "failed": by_outcome[RunOutcome.FAILED],
        "skipped": by_outcome[SKIPPED],
    }


def _summary(engine, totals: dict) -> str:
    if not (totals["ran"] or totals["failed"] or totals["skipped"]):
        return "No organizations."
    return (
        f"{Engine(engine).label} engine: {_counts(totals['totals'])}. Organizations: {totals['ran']} ran, "
        f"{totals['skipped']} skipped, {totals['failed']} failed."
    )
