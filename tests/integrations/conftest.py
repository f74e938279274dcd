"""Fixtures of the integrations tests: integrations of the strict connector (settings complete or not), a key with
the event grants, and subscribing a local receiver with it."""

import pytest

from integrations.webhooks import subscriptions
from tests.fixtures.integrations import GOOD_SETTINGS
from tests.integrations.delivery_path import GRANTS
from tokens import issuing as key_services
from tokens.choices import KeyKind


@pytest.fixture
def local_receivers(settings):
    """The receivers run on 127.0.0.1, with short timeouts."""
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_TIMEOUT = 2.0
    settings.WEBHOOK_CONNECT_TIMEOUT = 1.0


@pytest.fixture
def shop_key(integration):
    return key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="hooks", integration=integration, grants=GRANTS
    )


@pytest.fixture
def subscribe(shop_key, receiver):
    def go(key=None, events=("order.created", "order.updated", "fulfillment.created"), path="/"):
        key = key or shop_key
        return subscriptions.subscribe(key.key.integration, receiver.url + path, list(events), key.key)

    return go


@pytest.fixture
def strict_integration(org, strict_connector, make_integration):
    """Complete settings: created `not_configured`, moved to `connecting` by the services."""
    return make_integration(org, strict_connector, "Strict shop", settings=dict(GOOD_SETTINGS))


@pytest.fixture
def incomplete_integration(org, strict_connector, make_integration):
    """No settings: stays `not_configured`."""
    return make_integration(org, strict_connector, "Half-done shop")
