"""/api/ and anything else under /api outside /api/v1/ answer the API's JSON 404, as /api/v1/… does — also
with DEBUG on (`make run`), where Django would otherwise show its HTML "Page not found"."""

import pytest
from django.test import Client

from tests.api.helpers import assert_error


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
@pytest.mark.parametrize("path", ["/api/", "/api", "/api/v2/orders"])
def test_api_paths_outside_v1_answer_json_not_found(db, settings, debug, path):
    settings.DEBUG = debug

    for method in ("get", "post"):
        response = getattr(Client(enforce_csrf_checks=True), method)(path)

        assert response["Content-Type"].startswith("application/json"), response.content[:200]
        assert assert_error(response, 404, "not_found") == {}


def test_other_unknown_paths_keep_djangos_page(db, settings):
    settings.DEBUG = True

    response = Client().get("/apiary/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
