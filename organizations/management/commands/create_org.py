"""`create_org`: an organization, optionally with its first org admin (docs/operations/runbook.md)."""

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from organizations.choices import Role
from organizations.models import Membership, Organization


class Command(BaseCommand):
    help = (
        "Create an organization, optionally with its first org admin: a staff (not superuser) user whose "
        "username is the e-mail. --admin-email and --admin-password go together; a new user's password must "
        "pass the password validators. If a user with that e-mail exists already, they are made admin of the "
        "new organization (and staff, so they can sign in to the admin) but their password is NOT changed: "
        "the one given is not used."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "slug", help="Short identifier used in URLs and commands (letters, digits, - and _)."
        )
        parser.add_argument("--name", required=True, help="Display name of the organization.")
        parser.add_argument(
            "--notification-email", default="", help="Where exceptions go when an integration has no address."
        )
        parser.add_argument("--admin-email", default="", help="E-mail (and username) of the first org admin.")
        parser.add_argument("--admin-password", default="", help="Password for the first org admin, if new.")

    def handle(self, *args, **options):
        slug, email, password = options["slug"], options["admin_email"].strip(), options["admin_password"]
        if bool(email) != bool(password):
            raise CommandError("--admin-email and --admin-password must be given together.")
        if Organization.objects.filter(slug=slug).exists():
            raise CommandError(f"An organization with slug {slug!r} already exists.")
        org = Organization(slug=slug, name=options["name"], notification_email=options["notification_email"])
        try:
            org.full_clean()
        except ValidationError as exc:
            raise CommandError(_describe(exc)) from exc

        User = get_user_model()
        user, created_user, made_staff = None, False, False
        if email:
            # Lower-cased whole: the username is the address, and sign-in matches usernames exactly.
            email = email.lower()
            try:
                validate_email(email)
            except ValidationError as exc:
                raise CommandError(f"--admin-email: {' '.join(exc.messages)}") from exc
            user = User.objects.filter(username__iexact=email).first()
            if user is None:
                try:
                    validate_password(password, user=User(username=email, email=email))
                except ValidationError as exc:
                    raise CommandError(
                        "The admin password was refused:\n  " + "\n  ".join(exc.messages)
                    ) from exc

        try:
            with transaction.atomic():
                org.save()
                if email:
                    created_user = user is None
                    if created_user:
                        user = User.objects.create_user(email, email, password, is_staff=True)
                    elif not user.is_staff:
                        user.is_staff = made_staff = True
                        user.save(update_fields=["is_staff"])
                    Membership.objects.create(user=user, organization=org, role=Role.ADMIN)
        except IntegrityError as exc:
            # Lost a race with another create_org for the same slug.
            raise CommandError(f"An organization with slug {slug!r} already exists.") from exc

        self.stdout.write(f"Created organization {org.slug} ({org.name}).")
        if created_user:
            self.stdout.write(f"Created org admin {user.get_username()}.")
        elif user is not None:
            self.stdout.write(
                f"Made the existing user {user.get_username()} org admin; their password was not changed"
                + (" (they are now staff)." if made_staff else ".")
            )


def _describe(exc: ValidationError) -> str:
    return "\n".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
