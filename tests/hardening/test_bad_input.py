"""
Hostile input on the API (#7): oversized and chunked bodies, deep JSON, NUL characters, invalid UTF-8,
odd `limit`, cursors and `updated_since`. Each answers in the one error shape of docs/connectors/contract.md
and writes nothing (the request log's one event per request aside).

Every write route of the URLconf joins through WRITES (routes that read a body) or BODYLESS; a new write
route fails `test_every_write_route_is_covered` until it is added.
"""

import io
import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.apps import apps
from django.db.models import Max

from integrations.models import Integration, IntegrationEvent
from inventory.models import Location
from orders import services as order_services
from tests.api.helpers import WRITE_METHODS, api_routes, assert_error
from tokens import grants
from tokens import issuing as key_services
from tokens.choices import KeyKind

APPS = {"organizations", "integrations", "tokens", "inventory", "orders", "automations", "auth"}
LIMIT = 20_000  # DATA_UPLOAD_MAX_MEMORY_SIZE in these tests: big enough for every body below, small to send


@dataclass
class Scene:
    channel_key: str
    tpl_key: str
    order: object
    cancelable: object  # a second order: the first one ships in test_the_valid_bodies_go_through
    shipping_request: object
    product: object
    warehouse: object
    webhook_id: str
    fulfillment: object  # of the first order's MUG: its TSHIRT-S are left for the POST below
    rejectable: object  # a third order's shipping request, untouched by the other writes
    spare_location: object  # the 3PL's, with no open shipping request
    delivery_id: str  # a test event's delivery to the channel's webhook


@dataclass(frozen=True)
class Write:
    method: str
    key: str  # "channel" or "tpl": the key whose grants and ownership let the valid body through
    body: Callable[[Scene], dict]
    field: str  # a text field of the body, dotted as the error details name it
    obj: Callable[[Scene], object] | None = None


def order_body():
    return {
        "external_id": "BAD-1",
        "number": "#BAD-1",
        "customer": {"name": "Eve", "email": "eve@example.test"},
        "shipping_address": {"name": "Eve", "line1": "1 Main St", "city": "X", "country": "US"},
        "lines": [{"sku": "TSHIRT-S", "quantity": 1, "unit_price": "1.00"}],
    }


WRITES: dict[str, Write] = {
    "api:integration-error": Write("POST", "channel", lambda s: {"message": "boom"}, "message"),
    "api:product-list": Write(
        "POST", "channel", lambda s: {"sku": "NEW-1", "name": "New", "price": "1"}, "name"
    ),
    "api:product-bulk": Write(
        "POST",
        "channel",
        lambda s: {"products": [{"sku": "NEW-2", "name": "New", "price": "1"}]},
        "products.0.name",
    ),
    "api:product-detail": Write(
        "PATCH", "channel", lambda s: {"name": "Renamed"}, "name", lambda s: s.product
    ),
    # The address is a free-form object: no serializer field of its own refuses a NUL inside it.
    "api:location-list": Write(
        "POST", "tpl", lambda s: {"name": "North", "kind": "3pl", "address": {"city": "Oslo"}}, "address.city"
    ),
    "api:inventory": Write(
        "POST",
        "tpl",
        lambda s: {"location": str(s.warehouse.pk), "items": [{"sku": "MUG", "on_hand": 3}]},
        "items.0.sku",
    ),
    "api:order-list": Write("POST", "channel", lambda s: order_body(), "shipping_address.line1"),
    "api:order-cancel": Write(
        "POST", "channel", lambda s: {"reason": "changed mind"}, "reason", lambda s: s.cancelable
    ),
    "api:fulfillment-list": Write(
        "POST",
        "tpl",
        lambda s: {
            "shipping_request": str(s.shipping_request.pk),
            "external_id": "F-BAD",
            "carrier": "UPS",
            "tracking_number": "1Z999",
            "lines": [{"sku": "TSHIRT-S", "quantity": 1}],
        },
        "tracking_number",
    ),
    "api:exception-list": Write(
        "POST", "channel", lambda s: {"message": "stock feed late", "entity_type": "order"}, "message"
    ),
    "api:webhook-list": Write(
        "POST", "channel", lambda s: {"url": "http://127.0.0.1:9/hook", "events": ["order.created"]}, "url"
    ),
    "api:fulfillment-detail": Write(
        "PATCH", "tpl", lambda s: {"carrier": "DHL"}, "carrier", lambda s: s.fulfillment
    ),
    "api:shipping-request-reject": Write(
        "POST", "tpl", lambda s: {"reason": "no room"}, "reason", lambda s: s.rejectable
    ),
}
# Routes whose views read no body, or no text (rotate-secret's one field is a number, read strictly:
# tests/hardening/test_bad_numbers.py): only the size limit applies to them.
BODYLESS: dict[str, tuple[str, str, Callable | None]] = {
    "api:integration-connect": ("POST", "channel", None),
    "api:order-release": ("POST", "channel", lambda s: s.order),
    "api:shipping-request-acknowledge": ("POST", "tpl", lambda s: s.shipping_request),
    "api:webhook-detail": ("DELETE", "channel", lambda s: s.webhook_id),
    "api:webhook-test": ("POST", "channel", lambda s: s.webhook_id),
    "api:webhook-rotate-secret": ("POST", "channel", lambda s: s.webhook_id),
    "api:webhook-delivery-replay": ("POST", "channel", lambda s: s.delivery_id),
    "api:fulfillment-cancel": ("POST", "tpl", lambda s: s.fulfillment),
    "api:location-detail": ("DELETE", "tpl", lambda s: s.spare_location),
}
ROUTES = {route.name: route for route in api_routes()}
LISTS = sorted(r.name for r in ROUTES.values() if "GET" in r.methods and not r.params and r.name != "api:me")
NOT_LISTS = {"api:integration"}  # a single object, no pagination


@pytest.fixture(autouse=True)
def small_limit(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = LIMIT


@pytest.fixture
def scene(
    integration, warehouse_integration, warehouse, stock, products, standard_method, order_body, api_client
):
    flows = {f.name: True for f in Integration._meta.fields if f.name.startswith("flow_")}
    Integration.objects.filter(pk__in=[integration.pk, warehouse_integration.pk]).update(**flows)
    order, _ = order_services.ingest_order(integration, order_body)
    order = order_services.make_ready(order)
    shipping_request = order_services.create_shipping_request(order, warehouse)
    cancelable, _ = order_services.ingest_order(integration, {**order_body, "external_id": "1002"})
    third, _ = order_services.ingest_order(integration, {**order_body, "external_id": "1003"})
    rejectable = order_services.create_shipping_request(order_services.make_ready(third), warehouse)
    fulfillment, _ = order_services.create_fulfillment(
        shipping_request,
        {"external_id": "F-MUG", "carrier": "UPS", "lines": [(products["MUG"].pk, 1)]},
        integration=warehouse_integration,
    )
    spare = Location.objects.create(
        organization=warehouse.organization, name="Spare", kind="3pl", managed_by=warehouse_integration
    )

    def key(target):
        return key_services.issue_key(
            kind=KeyKind.INTEGRATION, name=f"{target.name} key", integration=target, grants=grants.GRANTS
        ).plaintext

    channel_key, tpl_key = key(integration), key(warehouse_integration)
    hook = api_client(channel_key).post(
        "/api/v1/webhooks", {"url": "http://127.0.0.1:9/existing", "events": ["order.created"]}, format="json"
    )
    assert hook.status_code == 201, hook.content
    test_event = api_client(channel_key).post(f"/api/v1/webhooks/{hook.json()['id']}/test")
    assert test_event.status_code == 202, test_event.content
    # The first use of a key writes its last_used_at: done here, before any snapshot.
    assert api_client(tpl_key).get("/api/v1/me").status_code == 200
    return Scene(
        channel_key,
        tpl_key,
        order,
        cancelable,
        shipping_request,
        products["MUG"],
        warehouse,
        hook.json()["id"],
        fulfillment,
        rejectable,
        spare,
        test_event.json()["id"],
    )


def snapshot():
    """Row counts and latest updated_at of every model of ours, the request log excepted."""
    state = {}
    for model in apps.get_models():
        if model._meta.app_label not in APPS or model is IntegrationEvent:
            continue
        names = {f.name for f in model._meta.fields}
        latest = model.objects.aggregate(m=Max("updated_at"))["m"] if "updated_at" in names else None
        state[model._meta.label] = (model.objects.count(), latest)
    assert len(state) > 10, "the snapshot found none of our models: comparing two would prove nothing"
    return state


def url_of(scene, name, obj=None):
    target = obj(scene) if obj else None
    return (
        ROUTES[name].url(pk=str(getattr(target, "pk", target))) if target is not None else ROUTES[name].url()
    )


def send(client, method, url, raw: bytes, content_type=None, **extra):
    return client.generic(method, url, raw, content_type=content_type or "application/json", **extra)


def client_for(api_client, scene, which):
    return api_client(scene.channel_key if which == "channel" else scene.tpl_key)


def test_every_write_route_is_covered():
    writes = {name for name, route in ROUTES.items() if set(route.methods) & WRITE_METHODS}
    assert writes == set(WRITES) | set(BODYLESS)


def test_the_valid_bodies_go_through(api_client, scene):
    """The bodies below are refused for their poison alone: unpoisoned, each write succeeds."""
    # The shipment first: other writes (the channel's error report) may reroute or cancel the open request.
    for name, write in sorted(WRITES.items(), key=lambda item: item[0] != "api:fulfillment-list"):
        client = client_for(api_client, scene, write.key)
        body = json.dumps(write.body(scene)).encode()
        response = send(client, write.method, url_of(scene, name, write.obj), body)
        assert response.status_code in (200, 201), (name, response.content)


def test_the_largest_legit_bodies_fit_the_default_limit():
    """5,000 stock levels and 1,000 products with every text at its longest (docs/connectors/contract.md's
    bulk maxima)."""
    from config import settings as project  # the module: its value, not this module's small_limit

    limit = project.DATA_UPLOAD_MAX_MEMORY_SIZE
    stock = {"location": "9" * 20, "items": [{"sku": "S" * 100, "on_hand": 2_147_483_647}] * 5000}
    product = {
        "sku": "S" * 100,
        "name": "é" * 255,
        "barcode": "9" * 64,
        "price": "99999999.99",
        "weight": "9999.999",
    }
    lines = [{"sku": "S" * 100, "quantity": 1_000_000, "unit_price": "99999999.99"}] * 500
    order = {**order_body(), "notes": "é" * 5000, "tags": ["t" * 100] * 100, "lines": lines}
    for body in (stock, {"products": [product] * 1000}, order):
        assert len(json.dumps(body, ensure_ascii=False).encode()) < limit


@pytest.mark.parametrize("name", sorted(WRITES) + sorted(BODYLESS))
def test_an_oversized_body_is_413_and_writes_nothing(api_client, scene, name):
    method, which, obj = (w.method, w.key, w.obj) if (w := WRITES.get(name)) else BODYLESS[name]
    body = w.body(scene) if w else {}
    raw = json.dumps({**body, "padding": "x" * LIMIT}).encode()
    before = snapshot()

    response = send(client_for(api_client, scene, which), method, url_of(scene, name, obj), raw)

    assert_error(response, 413, "payload_too_large")
    assert snapshot() == before


@pytest.mark.parametrize("name", sorted(WRITES))
def test_a_chunked_body_is_held_to_the_limit_too(api_client, scene, name):
    """Transfer-Encoding: chunked carries no Content-Length; as gunicorn hands it on (wsgi.input_terminated)."""
    write = WRITES[name]
    client = client_for(api_client, scene, write.key)
    url = url_of(scene, name, write.obj)

    def chunked(raw):
        return client.generic(
            write.method,
            url,
            b"",
            content_type="application/json",
            HTTP_TRANSFER_ENCODING="chunked",
            **{"wsgi.input": io.BytesIO(raw), "wsgi.input_terminated": True},
        )

    before = snapshot()
    over = chunked(json.dumps({**write.body(scene), "padding": "x" * LIMIT}).encode())
    assert_error(over, 413, "payload_too_large")
    assert snapshot() == before
    # Under the limit the chunked body is read like any other (Django alone would see an empty body).
    poisoned = write.body(scene)
    _poison(poisoned, write.field, "a\x00b")
    details = assert_error(chunked(json.dumps(poisoned).encode()), 400, "validation_error")
    assert write.field in details
    assert snapshot() == before


def test_a_chunked_body_the_server_cannot_end_is_refused(api_client, scene):
    response = api_client(scene.channel_key).generic(
        "POST",
        "/api/v1/exceptions",
        b"",
        content_type="application/json",
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input": io.BytesIO(b'{"message": "x"}')},
    )
    assert_error(response, 400, "validation_error")


def _poison(body, dotted, value):
    *path, last = dotted.split(".")
    target = body
    for part in path:
        target = target[int(part)] if isinstance(target, list) else target[part]
    target[int(last) if isinstance(target, list) else last] = value


def _deep(depth):
    nested: object = "x"
    for _ in range(depth):
        nested = [nested]
    return nested


CASES = [
    "100k-brackets",
    "deep-but-valid",
    "nul",
    "escaped-nul",
    "lone-surrogate",
    "invalid-utf8",
    "not-json",
    # JSON is UTF-8 (RFC 8259): a body declared in another charset is refused whatever it holds. The NUL
    # escape in UTF-16 went past a check that searched the raw bytes, and on to PostgreSQL: a 500.
    "utf-16-nul",
    "utf-32-nul",
    "utf-16-clean",
]
# The cases whose error names the poisoned field (the others fail before any field is looked at).
NAMING = {"escaped-nul", "lone-surrogate"}
CHARSETS = {"utf-16-nul": "utf-16", "utf-32-nul": "utf-32", "utf-16-clean": "utf-16"}


def hostile_body(write, scene, case) -> bytes:
    body = write.body(scene)
    if case == "100k-brackets":
        return b"[" * 100_000  # RecursionError in the decoder, unless the parser stops it
    if case == "deep-but-valid":
        body["extra"] = _deep(
            40
        )  # legal JSON, an unknown key the serializers would ignore: the depth refuses it
        return json.dumps(body).encode()
    if case == "nul":
        # A raw NUL byte inside a JSON string: a control character JSON wants escaped (json.dumps always
        # escapes it, so it is put in by hand).
        _poison(body, write.field, "@@@")
        return json.dumps(body).encode().replace(b"@@@", b"a\x00b")
    if case in ("escaped-nul", "utf-16-nul", "utf-32-nul"):
        _poison(body, write.field, "a\x00b")
        return json.dumps(body).encode(CHARSETS.get(case, "utf-8"))
    if case == "utf-16-clean":
        return json.dumps(body).encode("utf-16")
    if case == "lone-surrogate":
        _poison(body, write.field, "\ud800")
        return json.dumps(body).encode()  # "\ud800" escaped: legal JSON, not encodable UTF-8
    if case == "invalid-utf8":
        _poison(body, write.field, "@@@")
        return json.dumps(body).encode().replace(b"@@@", b"\xff\xfe\xc3")
    return b'{"message": '


@pytest.mark.parametrize("name", sorted(WRITES))
def test_a_hostile_body_is_400_naming_the_field_and_writes_nothing(api_client, scene, name, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 200_000  # room for the 100k brackets
    write = WRITES[name]
    client = client_for(api_client, scene, write.key)
    url = url_of(scene, name, write.obj)
    before = snapshot()
    for case in CASES:
        content_type = f"application/json; charset={CHARSETS[case]}" if case in CHARSETS else None
        response = send(
            client, write.method, url, hostile_body(write, scene, case), content_type=content_type
        )

        details = assert_error(response, 400, "validation_error")
        if case in NAMING:
            assert write.field in details, (case, details)
        assert snapshot() == before, case


def test_a_nul_in_a_key_is_refused(api_client, scene):
    response = api_client(scene.channel_key).post(
        "/api/v1/locations", {"name": "N", "kind": "3pl", "address": {"ci\x00ty": "Oslo"}}, format="json"
    )
    assert "address" in assert_error(response, 400, "validation_error")


def _get(api_client, scene, name, params):
    # Lists that only one kind of key may read (shipping requests: the 3PL; availability: the channel).
    key = scene.tpl_key if name in {"api:shipping-request-list", "api:inventory"} else scene.channel_key
    return api_client(key).get(ROUTES[name].url(), params)


LIST_ROUTES = [n for n in LISTS if n not in NOT_LISTS]
NOT_COUNTS = ["abc", "-1", "0", "00", "1e3", "1.5", " ", "٣", "+5", "0x10", "0" * 10]
ODD = [
    {"cursor": "garbage"},
    {"cursor": "W10="},  # base64 of []
    {"cursor": "WyJ4IiwgIngiXQ=="},  # ["x", "x"]: the id is no id
    {"cursor": "%00"},
    {"updated_since": "yesterday"},
    {"updated_since": "2024-13-45T99:99:99Z"},
    {"updated_since": "9" * 5000},
    {"updated_since": "\x00"},
]


@pytest.mark.parametrize("name", LIST_ROUTES)
def test_list_parameters(api_client, scene, name, monkeypatch):
    """limit: not a whole number from 1 to 500 → 400 naming it, over 500 too (docs/connectors/contract.md: "max
    500"; issue 17: not a silent cap); empty → the default. Odd cursors and updated_since → 400 naming them."""
    for limit in NOT_COUNTS:
        details = assert_error(_get(api_client, scene, name, {"limit": limit}), 400, "validation_error")
        assert "limit" in details, limit
    assert _get(api_client, scene, name, {"limit": ""}).status_code == 200

    from api import pagination

    sizes = []
    original = pagination.CursorPagination.get_page_size
    monkeypatch.setattr(
        pagination.CursorPagination,
        "get_page_size",
        lambda self, r: sizes.append(original(self, r)) or sizes[-1],
    )
    for limit in ["501", str(10**30), "9" * 5000]:
        details = assert_error(_get(api_client, scene, name, {"limit": limit}), 400, "validation_error")
        assert "limit" in details, limit
    answers = [_get(api_client, scene, name, {"limit": limit}).status_code for limit in ["500", "7"]]
    assert (answers, sizes) == ([200, 200], [500, 7])

    for params in ODD:
        details = assert_error(_get(api_client, scene, name, params), 400, "validation_error")
        assert set(params) & set(details), (params, details)


@pytest.mark.parametrize("name", ["api:order-list", "api:product-list", "api:exception-list"])
def test_a_nul_in_a_filter_is_400(api_client, scene, name):
    param = {"api:order-list": "external_id", "api:product-list": "sku", "api:exception-list": "status"}[name]
    details = assert_error(_get(api_client, scene, name, {param: "a\x00b"}), 400, "validation_error")
    assert param in details


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/v1/orders/%00", 404, "not_found"),  # was a 500: the request log could not store the path
        ("/api/v1/orders/1%00", 404, "not_found"),
        ("/api/v1/orders?status=%00", 400, "validation_error"),
        ("/api/v1/inventory?%00=1", 400, "validation_error"),
        ("/api/v1/orders/99999999999999999999", 404, "not_found"),
    ],
)
def test_nul_and_overflow_in_the_url_are_not_500s(api_client, scene, path, status, code):
    before = snapshot()
    assert_error(api_client(scene.channel_key).get(path), status, code)
    assert snapshot() == before


@pytest.mark.parametrize(
    "path",
    ["/admin/orders/order/?status=%00", "/admin/orders/order/?q=a%00b", "/admin/orders/order/%00/change/"],
)
def test_nul_in_an_admin_url_is_refused_not_a_500(admin_client_for, org_admin, path):
    # A list filter passed the NUL to PostgreSQL, which refuses it in text: a 500.
    assert admin_client_for(org_admin).get(path).status_code in (400, 404)


def test_a_body_too_big_for_django_is_413_in_the_api_shape_too(rf):
    """Where Django itself refuses a body (RequestDataTooBig on reading request.body) inside a view."""
    from django.core.exceptions import RequestDataTooBig

    from api.errors import exception_handler

    response = exception_handler(RequestDataTooBig("too big"), {"request": rf.post("/api/v1/orders")})
    assert response.status_code == 413
    assert response.data["error"]["code"] == "payload_too_large"
    assert set(response.data["error"]) == {"code", "message", "details"}


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "utf8"])
def test_a_body_declared_utf8_goes_through(api_client, scene, charset):
    response = api_client(scene.tpl_key).generic(
        "POST",
        "/api/v1/locations",
        json.dumps({"name": "South", "kind": "3pl", "address": {"city": "Bergen"}}).encode(),
        content_type=f"application/json; charset={charset}",
    )
    assert response.status_code == 201, response.content
