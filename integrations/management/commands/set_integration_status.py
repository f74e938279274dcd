"""`set_integration_status`: one lifecycle move, by the rules of `integrations.lifecycle.transition`."""

from django.core.management.base import BaseCommand, CommandError

from integrations import lifecycle
from integrations.choices import IntegrationStatus

from ._common import ACTOR, check_status, describe, get_integration


class Command(BaseCommand):
    help = (
        "Move an integration to another status by the same rules as the admin (docs/architecture.md, "
        "Integration lifecycle); the reason is stored and recorded in its event log."
    )

    def add_arguments(self, parser):
        parser.add_argument("id", type=int, help="Integration id (see integration_status).")
        parser.add_argument("status", help=f"The status to move to: {', '.join(IntegrationStatus.values)}.")
        parser.add_argument(
            "--reason", required=True, help="Why: stored with the status and in the event log."
        )

    def handle(self, *args, **options):
        reason = options["reason"].strip()
        if not reason:
            raise CommandError("--reason must not be blank.")
        status = check_status(options["status"])
        integration = get_integration(options["id"])
        before = integration.status
        try:
            lifecycle.transition(integration, status, reason=reason, actor=ACTOR)
        except lifecycle.TransitionRefused as exc:
            raise CommandError(describe(exc)) from exc
        self.stdout.write(
            f"Integration {integration.pk} {integration.name!r}: {before} → {integration.status}"
        )
