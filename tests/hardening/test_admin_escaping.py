"""
Script-ish and SQL-ish input (#7): sent through the API (and the admin's integration form) into every text
field the admin shows, stored verbatim, and rendered escaped on every admin list and change page — the raw
markup never reaches the HTML, its escaped form does, and the tables it names are still there.

`crawl_admin` walks the admin by its links; test_connector_text_escaping.py crawls with it too (#14).
"""

import html
import re
from collections import Counter, deque
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import pytest
from django.contrib import admin
from django.db import connection
from django.urls import reverse
from django.utils.html import escape

from automations.models import SyncException
from integrations.models import Connector, Integration
from inventory.models import Location, Product
from orders.models import Fulfillment, Order
from tokens import grants
from tokens import issuing as key_services
from tokens.choices import KeyKind

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
SQL = "'; DROP TABLE orders_order; --"
TEMPLATE = "{{ 7*7 }}"
# All four in one string of 95 characters: it fits every field below (SKUs and external ids hold 100).
PAYLOAD = SCRIPT + IMG + SQL + TEMPLATE
RAW = [SCRIPT, "<img src=x onerror=alert(1)>"]
ESCAPED = escape(SCRIPT)  # the first 25 characters: they survive the admin's truncation of long texts


def text(n):
    """The payload, told apart per field by a short tag in front (x1, x2…)."""
    return f"x{n}{PAYLOAD}"[:100]


@pytest.fixture
def hostile(org, org_admin, integration, warehouse_integration, warehouse, products, api_client, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    flows = {f.name: True for f in Integration._meta.fields if f.name.startswith("flow_")}
    Integration.objects.filter(pk__in=[integration.pk, warehouse_integration.pk]).update(**flows)

    def key(target):
        issued = key_services.issue_key(
            kind=KeyKind.INTEGRATION, name=f"{target.name} key", integration=target, grants=grants.GRANTS
        )
        return api_client(issued)

    channel, tpl = key(integration), key(warehouse_integration)

    def ok(response):
        assert response.status_code in (200, 201), response.content
        return response.json()

    product = ok(
        channel.post("/api/v1/products", {"sku": PAYLOAD, "name": PAYLOAD, "price": "1"}, format="json")
    )
    ok(tpl.post("/api/v1/inventory", {"location": str(warehouse.pk), "items": [{"sku": PAYLOAD, "on_hand": 5}]}, format="json"))  # fmt: skip
    location = ok(tpl.post("/api/v1/locations", {"name": PAYLOAD, "kind": "3pl", "address": {"city": PAYLOAD}}, format="json"))  # fmt: skip
    order = ok(
        channel.post(
            "/api/v1/orders",
            {
                "external_id": PAYLOAD,
                "number": PAYLOAD,
                "customer": {"name": PAYLOAD, "email": "eve@example.test"},
                "shipping_address": {"name": PAYLOAD, "line1": PAYLOAD, "city": PAYLOAD, "country": "US"},
                "shipping_method": text(1),
                "notes": PAYLOAD,
                "tags": [PAYLOAD],
                "lines": [
                    {"sku": PAYLOAD, "quantity": 1, "unit_price": "1.00"},
                    # Unknown: the exception it raises quotes the SKU.
                    {"sku": text(2), "quantity": 1, "unit_price": "1.00"},
                ],
            },
            format="json",
        )
    )
    # A shipment of the order's known line, with hostile carrier and tracking number.
    from orders import services as order_services

    # The order above is on hold (its unknown SKU and shipping method); a clean one of the channel ships.
    shipped = ok(
        channel.post(
            "/api/v1/orders",
            {"external_id": text(5), "lines": [{"sku": PAYLOAD, "quantity": 1, "unit_price": "1.00"}]},
            format="json",
        )
    )
    shipped = order_services.make_ready(Order.objects.get(pk=shipped["id"]))
    request = order_services.create_shipping_request(shipped, warehouse)
    ok(
        tpl.post(
            "/api/v1/fulfillments",
            {
                "shipping_request": str(request.pk),
                "external_id": PAYLOAD,
                "carrier": PAYLOAD,
                "tracking_number": PAYLOAD,
                "lines": [{"sku": PAYLOAD, "quantity": 1}],
            },
            format="json",
        )
    )
    ok(channel.post("/api/v1/exceptions", {"message": PAYLOAD, "entity_type": "order"}, format="json"))
    ok(channel.post("/api/v1/integration/error", {"message": text(3)}, format="json"))
    return {"product": product["id"], "location": location["id"], "order": order["id"]}


@pytest.fixture
def named_by_form(admin_client_for, org_admin, org):
    """An integration whose name came in through the admin's add form."""
    client = admin_client_for(org_admin)
    connector = Connector.objects.get(organization=None, key="custom-channel")
    response = client.post(
        reverse("admin:integrations_integration_add") + f"?connector={connector.pk}",
        {"organization": org.pk, "name": text(4), "notification_email": "", "mappings": "{}"},
    )
    assert response.status_code == 302, response.content[:3000]
    return Integration.objects.get(name=text(4))


def test_hostile_text_is_stored_verbatim(hostile, named_by_form):
    order = Order.objects.get(pk=hostile["order"])
    assert order.external_id == order.number == order.notes == PAYLOAD
    assert order.customer["name"] == order.shipping_address["line1"] == PAYLOAD
    assert order.tags == [PAYLOAD]
    assert Product.objects.get(pk=hostile["product"]).name == PAYLOAD
    assert Location.objects.get(pk=hostile["location"]).name == PAYLOAD
    fulfillment = Fulfillment.objects.get(external_id=PAYLOAD)
    assert fulfillment.tracking_number == fulfillment.carrier == PAYLOAD
    assert SyncException.objects.filter(message=PAYLOAD).exists()
    assert SyncException.objects.filter(message__contains=text(2)).exists()  # the unknown SKU, quoted
    assert named_by_form.name == text(4)
    # The SQL-ish text was data: the table it names is still there.
    assert "orders_order" in connection.introspection.table_names()


# Links in the admin's HTML: Django and our templates always quote attributes with ".
HREF = re.compile(r'\shref="([^"]*)"')
# GET-only, but not pages to walk: logging out ends the session; a delete page is a step towards a delete.
NOT_CRAWLED = re.compile(r"/logout/|/delete/|/jsi18n/")


def crawl_admin(client, *, limit=400, variants=3):
    """
    Every same-site /admin/ page reachable by links from /admin/, breadth first and GET only: yields
    (url, response) for up to `limit` pages. At most `variants` query strings (filters, sort orders,
    pages) are followed per path, so the walk reaches every kind of page before the cap, not the same
    list under many orders. Same-site redirects are followed as links.
    """
    queue, seen, per_path = deque(["/admin/"]), {"/admin/"}, Counter()
    while queue and len(seen) - len(queue) < limit:
        url = queue.popleft()
        response = client.get(url)
        yield url, response
        if response.status_code in (301, 302):
            found = [response["Location"]]
        elif response.status_code == 200 and response["Content-Type"].startswith("text/html"):
            found = [html.unescape(href) for href in HREF.findall(response.content.decode())]
        else:
            found = []
        for href in found:
            target = urlsplit(urljoin(url, href))
            if target.netloc or not target.path.startswith("/admin/") or NOT_CRAWLED.search(target.path):
                continue
            # The filters a change page carries back to its list change nothing on the page itself.
            query = urlencode([(k, v) for k, v in parse_qsl(target.query) if k != "_changelist_filters"])
            link = target.path + (f"?{query}" if query else "")
            if link in seen or (query and per_path[target.path] >= variants):
                continue
            seen.add(link)
            per_path[target.path] += bool(query)
            queue.append(link)


def crawl_for_raw(client, raw, *, shows, limit=400):
    """
    Crawl the admin as `client`, asserting that no HTML page holds any of the `raw` markup; returns how
    many pages were visited and those that showed `shows` (the escaped form). Other answers (the JSON
    export, an attachment) are data, not pages.
    """
    visited, shown = 0, set()
    for url, response in crawl_admin(client, limit=limit):
        visited += 1
        assert response.status_code in (200, 301, 302, 403, 404), (url, response.status_code)
        if response.status_code == 200 and response["Content-Type"].startswith("text/html"):
            page = response.content.decode()
            assert not [r for r in raw if r in page], url
            if shows in page:
                shown.add(url)
    return visited, shown


def admin_pages():
    """Every changelist of our apps' admin, a search on it, the change pages of its rows, the dashboard."""
    yield reverse("admin:automations_dashboard"), None
    for model in admin.site._registry:
        if model._meta.app_label not in {"organizations", "integrations", "tokens", "inventory", "orders", "automations"}:  # fmt: skip
            continue
        name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        yield reverse(f"{name}_changelist"), None
        yield reverse(f"{name}_changelist") + "?q=" + SCRIPT, None
        for pk in model.objects.values_list("pk", flat=True)[:20]:
            yield reverse(f"{name}_change", args=[pk]), pk


def test_every_admin_page_shows_it_escaped(hostile, named_by_form, admin_client_for, org_admin):
    client = admin_client_for(org_admin)
    shown = set()
    for url, _ in admin_pages():
        response = client.get(url)
        if response.status_code != 200:
            assert response.status_code in (302, 403, 404), (url, response.status_code)
            continue
        html = response.content.decode()
        for raw in RAW:
            assert raw not in html, (url, raw)
        if ESCAPED in html:
            shown.add(url.split("?")[0])
    # Each place the payload went is a page that showed it (escaped).
    expected = [
        reverse("admin:orders_order_changelist"),
        reverse("admin:orders_order_change", args=[hostile["order"]]),
        reverse("admin:inventory_product_changelist"),
        reverse("admin:inventory_product_change", args=[hostile["product"]]),
        reverse("admin:inventory_location_changelist"),
        reverse("admin:inventory_location_change", args=[hostile["location"]]),
        reverse("admin:inventory_inventorylevel_changelist"),
        reverse("admin:orders_fulfillment_changelist"),
        reverse("admin:orders_shippingrequest_changelist"),
        reverse("admin:automations_syncexception_changelist"),
        reverse("admin:integrations_integration_changelist"),
        reverse("admin:integrations_integration_change", args=[named_by_form.pk]),
        reverse("admin:automations_dashboard"),
    ]
    missing = [url for url in expected if url not in shown]
    assert not missing, missing


def test_every_admin_page_reached_by_links_shows_it_escaped(
    hostile, named_by_form, admin_client_for, org_admin
):
    visited, shown = crawl_for_raw(admin_client_for(org_admin), RAW, shows=ESCAPED)
    # Beyond the lists and change pages above: add pages, history, filtered lists, the custom views.
    assert visited > 50
    assert reverse("admin:integrations_integration_change", args=[named_by_form.pk]) in shown
