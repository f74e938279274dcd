"""`seed_demo`: demo organizations, users and integrations; idempotent, so `make run` runs it every time."""

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from guardian.shortcuts import assign_perm

from integrations import services
from integrations.catalog import CHANNEL_GRANTS
from integrations.choices import IntegrationStatus as Status
from integrations.models import Connector, Integration
from organizations.choices import Role
from organizations.models import Membership, Organization

from ._common import ACTOR

ADMIN_EMAIL = "admin@demo.example"
MEMBER_EMAIL = "member@demo.example"
NORTHWIND_ADMIN_EMAIL = "admin@northwind.example"
MEMBER_SEES = "Web shop"

WEST_ERROR = (
    "10 consecutive webhook deliveries failed; last: HTTP 503 Service Unavailable from "
    "https://wms-west.demo.example/switchyard/webhooks"
)

STOREFRONT = {
    "key": "demo-storefront",
    "name": "Demo storefront (manifest)",
    "type": "channel",
    "description": "A storefront publishing a manifest: the hub calls it for orders, dispatch and stock.",
    "recommended_grants": CHANNEL_GRANTS,
    "settings_schema": {
        "type": "object",
        "additionalProperties": False,
        # The token is required too: without it the hub cannot sign in to the storefront's endpoints.
        "required": ["base_url", "auth_token"],
        "properties": {
            "base_url": {"type": "string", "format": "uri", "title": "Base URL"},
            "auth_token": {"type": "string", "writeOnly": True, "title": "Auth token"},
        },
    },
    "mapping_kinds": ["shipping_methods", "skus"],
    "manifest": {
        "health": "/health",
        "orders": "/orders",
        "dispatch": "/dispatch",
        "inventory": "/inventory",
    },
}

# (organization slug, name, connector key, settings, status to leave it in)
INTEGRATIONS = [
    (
        "demo",
        "Web shop",
        "custom-channel",
        {"store_url": "https://shop.demo.example", "default_currency": "USD"},
        Status.CONNECTED,
    ),
    ("demo", "Marketplace", "custom-marketplace", {}, Status.CONNECTING),
    ("demo", "East warehouse", "custom-3pl", {"warehouse_code": "EAST"}, Status.CONNECTED),
    ("demo", "Back office ERP", "custom-erp", {}, Status.DISABLED),
    ("demo", "West warehouse", "custom-wms", {"warehouse_code": "WEST"}, Status.ERROR),
    ("demo", "Demo storefront", STOREFRONT["key"], {}, Status.NOT_CONFIGURED),  # required settings missing
    (
        "northwind",
        "Northwind shop",
        "custom-channel",
        {"store_url": "https://shop.northwind.example", "default_currency": "EUR"},
        Status.CONNECTED,
    ),
]


class Command(BaseCommand):
    help = (
        "Create the demo data: organizations 'demo' (Demo Outfitters) and 'northwind' (Northwind Goods), "
        "their integrations, an org admin, a member and a Northwind admin. Safe to run again: nothing is "
        "duplicated and existing integrations are left as they are, but the demo users' password is reset "
        "each run, to --password or a new random one. The last line printed is the admin login."
    )

    def add_arguments(self, parser):
        parser.add_argument("--password", help="Password for the demo users (default: a new random one).")

    def handle(self, *args, **options):
        User = get_user_model()
        password = options["password"]
        if password:
            try:
                validate_password(password, user=User(username=ADMIN_EMAIL, email=ADMIN_EMAIL))
            except ValidationError as exc:
                raise CommandError("The password was refused:\n  " + "\n  ".join(exc.messages)) from exc
        else:
            password = secrets.token_urlsafe(16)

        with transaction.atomic():
            orgs = {
                "demo": self._organization("demo", "Demo Outfitters", "ops@demo.example"),
                "northwind": self._organization("northwind", "Northwind Goods", "ops@northwind.example"),
            }
            self._user(ADMIN_EMAIL, password, orgs["demo"], Role.ADMIN)
            member = self._user(MEMBER_EMAIL, password, orgs["demo"], Role.MEMBER)
            self._user(NORTHWIND_ADMIN_EMAIL, password, orgs["northwind"], Role.ADMIN)
            Connector.objects.get_or_create(
                organization=orgs["demo"],
                key=STOREFRONT["key"],
                defaults={k: v for k, v in STOREFRONT.items() if k != "key"},
            )
            created = 0
            for slug, name, key, settings, status in INTEGRATIONS:
                integration, new = self._integration(orgs[slug], name, key, settings, status)
                created += new
                if slug == "demo" and name == MEMBER_SEES:
                    assign_perm("integrations.view_integration", member, integration)

        self.stdout.write(
            f"Demo organizations: demo (Demo Outfitters), northwind (Northwind Goods); "
            f"{created} integration(s) created, {len(INTEGRATIONS) - created} already there."
        )
        self.stdout.write(
            f"Same password for {MEMBER_EMAIL} (member, sees {MEMBER_SEES!r} only) and "
            f"{NORTHWIND_ADMIN_EMAIL} (admin of Northwind Goods)."
        )
        self.stdout.write(f"Login: {ADMIN_EMAIL} / {password}")

    def _organization(self, slug, name, email):
        org, _ = Organization.objects.get_or_create(
            slug=slug, defaults={"name": name, "notification_email": email}
        )
        return org

    def _user(self, email, password, org, role):
        """The demo user as the demo needs it (staff, never superuser), with this run's password."""
        user, _ = get_user_model().objects.get_or_create(username=email, defaults={"email": email})
        user.email, user.is_staff, user.is_superuser, user.is_active = email, True, False, True
        user.set_password(password)
        user.save()
        Membership.objects.update_or_create(user=user, organization=org, defaults={"role": role})
        return user

    def _integration(self, org, name, key, settings, status) -> tuple[Integration, bool]:
        existing = Integration.objects.filter(organization=org, name=name).first()
        if existing is not None:
            return existing, False  # left as it is: the demo user may have changed it on purpose
        connector = (
            Connector.objects.filter(organization=org, key=key).first()
            or Connector.objects.filter(organization__isnull=True, key=key).first()
        )
        if connector is None:
            raise CommandError(f"Catalog connector {key!r} is missing; run `manage.py migrate` first.")
        integration = services.create_integration(org, connector, name, settings=settings, actor=ACTOR)
        # Through the lifecycle services, as a real integration would get there.
        if status == Status.CONNECTED:
            services.handshake(integration, actor=ACTOR)
        elif status == Status.DISABLED:
            services.disable(integration, actor=ACTOR, reason="Demo: not in use yet.")
        elif status == Status.ERROR:
            services.report_error(integration, WEST_ERROR, actor=ACTOR)
        return integration, True
