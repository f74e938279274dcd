"""
The four engines (hold, routing, inventory, exceptions). Each is a module of plain functions that a task, the
`run_engine` command or the admin calls; `running()` wraps one engine's work in one organization: it skips
an engine the organization switched off and records the run's outcome for the dashboard (EngineStatus).
"""

import logging
import time
from contextlib import contextmanager
from importlib import import_module

from django.db.models import F
from django.utils import timezone

from organizations.models import Organization

from ..choices import Engine, RunOutcome, RunTrigger
from ..engine_settings import engine_settings
from ..models import EngineSettings, EngineStatus

logger = logging.getLogger(__name__)


class Skipped(Exception):
    """The engine is switched off for this organization: `running()` yields nothing to do."""


def organizations(engine, organization=None) -> list[Organization]:
    """The organizations where `engine` is on (one, when given and on)."""
    orgs = Organization.objects.order_by("pk")
    if organization is not None:
        orgs = orgs.filter(pk=organization if isinstance(organization, int) else organization.pk)
    off = EngineSettings.objects.filter(**{f"{engine}_enabled": False}).values("organization_id")
    return list(orgs.exclude(pk__in=off))


@contextmanager
def running(organization, engine, trigger=RunTrigger.SCHEDULE):
    """
    `with running(org, Engine.ROUTING, RunTrigger.EVENT) as run:` — `run` is (settings, counts): the work
    adds to counts; the outcome and counts are recorded when the block ends (a failure is recorded, then
    re-raised). Raises Skipped when the engine is off here; callers catch it.
    """
    settings = engine_settings(organization)
    if not settings.enabled(engine):
        raise Skipped(engine)
    counts: dict[str, int] = {}
    started = time.monotonic()
    try:
        yield settings, counts
    except Exception as error:
        _record(settings.organization_id, engine, trigger, RunOutcome.FAILED, counts, started, error)
        raise
    _record(settings.organization_id, engine, trigger, RunOutcome.OK, counts, started)


def _record(org_id, engine, trigger, outcome, counts, started, error=None):
    """One UPDATE (an INSERT the first time): the dashboard's figures, outside the engine's transaction."""
    now = timezone.now()
    values = {
        "last_run_at": now,
        "last_trigger": trigger,
        "last_outcome": outcome,
        "last_duration_ms": int((time.monotonic() - started) * 1000),
        "last_counts": {k: v for k, v in counts.items() if v},
        "runs": F("runs") + 1,
    }
    if error is not None:
        values |= {"last_error": f"{type(error).__name__}: {error}"[:2000], "last_error_at": now}
        values["failures"] = F("failures") + 1
    try:
        if not EngineStatus.objects.filter(organization_id=org_id, engine=engine).update(**values):
            EngineStatus.objects.get_or_create(organization_id=org_id, engine=engine)
            EngineStatus.objects.filter(organization_id=org_id, engine=engine).update(**values)
    except Exception:  # the record is for people; it must never turn a good run into a failed task
        logger.exception("Could not record the %s engine's run for organization %s.", engine, org_id)


def each_organization(engine, organization, trigger, work, *, tally_organizations=False) -> dict:
    """
    A sweep: `work(org, settings) -> counts` in every organization where `engine` is on (or the one given),
    each recorded by `running()`. One organization's failure is logged and counted as "failed"; the
    others still run. Returns the summed counts (+ "organizations" run, when asked).
    """
    total: dict[str, int] = {}
    for org in organizations(engine, organization):
        try:
            with running(org, engine, trigger) as (settings, counts):
                merge(counts, work(org, settings) or {})
        except Skipped:
            continue  # switched off between the listing and the run
        except Exception:  # recorded on the organization's engine status by running()
            logger.exception("The %s sweep failed for organization %s.", engine, org.pk)
            merge(total, {"failed": 1})
            continue
        merge(total, counts)
        if tally_organizations:
            merge(total, {"organizations": 1})
    return total


def merge(total: dict, counts: dict) -> dict:
    for key, value in counts.items():
        total[key] = total.get(key, 0) + value
    return total


ENGINES = [e.value for e in Engine]


def run_now(engine, organization=None, *, trigger=RunTrigger.COMMAND) -> dict:
    """One engine's `run_now` by its name (the run_engine command, Run now in the admin)."""
    return import_module(f"{__name__}.{Engine(engine).value}").run_now(organization, trigger=trigger)
