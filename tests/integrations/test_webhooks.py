"""Webhook subscriptions: the API, the grants per event type, the SSRF guard, the secret shown once."""

import socket

import pytest
from django.core.exceptions import ValidationError

from integrations.choices import EventKind, EventType
from integrations.models import IntegrationEvent, WebhookSubscription
from integrations.webhooks import subscriptions
from tokens import issuing as key_services
from tokens.choices import KeyKind

URL = "/api/v1/webhooks"
PUBLIC = "https://93.184.216.34/hooks"  # a literal public address: getaddrinfo needs no DNS for it
ALL_READ = ["webhooks:read", "webhooks:write", "orders:read", "inventory:read", "fulfillments:read"]


@pytest.fixture
def shop_key(integration):
    return key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="shop hooks", integration=integration, grants=ALL_READ
    )


@pytest.fixture
def shop(api_client, shop_key):
    return api_client(shop_key)


def subscribe(client, url=PUBLIC, events=("order.created",)):
    return client.post(URL, {"url": url, "events": list(events)}, format="json")


def code(response):
    return response.json()["error"]["code"]


# --- subscribing ------------------------------------------------------------------------------------------


def test_subscribe_answers_the_secret_once(shop, integration):
    created = subscribe(shop, events=["order.created", "inventory.updated"])

    body = created.json()
    assert created.status_code == 201
    assert set(body) == {"id", "url", "events", "active", "secret"}
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 40
    assert (body["url"], body["events"], body["active"]) == (
        PUBLIC,
        ["order.created", "inventory.updated"],
        True,
    )
    subscription = WebhookSubscription.objects.get(pk=body["id"])
    assert subscription.integration == integration and subscription.secret == body["secret"]

    listed = shop.get(URL)
    assert listed.status_code == 200
    assert listed.json()["results"] == [{k: v for k, v in body.items() if k != "secret"}]
    assert body["secret"] not in listed.content.decode()


def test_the_secret_is_not_in_the_trail(shop, integration):
    secret = subscribe(shop).json()["secret"]

    events = IntegrationEvent.objects.filter(integration=integration)
    assert events.filter(kind=EventKind.CONFIG_CHANGED).count() == 1
    assert all(secret not in str(values) for values in events.values())


def test_the_secret_is_not_in_the_admin(shop, admin_client_for, org_admin):
    body = subscribe(shop).json()
    client = admin_client_for(org_admin)

    changelist = client.get("/admin/integrations/webhooksubscription/")
    change = client.get(f"/admin/integrations/webhooksubscription/{body['id']}/change/")

    assert changelist.status_code == change.status_code == 200
    assert PUBLIC in changelist.content.decode()
    assert body["secret"] not in changelist.content.decode() + change.content.decode()


def test_the_admin_shows_other_organizations_nothing(shop, admin_client_for, other_admin):
    body = subscribe(shop).json()
    client = admin_client_for(other_admin)

    assert PUBLIC not in client.get("/admin/integrations/webhooksubscription/").content.decode()
    assert client.get(f"/admin/integrations/webhooksubscription/{body['id']}/change/").status_code in (
        302,
        404,
    )


def test_unknown_and_wildcard_events_are_refused(shop):
    for events in (["order.shipped"], ["*"], []):
        refused = subscribe(shop, events=events)

        assert (refused.status_code, code(refused)) == (400, "validation_error")
        assert "events" in refused.json()["error"]["details"]
    assert not WebhookSubscription.objects.exists()


@pytest.mark.parametrize(
    ("event", "grant"),
    [
        ("order.canceled", "orders:read"),
        ("shipping_request.created", "shipping_requests:read"),
        ("fulfillment.created", "fulfillments:read"),
        ("inventory.updated", "inventory:read"),
        ("product.updated", "products:read"),
    ],
)
def test_each_event_needs_its_read_grant(api_client, integration, event, grant):
    without = key_services.issue_key(
        kind=KeyKind.INTEGRATION,
        name="narrow",
        integration=integration,
        grants=["webhooks:read", "webhooks:write"],
    )
    with_it = key_services.issue_key(
        kind=KeyKind.INTEGRATION,
        name="wide",
        integration=integration,
        grants=["webhooks:read", "webhooks:write", grant],
    )

    refused = subscribe(api_client(without), events=[event])
    allowed = subscribe(api_client(with_it), events=[event])

    assert (refused.status_code, code(refused)) == (403, "missing_grant")
    assert refused.json()["error"]["details"]["required"] == [grant]
    assert allowed.status_code == 201


def test_status_events_need_no_other_grant(api_client, integration):
    key = key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="k", integration=integration, grants=["webhooks:write"]
    )

    assert subscribe(api_client(key), events=["integration.status_changed"]).status_code == 201


def test_every_event_type_has_a_grant_entry():
    assert set(subscriptions.EVENT_GRANTS) == set(EventType.values)


def test_writes_need_webhooks_write(api_client, integration):
    key = key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="k", integration=integration, grants=["webhooks:read", "orders:read"]
    )

    refused = subscribe(api_client(key))

    assert (refused.status_code, code(refused)) == (403, "missing_grant")
    assert refused.json()["error"]["details"]["required"] == ["webhooks:write"]


def test_org_keys_cannot_subscribe(api_client, org, org_admin):
    key = key_services.issue_key(
        kind=KeyKind.ORG, name="org", organization=org, user=org_admin, grants=ALL_READ
    )

    refused = subscribe(api_client(key))

    assert (refused.status_code, code(refused)) == (403, "missing_grant")
    assert refused.json()["error"]["details"]["key_kind"] == ["integration"]


def test_org_keys_list_the_organizations_subscriptions(api_client, shop, org, org_admin, other_integration):
    mine = subscribe(shop).json()["id"]
    WebhookSubscription.objects.create(integration=other_integration, url=PUBLIC, secret="whsec_eA")
    key = key_services.issue_key(
        kind=KeyKind.ORG, name="org", organization=org, user=org_admin, grants=["webhooks:read"]
    )

    rows = api_client(key).get(URL).json()["results"]

    assert [row["id"] for row in rows] == [mine]


# --- the SSRF guard ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8000/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.5/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
    ],
)
def test_private_targets_are_refused(shop, target, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False  # production's default (make test turns it on)
    refused = subscribe(shop, url=target)

    assert (refused.status_code, code(refused)) == (400, "validation_error")
    assert "url" in refused.json()["error"]["details"]
    assert not WebhookSubscription.objects.exists()


@pytest.mark.parametrize(
    "target", ["ftp://93.184.216.34/x", "https:///nohost", "not a url", "file:///etc/passwd"]
)
def test_only_http_urls_with_a_host(shop, target):
    refused = subscribe(shop, url=target)

    assert (refused.status_code, code(refused)) == (400, "validation_error")
    assert "url" in refused.json()["error"]["details"]


def test_a_name_resolving_to_a_private_address_is_refused(monkeypatch):
    # given: a public-looking name whose DNS answer includes loopback (DNS rebinding, a hostile zone)
    answers = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 443)),
    ]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: answers)

    with pytest.raises(ValidationError) as refused:
        subscriptions.check_target_url("https://hooks.example.com/x", allow_private=False)

    assert "url" in refused.value.message_dict


def test_an_unresolvable_host_is_refused(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror("no such host")

    monkeypatch.setattr(socket, "getaddrinfo", fail)

    with pytest.raises(ValidationError):
        subscriptions.check_target_url("https://nowhere.invalid/x", allow_private=False)


def test_private_targets_are_allowed_when_the_setting_says_so(shop, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True

    for target in ("http://127.0.0.1:9000/hook", "http://localhost/hook", "http://10.0.0.7/hook"):
        assert subscribe(shop, url=target).status_code == 201
    assert subscribe(shop, url="ftp://127.0.0.1/x").status_code == 400  # the scheme rule still holds


# --- deleting and listing ---------------------------------------------------------------------------------


def test_delete_removes_and_records(shop, integration):
    created = subscribe(shop).json()

    deleted = shop.delete(f"{URL}/{created['id']}")

    assert deleted.status_code == 204
    assert not WebhookSubscription.objects.exists()
    removed = IntegrationEvent.objects.filter(
        integration=integration, message__startswith="Webhook subscription removed"
    )
    assert removed.count() == 1
    assert created["secret"] not in str(removed.values())


def test_another_tenants_subscription_is_not_found(api_client, shop, other_integration):
    theirs = WebhookSubscription.objects.create(
        integration=other_integration, url=PUBLIC, event_types=["order.created"], secret="whsec_eA"
    )
    before = list(WebhookSubscription.objects.filter(pk=theirs.pk).values())

    answer = shop.delete(f"{URL}/{theirs.pk}")

    assert (answer.status_code, code(answer)) == (404, "not_found")
    assert list(WebhookSubscription.objects.filter(pk=theirs.pk).values()) == before


def test_list_queries_are_bounded(shop, integration, django_assert_max_num_queries):
    for n in range(3):
        WebhookSubscription.objects.create(integration=integration, url=f"{PUBLIC}/{n}", secret="whsec_eA")
    with django_assert_max_num_queries(12) as few:
        assert len(shop.get(URL).json()["results"]) == 3
    for n in range(3, 30):
        WebhookSubscription.objects.create(integration=integration, url=f"{PUBLIC}/{n}", secret="whsec_eA")

    with django_assert_max_num_queries(len(few.captured_queries)):
        assert shop.get(URL).status_code == 200
