"""`issue_key`: another integration, org or global key (docs/connectors/01-concepts.md, "Keys and grants";
docs/operations/runbook.md)."""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from integrations.choices import IntegrationStatus
from integrations.management.commands._common import ACTOR, describe, get_organization
from integrations.models import Integration
from tokens import issuing
from tokens.choices import KeyKind

from ._common import (
    EXPIRES_HELP,
    GRANTS_HELP,
    NAME_MAX,
    describe_key,
    expires_at,
    key_name,
    parse_grants,
    write_plaintext,
)


class Command(BaseCommand):
    help = (
        "Issue a key: for an integration of --org (--integration), an org key owned by an org admin of --org "
        "(--user; the API records its actions as that user), or a global key that reaches every "
        "organization (--global). A global key belongs to no organization: --org may be given with "
        "--global (it is only checked to exist) but is not needed. Org and global keys need --grants; an "
        "integration key defaults to its connector's recommended grants. The key's secret is printed once, "
        "alone on the last line (`tail -1`)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--org",
            metavar="SLUG",
            help="The organization; required with --integration and --user, optional with --global.",
        )
        owner = parser.add_mutually_exclusive_group(required=True)
        owner.add_argument(
            "--integration", metavar="ID", type=int, help="An integration key for this integration of --org."
        )
        owner.add_argument(
            "--user",
            metavar="EMAIL",
            help="An org key owned by this user (username or e-mail), who must be an org admin of --org.",
        )
        owner.add_argument(
            "--global",
            dest="global_key",
            action="store_true",
            help="A global key: no organization, no owner; reaches every organization.",
        )
        parser.add_argument(
            "--grants",
            metavar="G,G…",
            help=GRANTS_HELP + " Required for --user and --global; for --integration the default is the "
            "connector's recommended grants.",
        )
        parser.add_argument("--expires-in-days", metavar="N", type=int, help=EXPIRES_HELP)
        parser.add_argument("--name", help="Name of the key, shown in the admin (default: from its owner).")

    def handle(self, *args, **options):
        slug = options["org"]
        if not options["global_key"] and not slug:
            raise CommandError("--org is required with --integration and --user.")
        organization = get_organization(slug) if slug else None
        grants = parse_grants(options["grants"])
        expires = expires_at(options["expires_in_days"])
        name = key_name(options["name"]) if options["name"] is not None else None
        notes = []

        if options["integration"] is not None:
            integration = _integration(organization, options["integration"])
            kwargs = {"kind": KeyKind.INTEGRATION, "integration": integration}
            name = name or f"{integration.name[: NAME_MAX - 4]} key"
            if integration.status == IntegrationStatus.DISABLED:
                notes.append("Note: the integration is disabled; the key is refused until it is enabled.")
        else:
            if grants is None:
                raise CommandError("--grants is required for org and global keys, e.g. --grants orders:read.")
            if options["global_key"]:
                kwargs = {"kind": KeyKind.GLOBAL}
                name = name or "Global key"
                if organization is not None:
                    notes.append(
                        f"Note: a global key belongs to no organization, not to {organization.slug}."
                    )
            else:
                user = _user(options["user"])
                kwargs = {"kind": KeyKind.ORG, "organization": organization, "user": user}
                name = name or f"Org key of {user.get_username()}"[:NAME_MAX]

        try:
            issued = issuing.issue_key(name=name, grants=grants, expires_at=expires, actor=ACTOR, **kwargs)
        except ValidationError as exc:
            raise CommandError(describe(exc)) from exc

        key, scope = issued.key, issued.key.scope
        owner = (
            "every organization (global)"
            if scope.is_global
            else f"integration {scope.integration.pk} {scope.integration.name!r} of {scope.organization.slug}"
            if scope.integration is not None
            else f"{key.user.get_username()} in {scope.organization.slug}"
        )
        self.stdout.write(f"Issued a key for {owner}.")
        for line in [*describe_key(key), *notes]:
            self.stdout.write(line)
        write_plaintext(self.stdout, issued.plaintext)


def _integration(organization, pk: int) -> Integration:
    # The same answer whether the id does not exist or belongs to another organization.
    integration = (
        Integration.objects.select_related("connector", "organization")
        .filter(pk=pk, organization=organization)
        .first()
    )
    if integration is None:
        raise CommandError(f"No integration {pk} in {organization.slug}.")
    return integration


def _user(identifier: str):
    identifier = identifier.strip()
    if not identifier:
        raise CommandError("--user must not be blank.")
    users = get_user_model().objects
    # The exact username first; otherwise a case-insensitive username or e-mail must name a single user
    # (e-mail addresses are not unique in Django's user model).
    exact = users.filter(username=identifier).first()
    matches = (
        [exact]
        if exact
        else list(users.filter(username__iexact=identifier)[:2])
        or list(users.filter(email__iexact=identifier)[:2])
    )
    if not matches:
        raise CommandError(f"No user with username or e-mail {identifier!r}.")
    if len(matches) > 1:
        raise CommandError(f"More than one user matches {identifier!r}; give the exact username.")
    user = matches[0]
    if not user.is_active:
        raise CommandError(f"{user.get_username()} is inactive; an org key of theirs would be refused.")
    return user
