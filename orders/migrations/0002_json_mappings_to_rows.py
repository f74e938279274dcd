"""
SKU and shipping-method mappings typed into an integration's JSON were never read by the order flow: move
them into SkuMapping / ShippingMethodMapping rows (the one store since), and drop them from the JSON, which
now refuses them. An existing row wins over a JSON pair for the same code or hub object; pairs naming a hub
SKU or method the organization lacks are dropped. Both are named in a "configuration changed" event.
Lives in orders, the app that sits above integrations and inventory.
"""

from django.db import migrations

# (JSON kind, row model, its external field, its FK to the hub object, hub model, the hub code field)
KINDS = (
    ("skus", "inventory.SkuMapping", "external_sku", "product", "inventory.Product", "sku"),
    (
        "shipping_methods",
        "orders.ShippingMethodMapping",
        "external_code",
        "method",
        "orders.ShippingMethod",
        "code",
    ),
)


def move_json_mappings(apps, schema_editor):
    Integration = apps.get_model("integrations", "Integration")
    IntegrationEvent = apps.get_model("integrations", "IntegrationEvent")
    for integration in Integration.objects.filter(mappings__has_any_keys=[kind for kind, *_ in KINDS]):
        mappings = dict(integration.mappings)
        moved, dropped = [], []
        for kind, row_label, external_field, fk, hub_label, code_field in KINDS:
            pairs = mappings.pop(kind, None)
            if not isinstance(pairs, dict) or not pairs:
                continue
            row_model, hub_model = apps.get_model(row_label), apps.get_model(hub_label)
            existing = row_model.objects.filter(integration=integration)
            taken_external = set(existing.values_list(external_field, flat=True))
            taken_hub = set(existing.values_list(f"{fk}_id", flat=True))
            hub_ids = dict(
                hub_model.objects.filter(
                    organization_id=integration.organization_id,
                    **{f"{code_field}__in": [v for v in pairs.values() if isinstance(v, str)]},
                ).values_list(code_field, "pk")
            )
            for external, hub in pairs.items():
                hub_id = hub_ids.get(hub) if isinstance(hub, str) else None
                label = f"{kind}: {external} → {hub}"
                if not external or hub_id is None or external in taken_external or hub_id in taken_hub:
                    dropped.append(label)
                    continue
                row_model.objects.create(
                    integration=integration, **{external_field: external, f"{fk}_id": hub_id}
                )
                taken_external.add(external)
                taken_hub.add(hub_id)
                moved.append(label)
        integration.mappings = mappings
        integration.save(update_fields=["mappings"])
        message = "SKU and shipping method mappings moved from the JSON to mapping rows."
        if moved:
            message += f" Moved: {', '.join(moved)}."
        if dropped:
            message += f" Dropped (unknown hub code, or already mapped by a row): {', '.join(dropped)}."
        IntegrationEvent.objects.create(
            organization_id=integration.organization_id,
            integration=integration,
            integration_name=integration.name,
            kind="config_changed",
            actor="system",
            message=message,
            data={"moved": moved, "dropped": dropped},
        )


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0006_mappings_json_kinds_only"),
        ("inventory", "0001_initial"),
        ("orders", "0001_initial"),
    ]

    operations = [migrations.RunPython(move_json_mappings, migrations.RunPython.noop)]
