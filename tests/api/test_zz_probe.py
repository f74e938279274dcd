from django.test import Client
def test_probe(api_client, integration_key):
    c = api_client(integration_key)
    for m, p in [("delete", "/api/v1/me"), ("post", "/api/v1/events"), ("get", "/api/v1/integration/connect"), ("put", "/api/v1/integration")]:
        r = getattr(c, m)(p)
        print(m, p, r.status_code, r.content[:200])
    csrf = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {integration_key.plaintext}")
    for p in ["/api/v1/nope", "/api/v1/integration/connect"]:
        r = csrf.post(p, "{}", content_type="application/json")
        print("csrf post", p, r.status_code, r.content[:200])
    r = c.get("/api/v1/schema/", {"format": "json"})
    print(r.status_code, r["Content-Type"], r.content[:300])
