import json
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.test import override_settings

pytest_plugins = [
    "tests.fixtures.organizations",
    "tests.fixtures.integrations",
    "tests.fixtures.tokens",
    "tests.fixtures.commerce",
    "tests.fixtures.receiver",
    "tests.fixtures.manifest",
    "tests.fixtures.routing",
    "tests.fixtures.rules",
]

TESTS = Path(__file__).resolve().parent
# The tests that start real processes through the harness (harness/: gunicorn, Celery, PostgreSQL, Redis,
# the examples) or a browser: marked `system`, which `make check` leaves out and `make test` runs.
SYSTEM = (
    "e2e",
    "e2e_journey",
    "faults",
    "load",
    "connector_guide",
    "examples",
    "hardening/test_no_secrets_in_logs.py",
    "harness/test_services.py",
)


# Redis db numbers of the suite's cache under pytest-xdist: worker gwN uses FIRST_WORKER_DB + N (the suite uses
# 0 and 1, the system tests 5 to 10; a Redis server has 16).
FIRST_WORKER_DB = 11


# The fixtures' users' passwords: no test looks at how a password is hashed (tests/config/test_settings.py
# checks the production settings in a process of their own), and Django's default PBKDF2 costs ~0.3 s of CPU
# a hash — for each fixture user and each login, most of the suite's time.
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def pytest_configure(config):
    """
    Passwords hashed cheaply (FAST_HASHERS). Under pytest-xdist (`make check` runs a worker per core), each
    worker gets a cache of its own: pytest-django gives it a database of its own, but the Redis cache is
    shared, and the rate-limit tests clear it whole.
    """
    override_settings(PASSWORD_HASHERS=FAST_HASHERS).enable()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", … in a worker
    cache = settings.CACHES["default"]
    if not worker.startswith("gw") or not cache["BACKEND"].endswith("RedisCache"):
        return
    db = FIRST_WORKER_DB + int(worker[2:])
    if db > 15:
        raise pytest.UsageError("at most 5 xdist workers: each takes a Redis db of its own (11 to 15)")
    location = urlunsplit(urlsplit(cache["LOCATION"])._replace(path=f"/{db}"))
    # Through override_settings, so Django drops any cache connection made before (setting_changed).
    override_settings(CACHES={**settings.CACHES, "default": {**cache, "LOCATION": location}}).enable()


def pytest_collection_modifyitems(config, items):
    """`system` on every test under SYSTEM, and on every `browser` test wherever it lives."""
    system = [TESTS / place for place in SYSTEM]
    for item in items:
        path = item.path
        if item.get_closest_marker("browser") or any(path == p or p in path.parents for p in system):
            item.add_marker(pytest.mark.system)


# The longest tests of `make check` (seconds on this machine, quiet), started first so that under pytest-xdist no
# worker is still running one of them while the others have nothing left to do. A test missing from this
# list only runs in its collection place; the list changes how long the run takes, never what it checks.
LONGEST_FIRST = (
    "automations/test_routing_race.py",  # 31 s, a transactional test
    "hardening/test_properties_orders.py",  # 21 s
    "hardening/test_connector_text_escaping.py",
    "scripts/test_audit.py",  # bandit over the code, in a process of its own
    "hardening/test_bad_numbers.py",
    "hardening/test_admin_escaping.py",
    "hardening/test_properties_inventory.py",  # 9 s
    "integrations/test_encryption.py",  # migrations back and forth
    "config/test_settings.py",  # settings read by processes of their own
)


@pytest.hookimpl(trylast=True, specname="pytest_collection_modifyitems")
def pytest_collection_modifyitems_longest_first(items):
    """
    The LONGEST_FIRST files' tests first, without leaving the order pytest-django sorted the tests into
    (database tests, then transactional ones, then those without a database): a transactional test empties
    the database the others expect migrated, so each group stays whole and in place.
    """
    rank = {TESTS / place: n for n, place in enumerate(LONGEST_FIRST)}
    position = {item: n for n, item in enumerate(items)}
    items.sort(key=lambda item: (_django_group(item), rank.get(item.path, len(rank)), position[item]))


def _django_group(item) -> int:
    """pytest-django's order for a test function: 0 database, 1 transactional database, 2 no database."""
    marker = item.get_closest_marker("django_db")
    fixtures = getattr(item, "fixturenames", ())
    if (marker and (marker.kwargs.get("transaction") or marker.kwargs.get("reset_sequences"))) or (
        "transactional_db" in fixtures or "live_server" in fixtures
    ):
        return 1
    return 0 if marker or "db" in fixtures else 2


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """
    A serialized_rollback test loads the database's first contents back, content types included, by primary
    key. A transactional test without it ends with a flush that re-creates the content types under new ids,
    and loading the first ones beside them breaks their unique names ("duplicate key ... (admin, logentry)")
    — whether it happens depends on which test ran before on this process, which pytest-xdist changes. So
    before such a test loads, the content types a flush re-created (the names the first contents hold under
    another id) go, with their permissions; the load puts the first ones back.
    """
    marker = request.node.get_closest_marker("django_db")
    if fixturedef.argname == "_django_db_helper" and marker and marker.kwargs.get("serialized_rollback"):
        request.getfixturevalue("django_db_setup")
        with request.getfixturevalue("django_db_blocker").unblock():
            _drop_recreated_content_types()
    return (yield)


def _drop_recreated_content_types() -> None:
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection

    contents = getattr(connection, "_test_serialized_contents", None)
    if not contents:
        return
    first = {
        (row["fields"]["app_label"], row["fields"]["model"]): row["pk"]
        for row in json.loads(contents)
        if row["model"] == "contenttypes.contenttype"
    }
    recreated = [
        pk
        for pk, app_label, model in ContentType.objects.values_list("pk", "app_label", "model")
        if first.get((app_label, model), pk) != pk
    ]
    if recreated:
        ContentType.objects.filter(pk__in=recreated).delete()
        ContentType.objects.clear_cache()


@pytest.fixture(autouse=True)
def _catalog_after_flush(request):
    """
    Transactional tests (threads, live server) run on a database that earlier transactional tests flushed,
    which also removes the rows data migrations installed: put the built-in catalog back for them. The
    flush recreates content types under new ids too, so the process-wide ContentType cache is dropped.
    """
    marker = request.node.get_closest_marker("django_db")
    transactional = (marker is not None and marker.kwargs.get("transaction")) or any(
        name in request.fixturenames for name in ("transactional_db", "live_server")
    )
    if transactional:
        request.getfixturevalue("transactional_db")
        from django.contrib.contenttypes.models import ContentType

        from integrations.catalog import install_builtin_connectors

        ContentType.objects.clear_cache()
        install_builtin_connectors()


@pytest.fixture(autouse=True)
def _anonymous_rate_limit_out_of_the_way():
    """
    The suite makes hundreds of keyless and refused-key API requests from one address, 127.0.0.1, on a cache
    no test clears: under the default per-address limit (API_ANON_RATE_LIMIT) they would start answering 429
    depending on what ran before in the same minute. tests/hardening/test_anon_rate_limit.py tests the limit
    (its own `settings` override wins over this one). Not through pytest-django's `settings` fixture: a test
    may take a parameter of that name.
    """
    with override_settings(API_ANON_RATE_LIMIT="100000/min"):
        yield
