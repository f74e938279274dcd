"""`export_integration`: an integration's configuration as JSON, without secrets, for `import_integration`."""

import json

from django.core.management.base import BaseCommand, CommandError

from console import transfer
from integrations import audit
from integrations.choices import EventKind
from integrations.management.commands._common import ACTOR, get_integration


class Command(BaseCommand):
    help = (
        "Print an integration's configuration (connector, settings, mappings, workflows) as JSON, or "
        "write it to --output. Secret settings (writeOnly in the connector's schema) are never exported."
    )

    def add_arguments(self, parser):
        parser.add_argument("id", type=int, help="Integration id (see integration_status).")
        parser.add_argument("--output", metavar="FILE", help="Write to this file instead of standard output.")

    def handle(self, *args, **options):
        integration = get_integration(options["id"])
        text = json.dumps(transfer.export_configuration(integration), indent=2, ensure_ascii=False) + "\n"
        path = options["output"]
        to_file = path not in (None, "", "-")
        if to_file:
            try:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
            except OSError as exc:
                raise CommandError(f"Cannot write {path}: {exc.strerror}.") from exc
        else:
            self.stdout.write(text, ending="")
        audit.record_event(
            integration, EventKind.EXPORTED, "Configuration exported (without secrets).", actor=ACTOR
        )
        if to_file:
            self.stdout.write(f"Wrote the configuration of {integration.name!r} to {path}.")
