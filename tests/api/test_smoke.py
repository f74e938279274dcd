def test_me_with_integration_key(api_client, integration_key, integration):
    response = api_client(integration_key).get("/api/v1/me")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["kind"] == "integration"
    assert body["integration"]["id"] == str(integration.pk)
    assert "orders:read" in body["grants"]
    assert response["RateLimit-Limit"] == "1200"


def test_no_key_is_401(api_client):
    response = api_client().get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_key"


def test_unknown_route(api_client, integration_key):
    response = api_client(integration_key).get("/api/v1/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_events(api_client, integration_key, other_integration):
    response = api_client(integration_key).get("/api/v1/events")
    assert response.status_code == 200, response.content
    assert response.json()["results"]
    assert all(e["integration"]["name"] == "Acme web shop" for e in response.json()["results"])
