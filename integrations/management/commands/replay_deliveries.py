"""`replay_deliveries`: queue failed or dead webhook deliveries again (docs/operations/runbook.md)."""

import re
from datetime import UTC, datetime, time, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from integrations.choices import DeliveryStatus
from integrations.models import WebhookDelivery
from integrations.webhooks import replay

from ._common import get_integration, get_organization

BATCH = 500  # deliveries queued per UPDATE
REPLAYABLE = (DeliveryStatus.FAILED, DeliveryStatus.DEAD)
RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class Command(BaseCommand):
    help = (
        "Queue failed or dead webhook deliveries again: same webhook-id and body, a fresh retry schedule. "
        "Deliveries of a switched-off subscription or a disabled integration wait until it is on again."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--integration", metavar="ID", type=int, help="Only this integration's deliveries."
        )
        parser.add_argument("--org", metavar="SLUG", help="Only this organization's deliveries.")
        parser.add_argument(
            "--status",
            default="dead",
            help="Which deliveries: dead (default), failed (still retrying: sent again now), or failed,dead.",
        )
        parser.add_argument(
            "--since",
            metavar="TIME",
            help="Only deliveries whose last attempt was at or after TIME: an ISO 8601 date-time "
            "or date (UTC unless it says otherwise) or a duration back from now, e.g. 30m, 2h, 3d, 1w.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be queued; change nothing."
        )

    def handle(self, *args, **options):
        statuses = parse_statuses(options["status"])
        deliveries = WebhookDelivery.objects.all()
        if options["org"] is not None:
            organization = get_organization(options["org"])
            deliveries = deliveries.filter(organization=organization)
        if options["integration"] is not None:
            integration = get_integration(options["integration"])
            if options["org"] is not None and integration.organization_id != organization.pk:
                raise CommandError(
                    f"Integration {integration.pk} belongs to {integration.organization.slug!r}, "
                    f"not {options['org']!r}."
                )
            deliveries = deliveries.filter(integration=integration)
        if options["since"] is not None:
            since = parse_since(options["since"])
            # updated_at is written with every attempt, so it is never before last_attempt_at: the redundant
            # condition lets the (status, updated_at) index find the rows.
            deliveries = deliveries.filter(last_attempt_at__gte=since, updated_at__gte=since)

        total = 0
        for status in statuses:
            matching = deliveries.filter(status=status)
            if options["dry_run"]:
                count = matching.count()
                self.stdout.write(f"{status}: {count} would be queued again")
            else:
                count = self.replay(matching, status)
                self.stdout.write(f"{status}: {count} queued again")
            total += count
        noun = "delivery" if total == 1 else "deliveries"
        if options["dry_run"]:
            self.stdout.write(f"Dry run: {total} {noun} would be queued again; nothing changed.")
        else:
            self.stdout.write(f"Queued {total} {noun} again.")

    def replay(self, matching, status) -> int:
        """Queue `matching` in batches of BATCH (walking the ids), with progress on stderr for long runs."""
        expected = matching.count()
        queued, after = 0, 0
        while True:
            ids = list(matching.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:BATCH])
            if not ids:
                break
            after = ids[-1]
            now = timezone.now()
            # Checked again at the update: a row that moved meanwhile, or that a worker is sending right now
            # (leased), is left to the worker.
            batch = WebhookDelivery.objects.filter(pk__in=ids, status=status).filter(
                Q(locked_until__isnull=True) | Q(locked_until__lt=now)
            )
            queued += replay.replay(batch, actor="support:replay_deliveries")
            if expected > BATCH:
                self.stderr.write(f"{status}: {queued} of {expected} queued…")
        return queued


def parse_statuses(value: str) -> list[DeliveryStatus]:
    # Checked here, not by argparse `choices`: call_command does not apply choices to keyword options.
    names = [name.strip().lower() for name in str(value).split(",") if name.strip()]
    if not names or any(name not in REPLAYABLE for name in names):
        raise CommandError(f"--status must be failed, dead or failed,dead, not {value!r}.")
    return [DeliveryStatus(name) for name in dict.fromkeys(names)]


def parse_since(value: str):
    """An aware datetime from an ISO 8601 value (naive means UTC) or a duration back from now (2h, 3d)."""
    text = str(value).strip()
    match = RELATIVE.match(text.lower())
    if match:
        amount, unit = int(match.group(1)), UNITS[match.group(2)]
        try:
            return timezone.now() - timedelta(**{unit: amount})
        except OverflowError:
            raise CommandError(f"--since {value!r} is too far back.") from None
    try:
        moment = parse_datetime(text)
        if moment is None and (day := parse_date(text)) is not None:
            moment = datetime.combine(day, time.min)
    except ValueError:  # well formed but impossible, e.g. 2025-02-30
        moment = None
    if moment is None:
        raise CommandError(
            f"--since must be an ISO 8601 date-time (2025-01-31T08:00) or a duration such as 30m, 2h, 3d or "
            f"1w, not {value!r}."
        )
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=UTC)
    if moment > timezone.now():
        raise CommandError(f"--since {value!r} is in the future.")
    return moment
