"""
The end-to-end journey's hub: real processes — gunicorn, a Celery worker and Celery beat — on a database of
its own on DATABASE_URL's server and Redis db numbers of its own (the machinery is the harness/ package).

Needs DATABASE_URL on PostgreSQL (skipped otherwise) and CELERY_BROKER_URL or REDIS_URL on Redis, as
`make test` exports them (scripts/test.sh).
"""

import os

import pytest

from harness.fixtures import (  # noqa: F401 - fixtures and the report hook, registered by being here
    _log_mark,
    connectors,
    hub_on_own_database,
    pytest_runtest_makereport,
    receivers,
)
from harness.receivers import Receiver  # noqa: F401 - the tests import it from here

# Redis db numbers of the hub under test: the rest of the suite uses 0 (broker) and 1 (cache).
REDIS_DBS = tuple(int(n) for n in os.environ.get("E2E_REDIS_DBS", "5,6").split(","))
LEASE = 5  # WEBHOOK_DELIVERY_LEASE: seconds before a killed worker's claimed delivery is due again

PRODUCTS = [
    {"sku": "E2E-TEE", "name": "E2E tee", "price": "12.50"},
    {"sku": "E2E-MUG", "name": "E2E mug", "price": "8.00"},
]

INTEGRATIONS = [
    ("Shop", "custom-channel"),
    ("Warehouse", "custom-3pl"),
    ("Flaky shop", "custom-channel"),
    ("Stalled shop", "custom-channel"),
]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """
    The hub as real processes on a database and Redis db numbers of its own: migrated, an organization with
    the integrations of INTEGRATIONS and their keys, the products of PRODUCTS; gunicorn, worker and beat up.
    """
    with hub_on_own_database(
        tmp_path_factory.mktemp("e2e"), "e2e", REDIS_DBS, WEBHOOK_DELIVERY_LEASE=str(LEASE)
    ) as hub:
        hub.setup_organization("e2e", INTEGRATIONS)
        hub.start_processes()
        with hub.api("admin") as api:
            answer = api.post("/products/bulk", json={"products": PRODUCTS})
            assert answer.status_code == 200, answer.text
        for name in ("Flaky shop", "Stalled shop"):  # the samples do their own handshake; these are ours
            with hub.api(name) as api:
                assert api.post("/integration/connect").status_code == 200
        yield hub
