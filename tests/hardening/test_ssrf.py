"""
The SSRF guard (#14, finding 1). With WEBHOOK_ALLOW_PRIVATE_TARGETS off (production's default), the hub
sends HTTP only to a host whose every address is global: IPv4 inside IPv6 (mapped, 6to4, Teredo, NAT64) is
unwrapped first, and multicast is refused too. Every target of REFUSED is refused when a webhook is
subscribed, when a manifest integration's base_url is saved, and at send time, where nothing is connected.
"""

import socket
from urllib.parse import urlsplit

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from console import transfer
from console.forms.integrations import SETTING_PREFIX
from core import outbound
from integrations import configuration, connector_settings, manifest
from integrations.models import Integration, IntegrationEvent, WebhookSubscription
from tests.fixtures.manifest import AUTH_TOKEN
from tokens import issuing as key_services
from tokens.choices import KeyKind

URL = "/api/v1/webhooks"

# IPv4 addresses that are not global unicast (IANA special-purpose registry), one or two per block.
REFUSED_V4 = [
    "127.0.0.1",  # loopback
    "127.255.255.254",
    "0.0.0.0",  # noqa: S104 - "this host", a target here, not a bind address
    "0.1.2.3",  # "this network"
    "10.0.0.1",  # RFC 1918
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "100.64.0.1",  # RFC 6598 shared space: carrier-grade NAT, Tailscale …
    "100.100.100.200",  # … and Alibaba Cloud's metadata service
    "100.127.255.254",
    "169.254.169.254",  # link-local: AWS/GCP/Azure metadata
    "169.254.170.2",  # ECS task metadata
    "192.0.0.1",  # IETF protocol assignments
    "192.0.0.9",
    "192.0.0.170",
    "192.0.2.1",  # TEST-NET-1
    "192.88.99.1",  # 6to4 relay anycast (deprecated)
    "198.18.0.1",  # benchmarking
    "198.19.255.254",
    "198.51.100.7",  # TEST-NET-2
    "203.0.113.9",  # TEST-NET-3
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",  # broadcast
]

REFUSED = [
    *(f"http://{address}/hook" for address in REFUSED_V4),
    *(f"http://[::ffff:{address}]/hook" for address in REFUSED_V4),  # IPv4-mapped IPv6
    "http://[::ffff:7f00:1]:8080/hook",  # the same, written in hex
    "http://[::]/hook",
    "http://[::1]/hook",
    "https://[::1]:8443/hook",
    "http://[::7f00:1]/hook",  # IPv4-compatible (deprecated) 127.0.0.1
    "http://[2002:7f00:1::1]/hook",  # 6to4 wrapping 127.0.0.1
    "http://[2002:a9fe:a9fe::1]/hook",  # 6to4 wrapping 169.254.169.254
    "http://[2002:a00:1::1]/hook",  # 6to4 wrapping 10.0.0.1
    "http://[2002:6464:64c8::1]/hook",  # 6to4 wrapping 100.100.100.200
    "http://[2001:0:a00:1::80ff:fffe]/hook",  # Teredo: server 10.0.0.1, client 127.0.0.1
    "http://[2001:0:4136:e378:8000:63bf:5601:5601]/hook",  # Teredo: client 169.254.169.254
    "http://[64:ff9b::7f00:1]/hook",  # NAT64 well-known prefix wrapping 127.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/hook",  # … wrapping 169.254.169.254
    "http://[64:ff9b::6464:64c8]/hook",  # … wrapping 100.100.100.200
    "http://[64:ff9b:1::a00:1]/hook",  # local-use NAT64 prefix (RFC 8215)
    "http://[fc00::1]/hook",  # unique local
    "http://[fd12:3456:789a::1]/hook",
    "http://[fe80::1]/hook",  # link-local
    "http://[febf::1]/hook",
    "http://[fec0::1]/hook",  # site-local (deprecated)
    "http://[feff::1]/hook",
    "http://[ff02::1]/hook",  # multicast
    "http://[ff0e::1]/hook",
    "http://[2001:db8::1]/hook",  # documentation
    "http://[100::1]/hook",  # discard-only
    "http://[2001:10::1]/hook",  # ORCHID
    "http://2130706433/hook",  # 127.0.0.1 as one decimal number: getaddrinfo (inet_aton) accepts it
    "http://0x7f.1/hook",  # hex and short forms, the same
    "http://0x7f000001/hook",
    "http://017700000001/hook",  # octal
    "http://0177.0.0.1/hook",
    "http://127.1/hook",
    "http://0/hook",  # 0.0.0.0
    "http://0x0a.0.0.1/hook",  # 10.0.0.1
    "http://3232235521/hook",  # 192.168.0.1
    "http://2852039166/latest/meta-data/",  # 169.254.169.254
    "http://0xa9fea9fe/latest/meta-data/",
    "http://localhost/hook",  # names that resolve to loopback (/etc/hosts)
    "http://LOCALHOST:8000/hook",
    "http://hooks@127.0.0.1/hook",  # the host is after the userinfo
    "http://metadata.example.test/latest/meta-data/",  # names of the DNS zone below
    "https://cgnat.example.test/hook",
    "https://intranet.example.test/hook",
    "https://rebinding.example.test/hook",
    "https://tunnel.example.test/hook",
    "https://mapped.example.test/hook",
]

# The outside world's DNS for the names above: a public name with a private answer among public ones is the
# usual DNS-rebinding trick. Literal addresses and /etc/hosts names resolve for real.
ZONE = {
    "metadata.example.test": ["169.254.169.254"],
    "cgnat.example.test": ["100.100.100.200"],
    "intranet.example.test": ["10.20.30.40", "fd00::1"],
    "rebinding.example.test": ["93.184.216.34", "127.0.0.1"],
    "tunnel.example.test": ["2606:2800:220:1:248:1893:25c8:1946", "2002:a9fe:a9fe::1"],
    "mapped.example.test": ["::ffff:10.0.0.1"],
    "hooks.example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
}

# Public targets, and the URL each is sent to: the first address checked, the name kept in Host and SNI.
PUBLIC = {
    "https://hooks.example.com/in": "https://93.184.216.34/in",
    "http://93.184.216.34:8080/hook": "http://93.184.216.34:8080/hook",
    "https://[2606:4700:4700::1111]/hook": "https://[2606:4700:4700::1111]/hook",
    "https://[64:ff9b::5db8:d822]/hook": "https://[64:ff9b::5db8:d822]/hook",  # NAT64 of 93.184.216.34
    "https://[::ffff:93.184.216.34]/hook": "https://[::ffff:93.184.216.34]/hook",
}


@pytest.fixture(autouse=True)
def dns(monkeypatch):
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in ZONE:
            return real(host, port, *args, **kwargs)
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in ZONE[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(autouse=True)
def private_targets_off(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False  # production's default (make test turns it on)
    settings.WEBHOOK_TIMEOUT = 1.0  # a guard that lets a target through shows as a failure, not a hang
    settings.WEBHOOK_CONNECT_TIMEOUT = 0.5


@pytest.fixture
def shop(api_client, integration):
    issued = key_services.issue_key(
        kind=KeyKind.INTEGRATION,
        name="hooks",
        integration=integration,
        grants=["webhooks:read", "webhooks:write", "orders:read"],
    )
    return api_client(issued)


def manifest_settings(base_url):
    return {"base_url": base_url, "auth_token": AUTH_TOKEN}


# --- subscribing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", REFUSED)
def test_subscribing_a_webhook_to_a_non_global_target_is_refused(shop, integration, target):
    refused = shop.post(URL, {"url": target, "events": ["order.created"]}, format="json")

    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "validation_error")
    assert list(refused.json()["error"]["details"]) == ["url"]
    assert not WebhookSubscription.objects.exists()
    assert not IntegrationEvent.objects.filter(message__startswith="Webhook subscription added").exists()


@pytest.mark.parametrize("target", PUBLIC)
def test_subscribing_a_webhook_to_a_public_target_is_accepted(shop, target):
    created = shop.post(URL, {"url": target, "events": ["order.created"]}, format="json")

    assert created.status_code == 201, created.json()
    assert WebhookSubscription.objects.get().url == target


# --- saving a manifest integration's base_url -------------------------------------------------------------


@pytest.mark.parametrize("target", REFUSED)
def test_a_manifest_integration_with_a_non_global_base_url_is_not_saved(org, manifest_connector, target):
    with pytest.raises(ValidationError) as refused:
        configuration.create_integration(
            org, manifest_connector, "Storefront", settings=manifest_settings(target)
        )

    assert list(refused.value.message_dict) == ["base_url"]
    assert not Integration.objects.exists()


@pytest.mark.parametrize("target", PUBLIC)
def test_a_manifest_integration_with_a_public_base_url_is_saved(org, manifest_connector, target):
    saved = configuration.create_integration(
        org, manifest_connector, "Storefront", settings=manifest_settings(target)
    )

    assert connector_settings.full_settings(saved)["base_url"] == target


@pytest.mark.parametrize(
    "target", ["http://100.100.100.200/", "http://[2002:a9fe:a9fe::1]/", "https://metadata.example.test/"]
)
def test_editing_a_base_url_to_a_non_global_one_is_refused_and_keeps_the_old(org, manifest_connector, target):
    saved = configuration.create_integration(
        org, manifest_connector, "Storefront", settings=manifest_settings("https://hooks.example.com/sy")
    )

    with pytest.raises(ValidationError) as refused:
        configuration.save_integration(saved, settings={"base_url": target})

    assert list(refused.value.message_dict) == ["base_url"]
    saved.refresh_from_db()
    assert connector_settings.full_settings(saved)["base_url"] == "https://hooks.example.com/sy"


@pytest.mark.parametrize("target", ["http://100.100.100.200/", "http://[::ffff:169.254.169.254]/"])
def test_the_admin_form_shows_a_non_global_base_url_as_a_field_error(
    admin_client_for, org_admin, org, manifest_connector, target
):
    data = {
        "organization": org.pk,
        "name": "Storefront",
        "notification_email": "",
        "mappings": "{}",
        f"{SETTING_PREFIX}base_url": target,
        f"{SETTING_PREFIX}auth_token": AUTH_TOKEN,
    }

    page = admin_client_for(org_admin).post(
        reverse("admin:integrations_integration_add") + f"?connector={manifest_connector.pk}", data
    )

    assert page.status_code == 200
    assert f"{SETTING_PREFIX}base_url" in page.context["adminform"].form.errors
    assert not Integration.objects.exists()


def test_an_import_with_a_non_global_base_url_is_refused(org, other_org, manifest_connector):
    saved = configuration.create_integration(
        org, manifest_connector, "Storefront", settings=manifest_settings("https://hooks.example.com/sy")
    )
    data = transfer.export_configuration(saved)
    data["settings"]["base_url"] = "http://100.100.100.200/"

    with pytest.raises(ValidationError) as refused:
        transfer.import_configuration(data, other_org)

    assert "base_url" in refused.value.message_dict
    assert not Integration.objects.filter(organization=other_org).exists()


def test_a_non_global_base_url_is_accepted_when_private_targets_are_allowed(
    org, manifest_connector, settings
):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True

    saved = configuration.create_integration(
        org, manifest_connector, "Storefront", settings=manifest_settings("http://100.100.100.200/")
    )

    assert connector_settings.full_settings(saved)["base_url"] == "http://100.100.100.200/"


# --- sending --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", REFUSED)
def test_a_non_global_target_is_not_connected_to_at_send_time(target):
    with pytest.raises(ValidationError):
        outbound.pinned_target(target)

    outcome = outbound.post_signed(target, "whsec_" + "A" * 43, "msg_ssrf", b"{}")

    # Refused before any connection: a connection attempt would end as "Could not connect" or "Timed out".
    assert not outcome.ok and outcome.status_code is None
    assert outcome.error.startswith("Refused target")


@pytest.mark.parametrize(("target", "pinned"), PUBLIC.items())
def test_a_public_target_is_sent_to_its_checked_address(target, pinned):
    url, headers, _ = outbound.pinned_target(target)

    assert url == pinned
    assert headers["host"] == urlsplit(target).netloc


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "2130706433", "0x7f.1", "127.1", "[::ffff:127.0.0.1]"]
)
def test_a_receiver_on_loopback_receives_nothing(receiver, host):
    # given: a real receiver listening on 127.0.0.1, reached by each spelling of loopback
    port = receiver.url.rsplit(":", 1)[1]

    outcome = outbound.post_signed(f"http://{host}:{port}/hook", "whsec_" + "A" * 43, "msg_ssrf", b"{}")

    assert outcome.error.startswith("Refused target")
    assert receiver.requests == []


def test_a_manifest_call_to_a_base_url_on_loopback_is_not_made(storefront, receiver, settings):
    # given: a storefront saved while private targets were allowed (its base URL is the loopback receiver) …
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False  # … then switched off: the call re-checks

    outcome = manifest.check_health(storefront)

    assert not outcome.ok and outcome.error.startswith("Refused target")
    assert receiver.requests == []
