import pytest
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
