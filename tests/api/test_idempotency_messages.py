"""
A reused Idempotency-Key says what differs (issue 17): the endpoint or the body. A request still running
answers 409 `idempotency_in_progress` with `Retry-After`, as every answer a client should retry does.
"""

from datetime import timedelta
from types import SimpleNamespace

from django.db import connections
from django.utils import timezone

from api import idempotency
from api.models import IdempotencyRecord, key_owner
from integrations.models import Integration
from tokens import issuing as key_services

CONNECT = "/api/v1/integration/connect"
ERROR = "/api/v1/integration/error"


def post(client, path, body=None, key="key-1"):
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def error_of(response, status, code) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code, error
    return error


def test_a_key_reused_on_another_endpoint_says_so(api_client, integration_key, integration):
    client = api_client(integration_key)
    post(client, CONNECT)

    error = error_of(post(client, ERROR, {"message": "x"}), 422, "idempotency_conflict")

    assert "another endpoint" in error["message"] and "POST /api/v1/integration/error" in error["message"]
    assert "body" not in error["message"]
    assert error["details"] == {"differs": ["endpoint"]}
    assert Integration.objects.get(pk=integration.pk).last_error == ""


def test_a_key_reused_with_another_body_says_so(api_client, integration_key, integration):
    client = api_client(integration_key)
    post(client, ERROR, {"message": "first"})

    error = error_of(post(client, ERROR, {"message": "second"}), 422, "idempotency_conflict")

    assert (
        "different request body" in error["message"] and "endpoint" not in error["message"].split(" at ")[0]
    )
    assert error["details"] == {"differs": ["body"]}
    assert Integration.objects.get(pk=integration.pk).last_error == "first"


def test_a_record_stored_before_the_fingerprint_changed_still_replays(api_client, integration_key):
    request = SimpleNamespace(method="POST", path=ERROR, data={"message": "x"})
    now = timezone.now()
    IdempotencyRecord.objects.create(
        api_key=integration_key.key,
        key="old",
        fingerprint=idempotency.legacy_fingerprint(request),
        status_code=200,
        response_body={"status": "stored"},
        created_at=now,
        expires_at=now + timedelta(hours=1),
    )

    response = post(api_client(integration_key), ERROR, {"message": "x"}, key="old")

    assert response.status_code == 200 and response["Idempotent-Replayed"] == "true"
    assert response.json() == {"status": "stored"}


def test_in_progress_carries_retry_after(api_client, integration_key, integration):
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:  # another session holds the key, as a request still running does
            cursor.execute(
                "SELECT pg_advisory_lock(%s)", [idempotency.lock_key(key_owner(integration_key.key), "busy")]
            )

        response = post(api_client(integration_key), ERROR, {"message": "x"}, key="busy")
    finally:
        other.close()

    error_of(response, 409, "idempotency_in_progress")
    assert response["Retry-After"] == "1"
    assert Integration.objects.get(pk=integration.pk).last_error == ""


# --- keys are their owner's, not one API key's ------------------------------------------------------------


def test_a_retry_with_the_key_that_replaced_a_rotated_one_replays(api_client, integration_key, integration):
    first = post(api_client(integration_key), ERROR, {"message": "once"}, key="rotated")
    successor = key_services.rotate(integration_key.key)

    again = post(api_client(successor), ERROR, {"message": "once"}, key="rotated")

    assert again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert IdempotencyRecord.objects.filter(key="rotated").count() == 1


def test_a_key_reused_with_another_of_the_owners_api_keys_names_it(api_client, integration_key, integration):
    post(api_client(integration_key), ERROR, {"message": "first"}, key="shared")
    successor = key_services.rotate(integration_key.key)

    error = error_of(
        post(api_client(successor), ERROR, {"message": "second"}, key="shared"), 422, "idempotency_conflict"
    )

    assert error["details"] == {"differs": ["body", "api_key"]}
    assert f"another API key of this integration ({integration_key.key.display})" in error["message"]
    assert Integration.objects.get(pk=integration.pk).last_error == "first"


def test_another_integrations_keys_never_meet_this_ones(
    api_client, integration_key, integration, other_integration_key, other_integration
):
    post(api_client(integration_key), ERROR, {"message": "mine"}, key="same-value")

    theirs = post(api_client(other_integration_key), ERROR, {"message": "theirs"}, key="same-value")

    assert theirs.status_code == 200 and not theirs.has_header("Idempotent-Replayed")
    assert Integration.objects.get(pk=other_integration.pk).last_error == "theirs"
    assert Integration.objects.get(pk=integration.pk).last_error == "mine"
