"""`register_integration`: an integration of a catalog connector and its first key
(docs/operations/runbook.md)."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction

from integrations import configuration
from integrations.catalog import BUILTIN_CONNECTORS
from integrations.management.commands._common import ACTOR, describe, get_organization
from integrations.models import Connector, Integration
from tokens import issuing
from tokens.choices import KeyKind

from ._common import (
    EXPIRES_HELP,
    GRANTS_HELP,
    NAME_MAX,
    describe_key,
    expires_at,
    parse_grants,
    write_plaintext,
)

INTEGRATION_NAME_MAX = Integration._meta.get_field("name").max_length

# What --help says --grants defaults to, per built-in connector (an organization's private connector
# carries its own recommended grants: the admin shows them).
RECOMMENDED = "; ".join(
    f"{spec['key']}: {', '.join(spec['recommended_grants'])}" for spec in BUILTIN_CONNECTORS
)


class Command(BaseCommand):
    help = (
        "Register an integration of a catalog connector in an organization and issue its first integration "
        "key. The connector is the organization's private one with that key if it has one, else the public "
        "one. The key's secret is printed once, alone on the last line (`tail -1`). Recommended grants of "
        f"the built-in connectors, the default when --grants is not given: {RECOMMENDED}."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", metavar="SLUG", required=True, help="The organization.")
        parser.add_argument(
            "--connector", metavar="KEY", required=True, help="Catalog connector key, e.g. custom-channel."
        )
        parser.add_argument(
            "--name", required=True, help="Name of the integration, unique in the organization."
        )
        parser.add_argument(
            "--grants", metavar="G,G…", help=GRANTS_HELP + " Default: the connector's recommended grants."
        )
        parser.add_argument("--expires-in-days", metavar="N", type=int, help=EXPIRES_HELP)

    def handle(self, *args, **options):
        # Everything is checked before anything is written.
        organization = get_organization(options["org"])
        connector = _connector(organization, options["connector"])
        name = options["name"].strip()
        if not name:
            raise CommandError("--name must not be blank.")
        if len(name) > INTEGRATION_NAME_MAX:
            raise CommandError(f"--name is longer than {INTEGRATION_NAME_MAX} characters.")
        if Integration.objects.filter(organization=organization, name=name).exists():
            raise CommandError(_duplicate(organization, name))
        grants = parse_grants(options["grants"])  # None: the service takes the connector's recommended
        expires = expires_at(options["expires_in_days"])

        try:
            # One unit: a key that cannot be issued leaves no integration behind.
            with transaction.atomic():
                integration = configuration.create_integration(organization, connector, name, actor=ACTOR)
                issued = issuing.issue_key(
                    kind=KeyKind.INTEGRATION,
                    name=f"{name[: NAME_MAX - 4]} key",
                    integration=integration,
                    grants=grants,
                    expires_at=expires,
                    actor=ACTOR,
                )
        except ValidationError as exc:
            raise CommandError(describe(exc)) from exc
        except IntegrityError as exc:
            # Lost a race with another registration of the same name.
            if Integration.objects.filter(organization=organization, name=name).exists():
                raise CommandError(_duplicate(organization, name)) from exc
            raise

        self.stdout.write(
            f"Registered integration {integration.pk} {integration.name!r} in {organization.slug} "
            f"(connector {connector.key}{'' if connector.is_public else ', private'}): {integration.status}."
        )
        for line in describe_key(issued.key):
            self.stdout.write(line)
        write_plaintext(self.stdout, issued.plaintext)


def _connector(organization, key: str) -> Connector:
    # The organization's private connector of that key wins over a public one (as in seed_demo).
    connector = (
        Connector.objects.filter(organization=organization, key=key).first()
        or Connector.objects.filter(organization__isnull=True, key=key).first()
    )
    if connector is None:
        raise CommandError(f"Unknown connector {key!r} (neither public nor private to {organization.slug}).")
    return connector


def _duplicate(organization, name: str) -> str:
    return f"{organization.slug} already has an integration named {name!r}."
