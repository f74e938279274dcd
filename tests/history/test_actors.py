"""Who made a change when it was not an admin page: an API key, a service given an actor, a command."""

import io
import json
import sys

import pytest
from django.core.management import call_command

from integrations.models import Integration, WebhookSubscription
from inventory.models import SkuMapping
from tokens import issuing as key_services
from tokens.choices import KeyKind

from .helpers import rows_of

pytestmark = pytest.mark.django_db

HOOK_GRANTS = ["orders:read", "webhooks:read", "webhooks:write"]


@pytest.fixture(autouse=True)
def _local_receivers(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True


def test_a_subscription_made_with_an_integration_key_names_the_key(integration, api_client, org, org_admin):
    shop = key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="shop", integration=integration, grants=HOOK_GRANTS
    )
    response = api_client(shop).post(
        "/api/v1/webhooks", {"url": "http://127.0.0.1:9/in", "events": ["order.created"]}, format="json"
    )
    assert response.status_code == 201, response.content
    subscription = WebhookSubscription.objects.get()

    [created] = rows_of(subscription)
    assert created.history_type == "+" and created.history_user is None
    assert created.history_change_reason == f"API key sy_{shop.key.prefix}_…"

    # An org key acts as its owner: the removal is theirs, and names the key too.
    owner_key = key_services.issue_key(
        kind=KeyKind.ORG, name="ops", organization=org, user=org_admin, grants=HOOK_GRANTS
    )
    assert api_client(owner_key).delete(f"/api/v1/webhooks/{subscription.pk}").status_code == 204
    removed = WebhookSubscription.history.filter(id=subscription.pk).latest("history_date")
    assert (removed.history_type, removed.history_user) == ("-", org_admin)
    assert removed.history_change_reason == f"API key sy_{owner_key.key.prefix}_…"


def test_key_services_record_the_actor_they_are_given(integration, org_admin):
    issued = key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="shop", integration=integration, created_by=org_admin
    )
    successor = key_services.rotate(issued.key, actor=org_admin)
    key_services.revoke(successor.key, actor="key:abcd1234", reason="leaked")

    [rotated, created] = rows_of(issued.key)
    assert created.history_user == org_admin and rotated.history_user == org_admin
    assert rotated.replaced_by_id == successor.key.pk and rotated.expires_at is not None
    revoked = rows_of(successor.key)[0]
    assert revoked.history_user is None and revoked.history_change_reason == "API key sy_abcd1234_…"
    assert revoked.revoke_reason == "leaked"
    # Revoking again changes nothing, and writes nothing.
    assert not key_services.revoke(successor.key, actor=org_admin)
    assert len(rows_of(successor.key)) == 2


def test_a_management_command_names_itself(monkeypatch, org, integration, products, tmp_path):
    SkuMapping.objects.create(integration=integration, external_sku="SHOP-MUG", product=products["MUG"])
    exported = io.StringIO()
    call_command("export_integration", str(integration.pk), stdout=exported)
    path = tmp_path / "shop.json"
    path.write_text(exported.getvalue())
    monkeypatch.setattr(sys, "argv", ["manage.py", "import_integration", str(path), "--org", org.slug])

    call_command("import_integration", str(path), org=org.slug, name="Copy of shop", stdout=io.StringIO())

    copy = Integration.objects.get(name="Copy of shop")
    assert [(r.history_type, r.history_change_reason) for r in rows_of(copy)][-1] == (
        "+",
        "manage.py import_integration",
    )
    # The mapping rows it recreates in bulk have their history rows too.
    [mapping] = copy.sku_mappings.all()
    [row] = rows_of(mapping)
    assert (row.history_type, row.history_change_reason, row.external_sku) == (
        "+",
        "manage.py import_integration",
        "SHOP-MUG",
    )
    assert json.loads(exported.getvalue())["name"] == integration.name


def test_seed_demo_still_works_and_its_changes_name_it(monkeypatch, db):
    monkeypatch.setattr(sys, "argv", ["manage.py", "seed_demo"])

    call_command("seed_demo", stdout=io.StringIO())

    reasons = set(Integration.history.values_list("history_change_reason", flat=True))
    assert reasons == {"manage.py seed_demo"}
    assert SkuMapping.history.filter(history_change_reason="manage.py seed_demo").exists()
