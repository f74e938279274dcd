"""`import_integration`: a new integration from an `export_integration` file."""

import json
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from console import transfer
from integrations import connector_settings
from integrations.choices import EventKind
from integrations.management.commands._common import ACTOR, describe, get_organization


class Command(BaseCommand):
    help = (
        "Create an integration in --org from an export_integration file ('-' reads standard input). "
        "A private connector is recreated in the organization if it has none with that key. Secrets are "
        "not exported, so an integration whose connector requires one stays not_configured until entered."
    )
    stealth_options = ("stdin",)  # lets tests feed "-" without touching sys.stdin

    def add_arguments(self, parser):
        parser.add_argument("file", help="The exported JSON file, or - for standard input.")
        parser.add_argument("--org", metavar="SLUG", required=True, help="The organization to import into.")
        parser.add_argument("--name", help="Name of the new integration (default: the exported name).")

    def handle(self, *args, **options):
        organization = get_organization(options["org"])
        data = self._load(options["file"], options.get("stdin") or sys.stdin)
        try:
            integration = transfer.import_configuration(data, organization, name=options["name"], actor=ACTOR)
        except ValidationError as exc:
            raise CommandError(f"Import refused: {describe(exc)}") from exc
        self.stdout.write(
            f"Imported integration {integration.pk} {integration.name!r} into {organization.slug}: "
            f"{integration.status}."
        )
        imported = integration.events.filter(kind=EventKind.IMPORTED).first()
        if imported is not None and imported.data.get("skipped"):
            self.stdout.write(transfer.describe_skipped(imported.data["skipped"], organization))
        missing = connector_settings.missing_required(
            integration.connector, connector_settings.full_settings(integration)
        )
        if missing:
            self.stdout.write(
                f"Still to enter before it can connect: {', '.join(missing)} (secrets are not exported)."
            )

    def _load(self, path, stdin):
        label = "standard input" if path == "-" else path
        try:
            if path == "-":
                text = stdin.read()
            else:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read {label}: {getattr(exc, 'strerror', None) or exc}.") from exc
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(
                f"{label} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
            ) from exc
