"""orders 0002: SKU and shipping-method mappings left in an integration's JSON become mapping rows."""

from importlib import import_module

from django.apps import apps

from integrations.models import Integration
from orders.models import ShippingMethod, ShippingMethodMapping

migration = import_module("orders.migrations.0002_json_mappings_to_rows")


def test_json_mappings_move_to_rows_and_leave_the_json(org, integration, products):
    # given JSON mappings written before they were refused (straight to the row: the services refuse them now)
    method = ShippingMethod.objects.create(organization=org, code="standard", name="Standard")
    express = ShippingMethod.objects.create(organization=org, code="express", name="Express")
    ShippingMethodMapping.objects.create(integration=integration, external_code="std", method=method)
    Integration.objects.filter(pk=integration.pk).update(
        mappings={
            "skus": {"SHOP-MUG": "MUG", "SHOP-GHOST": "GHOST"},
            "shipping_methods": {"std": "express", "exp": "express", "slow": "standard"},
            "locations": {"WH-1": "East"},
        }
    )

    # when the migration runs
    migration.move_json_mappings(apps, None)

    # then the pairs that resolve are rows; an existing row wins; the JSON keeps the other kinds
    integration.refresh_from_db()
    assert integration.mappings == {"locations": {"WH-1": "East"}}
    assert list(integration.sku_mappings.values_list("external_sku", "product")) == [
        ("SHOP-MUG", products["MUG"].pk)
    ]
    assert sorted(integration.shipping_method_mappings.values_list("external_code", "method")) == [
        ("exp", express.pk),
        ("std", method.pk),
    ]
    # and what could not move is named in the trail
    event = integration.events.get(kind="config_changed")
    assert event.data == {
        "moved": ["skus: SHOP-MUG → MUG", "shipping_methods: exp → express"],
        "dropped": [
            "skus: SHOP-GHOST → GHOST",
            "shipping_methods: std → express",
            "shipping_methods: slow → standard",
        ],
    }


def test_integrations_without_json_row_kinds_are_left_alone(integration, other_integration):
    Integration.objects.filter(pk=integration.pk).update(mappings={"locations": {"A": "B"}})

    migration.move_json_mappings(apps, None)

    integration.refresh_from_db()
    assert integration.mappings == {"locations": {"A": "B"}}
    assert not integration.events.filter(kind="config_changed").exists()
