"""The integrations admin: wizard, settings form, badges, actions, export/import, member access."""

import io
import json

import pytest
from django.urls import reverse

from console import transfer
from integrations import configuration, connector_settings, lifecycle
from integrations.choices import IntegrationStatus as S
from integrations.models import Integration, IntegrationEvent
from inventory.models import Product, SkuMapping
from orders.models import ShippingMethod, ShippingMethodMapping
from tests.fixtures.integrations import GOOD_SETTINGS

CHANNEL_FLOWS = ["flow_orders_in", "flow_fulfillments_out", "flow_inventory_out", "flow_products_out"]
CHANGELIST = reverse("admin:integrations_integration_changelist")
ADD = reverse("admin:integrations_integration_add")


def change_url(integration):
    return reverse("admin:integrations_integration_change", args=[integration.pk])


def wizard_post(org, name="Shop", **settings):
    # What a browser sends for a channel connector: the default flows arrive ticked.
    data = {"organization": org.pk, "name": name, "notification_email": "", "mappings": "{}"}
    data.update(dict.fromkeys(CHANNEL_FLOWS, "on"))
    data.update({f"setting__{k}": v for k, v in settings.items()})
    return data


def mapping_rows(initial=0, **rows):
    """POST data of the change page's mapping inlines: `sku_mappings=[{...}]` and/or
    `shipping_method_mappings=[{...}]`, the first `initial` forms of each being existing rows."""
    data = {}
    for prefix in ("sku_mappings", "shipping_method_mappings"):
        forms = rows.get(prefix, [])
        data[f"{prefix}-TOTAL_FORMS"] = len(forms)
        data[f"{prefix}-INITIAL_FORMS"] = min(initial, len(forms))
        for i, form in enumerate(forms):
            data.update({f"{prefix}-{i}-{field}": value for field, value in form.items()})
    return data


def change_post(org, name, **rows):
    data = wizard_post(org, name=name, **GOOD_SETTINGS)
    data.pop("organization")
    return {**data, **mapping_rows(**rows)}


def test_add_starts_by_choosing_a_connector(admin_client_for, org_admin, strict_connector):
    client = admin_client_for(org_admin)

    page = client.get(ADD)

    assert page.status_code == 200
    assert b"choose a connector" in page.content
    assert b"Custom channel" in page.content and b"Strict shop" in page.content


def test_wizard_form_is_generated_from_the_schema(admin_client_for, org_admin, strict_connector):
    page = admin_client_for(org_admin).get(ADD + f"?connector={strict_connector.pk}")

    html = page.content.decode()
    assert page.status_code == 200
    for field in ("base_url", "api_token", "page_size", "region", "dry_run"):
        assert f'name="setting__{field}"' in html
    assert 'type="password"' in html  # writeOnly → password input
    form = page.context["adminform"].form
    ticked = {name for name in form.fields if name.startswith("flow_") and form[name].value()}
    assert ticked == set(CHANNEL_FLOWS)  # pre-set from the connector type


def test_wizard_creates_integration_and_moves_to_connecting(
    admin_client_for, org_admin, org, strict_connector
):
    client = admin_client_for(org_admin)

    response = client.post(ADD + f"?connector={strict_connector.pk}", wizard_post(org, **GOOD_SETTINGS))

    assert response.status_code == 302, response.content[:2000]
    integration = Integration.objects.get(name="Shop")
    assert integration.organization == org and integration.connector == strict_connector
    assert integration.status == S.CONNECTING
    assert connector_settings.full_settings(integration)["api_token"] == GOOD_SETTINGS["api_token"]
    assert "api_token" not in integration.settings  # the secret is kept apart, encrypted
    assert integration.flow_orders_in and not integration.flow_fulfillments_in  # channel defaults
    kinds = list(integration.events.values_list("kind", flat=True))
    assert "created" in kinds and "status_changed" in kinds


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"base_url": ""}, "base_url"),  # missing required
        ({"page_size": "many"}, "page_size"),  # wrong type
        ({"page_size": 0}, "page_size"),  # below minimum
        ({"base_url": "not a url"}, "base_url"),  # format
        ({"api_token": "short"}, "api_token"),  # minLength on a secret
    ],
)
def test_wizard_refuses_invalid_settings_and_saves_nothing(
    admin_client_for, org_admin, org, strict_connector, override, field
):
    client = admin_client_for(org_admin)
    events_before = IntegrationEvent.objects.count()

    response = client.post(
        ADD + f"?connector={strict_connector.pk}", wizard_post(org, **{**GOOD_SETTINGS, **override})
    )

    assert response.status_code == 200
    assert (
        field in response.context["adminform"].form.errors
        or f"setting__{field}" in response.context["adminform"].form.errors
    )
    assert not Integration.objects.exists()
    assert IntegrationEvent.objects.count() == events_before
    if field == "api_token":
        assert b"short" not in response.content  # a secret is never echoed back


def test_secret_is_masked_on_the_change_page_and_kept_when_blank(
    admin_client_for, org_admin, org, strict_connector, make_integration
):
    integration = make_integration(org, strict_connector, "Strict", settings=GOOD_SETTINGS)
    client = admin_client_for(org_admin)

    page = client.get(change_url(integration))
    assert GOOD_SETTINGS["api_token"].encode() not in page.content
    assert b"leave blank to keep it" in page.content

    data = wizard_post(org, name="Strict renamed", **{**GOOD_SETTINGS, "api_token": ""})
    data.pop("organization")
    response = client.post(change_url(integration), {**data, **mapping_rows()})

    assert response.status_code == 302, response.content[:3000]
    integration.refresh_from_db()
    assert integration.name == "Strict renamed"
    assert connector_settings.full_settings(integration)["api_token"] == GOOD_SETTINGS["api_token"]
    assert "api_token" not in integration.settings  # the secret is kept apart, encrypted


# --- mapping rows on the change page ---------------------------------------------------------------------


def test_mapping_sections_are_on_the_change_page_only(admin_client_for, org_admin, org, strict_connector):
    client = admin_client_for(org_admin)
    wizard = client.get(ADD + f"?connector={strict_connector.pk}")
    integration = configuration.create_integration(org, strict_connector, "Strict", settings=GOOD_SETTINGS)

    page = client.get(change_url(integration))

    assert wizard.context["inline_admin_formsets"] == []
    assert "“SKU mappings” and “Shipping method mappings” sections on the integration's page once" in (
        wizard.content.decode()
    )
    names = [f.opts.verbose_name_plural for f in page.context["inline_admin_formsets"]]
    assert names == ["SKU mappings", "Shipping method mappings"]
    html = page.content.decode()
    assert "this connector's: locations" in html and "sections below" in html


def test_mapping_inlines_save_rows(admin_client_for, org_admin, org, strict_connector, products):
    integration = configuration.create_integration(org, strict_connector, "Strict", settings=GOOD_SETTINGS)
    method = ShippingMethod.objects.create(organization=org, code="standard", name="Standard")

    response = admin_client_for(org_admin).post(
        change_url(integration),
        change_post(
            org,
            "Strict",
            sku_mappings=[{"external_sku": "SHOP-MUG", "product": products["MUG"].pk}],
            shipping_method_mappings=[{"external_code": "std", "method": method.pk}],
        ),
    )

    assert response.status_code == 302, response.content[:3000]
    assert list(integration.sku_mappings.values_list("external_sku", "product")) == [
        ("SHOP-MUG", products["MUG"].pk)
    ]
    assert list(integration.shipping_method_mappings.values_list("external_code", "method")) == [
        ("std", method.pk)
    ]


def test_mapping_inlines_edit_and_delete_rows(admin_client_for, org_admin, org, integration, products):
    mug = SkuMapping.objects.create(integration=integration, external_sku="SHOP-MUG", product=products["MUG"])
    tee = SkuMapping.objects.create(
        integration=integration, external_sku="SHOP-TEE", product=products["TSHIRT-S"]
    )

    response = admin_client_for(org_admin).post(
        change_url(integration),
        {
            "name": integration.name,
            "notification_email": "",
            "mappings": "{}",
            **mapping_rows(
                initial=2,
                sku_mappings=[
                    {"id": mug.pk, "external_sku": "SHOP-MUG-2", "product": products["MUG"].pk},
                    {
                        "id": tee.pk,
                        "external_sku": "SHOP-TEE",
                        "product": products["TSHIRT-S"].pk,
                        "DELETE": "on",
                    },
                ],
            ),
        },
    )

    assert response.status_code == 302, response.content[:3000]
    assert list(integration.sku_mappings.values_list("external_sku", flat=True)) == ["SHOP-MUG-2"]


@pytest.mark.parametrize("who", ["org_admin", "superuser"])
def test_mapping_inline_refuses_another_orgs_product_and_method(
    request, admin_client_for, org, other_org, strict_connector, who
):
    # given an Acme integration, and a product and method of Globex (a superuser's choices span both orgs)
    integration = configuration.create_integration(org, strict_connector, "Strict", settings=GOOD_SETTINGS)
    globex_mug = Product.objects.create(organization=other_org, sku="GLOBEX-MUG", name="Globex mug")
    globex_std = ShippingMethod.objects.create(organization=other_org, code="globex-std", name="Globex")
    client = admin_client_for(request.getfixturevalue(who))

    # when either is chosen in a mapping row
    response = client.post(
        change_url(integration),
        change_post(
            org,
            "Strict",
            sku_mappings=[{"external_sku": "X", "product": globex_mug.pk}],
            shipping_method_mappings=[{"external_code": "x", "method": globex_std.pk}],
        ),
    )

    # then the form refuses both, and nothing is saved
    assert response.status_code == 200
    formsets = {f.formset.prefix: f.formset for f in response.context["inline_admin_formsets"]}
    assert "product" in formsets["sku_mappings"].errors[0]
    assert "method" in formsets["shipping_method_mappings"].errors[0]
    assert not SkuMapping.objects.exists() and not ShippingMethodMapping.objects.exists()
    # and the choices offered on the page never included them
    page = client.get(change_url(integration))
    method_field = page.context["inline_admin_formsets"][1].formset.empty_form.fields["method"]
    assert globex_std not in method_field.queryset


def test_json_skus_are_refused_on_the_change_page(admin_client_for, org_admin, org, strict_connector):
    integration = configuration.create_integration(org, strict_connector, "Strict", settings=GOOD_SETTINGS)
    data = change_post(org, "Strict")
    data["mappings"] = json.dumps({"skus": {"EXT-1": "MUG"}})

    response = admin_client_for(org_admin).post(change_url(integration), data)

    assert response.status_code == 200
    [message] = response.context["adminform"].form.errors["mappings"]
    assert "“SKU mappings” section" in message
    assert Integration.objects.get(pk=integration.pk).mappings == {}


def test_changelist_shows_badges_and_last_error(
    admin_client_for, org_admin, org, channel_connector, make_integration
):
    broken = make_integration(org, channel_connector, "Broken shop")
    lifecycle.report_error(broken, "Shop API answered 401 Unauthorized")

    page = admin_client_for(org_admin).get(CHANGELIST)

    html = page.content.decode()
    assert 'class="sy-badge sy-badge-red" data-status="error"' in html
    assert "Shop API answered 401" in html


@pytest.mark.parametrize("count", [3, 30])
def test_changelist_query_count_is_bounded(
    admin_client_for,
    org_admin,
    org,
    channel_connector,
    make_integration,
    django_assert_max_num_queries,
    count,
):
    for i in range(count):
        make_integration(org, channel_connector, f"Shop {i:02d}")
    client = admin_client_for(org_admin)

    with django_assert_max_num_queries(14):
        page = client.get(CHANGELIST)

    assert page.status_code == 200
    assert page.context["cl"].result_count == count


def test_disable_and_enable_actions(admin_client_for, org_admin, integration):
    client = admin_client_for(org_admin)
    assert integration.status == S.CONNECTING

    client.post(CHANGELIST, {"action": "disable_selected", "_selected_action": [integration.pk]})
    integration.refresh_from_db()
    assert integration.status == S.DISABLED

    client.post(CHANGELIST, {"action": "enable_selected", "_selected_action": [integration.pk]})
    integration.refresh_from_db()
    assert integration.status == S.CONNECTING  # never straight to connected


def test_enable_action_reports_refusal(admin_client_for, org_admin, integration):
    response = admin_client_for(org_admin).post(
        CHANGELIST, {"action": "enable_selected", "_selected_action": [integration.pk]}, follow=True
    )

    assert b"is not disabled" in response.content
    integration.refresh_from_db()
    assert integration.status == S.CONNECTING


def test_disable_button_on_change_page(admin_client_for, org_admin, integration):
    client = admin_client_for(org_admin)

    page = client.get(change_url(integration))
    assert b'id="sy-disable"' in page.content
    client.post(reverse("admin:integrations_integration_disable", args=[integration.pk]))

    integration.refresh_from_db()
    assert integration.status == S.DISABLED
    assert b'id="sy-enable"' in client.get(change_url(integration)).content


def test_button_needs_post(admin_client_for, org_admin, integration):
    response = admin_client_for(org_admin).get(
        reverse("admin:integrations_integration_disable", args=[integration.pk])
    )
    assert response.status_code == 405


def test_delete_confirmation_says_what_is_kept_and_events_survive(admin_client_for, org_admin, integration):
    client = admin_client_for(org_admin)
    url = reverse("admin:integrations_integration_delete", args=[integration.pk])

    page = client.get(url)
    assert b"What is kept" in page.content and b"orders and fulfillments" in page.content

    client.post(url, {"post": "yes"})
    assert not Integration.objects.filter(pk=integration.pk).exists()
    deleted = IntegrationEvent.objects.get(kind="deleted")
    assert deleted.integration is None and deleted.integration_name == "Acme web shop"


def test_export_download_has_no_secrets(admin_client_for, org_admin, org, strict_connector, make_integration):
    integration = make_integration(org, strict_connector, "Strict", settings=GOOD_SETTINGS)

    response = admin_client_for(org_admin).get(
        reverse("admin:integrations_integration_export", args=[integration.pk])
    )

    assert response["Content-Disposition"].startswith("attachment")
    body = response.content.decode()
    assert GOOD_SETTINGS["api_token"] not in body
    assert json.loads(body)["settings"]["base_url"] == GOOD_SETTINGS["base_url"]


def test_import_view_creates_integration(
    admin_client_for, org_admin, org, strict_connector, make_integration
):
    source = make_integration(org, strict_connector, "Strict", settings=GOOD_SETTINGS)
    export = json.dumps(transfer.export_configuration(source)).encode()
    upload = io.BytesIO(export)
    upload.name = "strict.json"

    response = admin_client_for(org_admin).post(
        reverse("admin:integrations_integration_import"),
        {"organization": org.pk, "file": upload, "name": "Strict copy"},
    )

    assert response.status_code == 302
    copy = Integration.objects.get(name="Strict copy")
    assert copy.status == S.NOT_CONFIGURED  # the secret must be entered again
    assert "api_token" not in copy.settings


def test_import_view_warns_of_skipped_mappings(
    admin_client_for, org_admin, org, other_org, strict_connector, products
):
    # given a file exported from Globex, mapping a SKU Acme has and one it lacks
    data = transfer.export_configuration(
        configuration.create_integration(other_org, strict_connector, "Globex strict", settings=GOOD_SETTINGS)
    )
    data["sku_mappings"] = [{"external_sku": "A", "sku": "MUG"}, {"external_sku": "B", "sku": "NOPE"}]
    upload = io.BytesIO(json.dumps(data).encode())
    upload.name = "strict.json"

    # when an Acme admin imports it into Acme
    response = admin_client_for(org_admin).post(
        reverse("admin:integrations_integration_import"),
        {"organization": org.pk, "file": upload},
        follow=True,
    )

    # then the known SKU is mapped, and the page warns of the other
    copy = Integration.objects.get(organization=org, name="Globex strict")
    assert list(copy.sku_mappings.values_list("external_sku", "product")) == [("A", products["MUG"].pk)]
    warnings = [str(m) for m in response.context["messages"] if m.level_tag == "warning"]
    assert warnings == ["“Globex strict”: Skipped 1 SKU mapping: B → NOPE (NOPE not in Acme Outfitters)."]


def test_import_view_reports_bad_file(admin_client_for, org_admin, org):
    upload = io.BytesIO(b"{not json")
    upload.name = "bad.json"

    response = admin_client_for(org_admin).post(
        reverse("admin:integrations_integration_import"), {"organization": org.pk, "file": upload}
    )

    assert response.status_code == 200
    assert b"Not valid JSON" in response.content
    assert not Integration.objects.exists()


def test_events_admin_is_read_only_and_filterable(admin_client_for, org_admin, integration):
    client = admin_client_for(org_admin)
    url = reverse("admin:integrations_integrationevent_changelist")

    page = client.get(url + f"?integration__id__exact={integration.pk}")

    assert page.status_code == 200
    assert page.context["cl"].result_count == integration.events.count() > 0
    assert client.get(reverse("admin:integrations_integrationevent_add")).status_code == 403
