"""`revoke_keys`: revoke an integration's, an organization's or one key (docs/operations/runbook.md)."""

import re

from django.core.management.base import BaseCommand, CommandError

from integrations.management.commands._common import ACTOR, get_integration, get_organization
from tokens import issuing
from tokens.models import ApiKey

# A bare prefix, `sy_<prefix>`, the `sy_<prefix>_…` the admin shows, or a whole (leaked) key.
PREFIX_PATTERN = re.compile(r"^(?:sy_)?([a-z0-9]{8})(?:_.*)?$", re.DOTALL)


class Command(BaseCommand):
    help = (
        "Revoke keys at once: every key of an integration (--integration), every key of an organization, "
        "its integrations' and its members' org keys but not global keys (--org), or the one key with a "
        "prefix (--prefix, as shown in the admin: sy_<prefix>_…). Already revoked keys are left as they "
        "are; a prefix that matches no key at all is an error."
    )

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--integration", metavar="ID", type=int, help="Every key of this integration.")
        which.add_argument(
            "--org", metavar="SLUG", help="Every integration and org key of this organization."
        )
        which.add_argument("--prefix", metavar="PREFIX", help="The key with this public prefix.")
        parser.add_argument(
            "--reason", metavar="TEXT", default="", help="Why: stored on each key and in the event log."
        )

    def handle(self, *args, **options):
        if options["integration"] is not None:
            keys = ApiKey.objects.filter(integration=get_integration(options["integration"]))
        elif options["org"] is not None:
            keys = ApiKey.objects.filter(organization=get_organization(options["org"]))
        else:
            prefix = _prefix(options["prefix"])
            keys = ApiKey.objects.filter(prefix=prefix)
            # Unlike an empty integration, a prefix that finds nothing is most likely a typo: say so loudly.
            if not keys.exists():
                raise CommandError(f"No key with prefix {prefix!r}.")
        count = issuing.revoke_many(keys, actor=ACTOR, reason=" ".join(options["reason"].split()))
        self.stdout.write(f"Revoked {count} key{'' if count == 1 else 's'}.")


def _prefix(value: str) -> str:
    match = PREFIX_PATTERN.match(value.strip().lower())
    if not match:
        # The value is not echoed: it may be a mangled key.
        raise CommandError(
            "--prefix is not a key prefix: 8 lowercase letters or digits, as in sy_<prefix>_…."
        )
    return match.group(1)
