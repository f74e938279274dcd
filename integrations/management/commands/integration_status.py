"""`integration_status`: integrations with their status, last error and last activity, as a table or JSON."""

import json

from django.core.management.base import BaseCommand
from django.utils import timezone

from integrations.choices import IntegrationStatus, Workflow
from integrations.models import Integration

from ._common import check_status, get_organization

ERROR_WIDTH = 40
COLUMNS = ("ID", "ORG", "NAME", "CONNECTOR", "STATUS", "LAST ERROR", "LAST ACTIVITY")


class Command(BaseCommand):
    help = (
        "List integrations: id, organization, name, connector, status, last error and last activity. "
        "--json prints every field (ISO 8601 times, no settings: they may hold secrets)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", metavar="SLUG", help="Only this organization's integrations.")
        parser.add_argument(
            "--status", help=f"Only integrations in this status: {', '.join(IntegrationStatus.values)}."
        )
        parser.add_argument("--json", action="store_true", help="JSON instead of a table.")

    def handle(self, *args, **options):
        integrations = Integration.objects.select_related("organization", "connector").order_by(
            "organization__slug", "name", "pk"
        )
        if options["org"]:
            integrations = integrations.filter(organization=get_organization(options["org"]))
        if options["status"]:
            integrations = integrations.filter(status=check_status(options["status"]))
        integrations = list(integrations)

        if options["json"]:
            self.stdout.write(json.dumps([_as_dict(i) for i in integrations], indent=2, ensure_ascii=False))
        elif not integrations:
            self.stdout.write("No integrations.")
        else:
            self.stdout.write(_table([_as_row(i) for i in integrations]))


def _iso(value):
    return value.isoformat() if value else None


def _as_dict(integration: Integration) -> dict:
    return {
        "id": integration.pk,
        "organization": integration.organization.slug,
        "name": integration.name,
        "connector": integration.connector.key,
        "connector_type": integration.connector.type,
        "status": integration.status,
        "status_reason": integration.status_reason,
        "status_changed_at": _iso(integration.status_changed_at),
        "last_error": integration.last_error,
        "last_error_at": _iso(integration.last_error_at),
        "last_activity_at": _iso(integration.last_activity_at),
        "notification_email": integration.notification_email,
        "workflows": {flow.value: integration.workflow_enabled(flow) for flow in Workflow},
        "created_at": _iso(integration.created_at),
        "updated_at": _iso(integration.updated_at),
    }


def _as_row(integration: Integration) -> tuple[str, ...]:
    error = " ".join(integration.last_error.split())  # one line, whatever the connector sent
    if len(error) > ERROR_WIDTH:
        error = error[: ERROR_WIDTH - 1] + "…"
    activity = integration.last_activity_at
    return (
        str(integration.pk),
        integration.organization.slug,
        integration.name,
        integration.connector.key,
        integration.status,
        error or "-",
        timezone.localtime(activity).strftime("%Y-%m-%d %H:%M") if activity else "-",
    )


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [COLUMNS, *rows]
    )
