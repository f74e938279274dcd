"""`Idempotency-Key` on POST (docs/connectors/contract.md, "Conventions"; the IETF draft): replay, 422 on
another body, 409 while running."""

import threading
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from api import idempotency
from api.models import IdempotencyRecord, key_owner
from api.tasks import prune_idempotency_records_task
from integrations import lifecycle
from integrations.choices import EventKind
from integrations.models import Integration, IntegrationEvent
from tests.api.helpers import assert_error
from tokens.choices import KeyKind

CONNECT = "/api/v1/integration/connect"
ERROR = "/api/v1/integration/error"


def status_changes(integration) -> int:
    return IntegrationEvent.objects.filter(integration=integration, kind=EventKind.STATUS_CHANGED).count()


@pytest.fixture
def calls(monkeypatch):
    """Counts how often the views really ran the handshake and the error report."""
    counted = {"handshake": 0, "report_error": 0}
    for name in counted:
        real = getattr(lifecycle, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            counted[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(lifecycle, name, spy)
    return counted


def post(client, path, body=None, key="key-1"):
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_same_key_and_body_replays_the_first_response_of_connect(
    api_client, integration_key, integration, calls
):
    client = api_client(integration_key)
    before = status_changes(integration)

    first = post(client, CONNECT)
    # Even were the integration back in connecting, a replay must not run the handshake again.
    Integration.objects.filter(pk=integration.pk).update(status="connecting")
    again = post(client, CONNECT)

    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json() == again.json() == {"status": "connected"}
    assert not first.has_header("Idempotent-Replayed")
    assert again["Idempotent-Replayed"] == "true"
    assert again["Content-Type"] == first["Content-Type"]
    assert calls["handshake"] == 1
    assert status_changes(integration) == before + 1


def test_same_key_and_body_replays_the_error_report(api_client, integration_key, integration, calls):
    client = api_client(integration_key)
    before = status_changes(integration)

    responses = [post(client, ERROR, {"message": "token rejected"}) for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert all(r.json() == {"status": "error"} for r in responses)
    assert [r.get("Idempotent-Replayed") for r in responses] == [None, "true", "true"]
    assert calls["report_error"] == 1
    assert status_changes(integration) == before + 1


def test_an_error_answer_is_replayed_too(api_client, integration_key, calls):
    client = api_client(integration_key)

    first = post(client, ERROR, {"message": ""})
    again = post(client, ERROR, {"message": ""})

    assert_error(first, 400, "validation_error")
    assert_error(again, 400, "validation_error")
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"


def test_same_key_with_another_body_is_422(api_client, integration_key, integration, calls):
    client = api_client(integration_key)
    post(client, ERROR, {"message": "first"})

    response = post(client, ERROR, {"message": "second"})

    assert_error(response, 422, "idempotency_conflict")
    assert calls["report_error"] == 1
    assert Integration.objects.get(pk=integration.pk).last_error == "first"


def test_same_key_on_another_endpoint_is_422(api_client, integration_key, calls):
    client = api_client(integration_key)
    post(client, CONNECT)

    assert_error(post(client, ERROR, {"message": "x"}), 422, "idempotency_conflict")
    assert calls["report_error"] == 0


def test_body_key_order_and_whitespace_do_not_matter(api_client, integration_key, calls):
    client = api_client(integration_key)
    first = client.post(ERROR, '{"message": "x"}', content_type="application/json", HTTP_IDEMPOTENCY_KEY="k")
    again = client.post(ERROR, '{ "message":"x" }', content_type="application/json", HTTP_IDEMPOTENCY_KEY="k")

    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert calls["report_error"] == 1


def claim(api_key, value, path, body, *, age=timedelta(0), status_code=None, expires_in=timedelta(hours=24)):
    """An IdempotencyRecord as `begin` would have left it, `age` ago."""
    request = SimpleNamespace(method="POST", path=path, data=body)
    now = timezone.now()
    return IdempotencyRecord.objects.create(
        api_key=api_key,
        key=value,
        fingerprint=idempotency.fingerprint(request),
        status_code=status_code,
        response_body={"status": "stored"} if status_code else None,
        created_at=now - age,
        expires_at=now - age + expires_in,
    )


@pytest.fixture
def running_request(db):
    """`running_request(api_key, value)`: another session holds the key's lock, as a request still running does."""
    from django.db import connections

    sessions = []

    def hold(api_key, value):
        other = connections.create_connection("default")
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [idempotency.lock_key(key_owner(api_key), value)])
        sessions.append(other)

    yield hold
    for other in sessions:
        other.close()  # its session ends, and its lock with it


def test_a_request_still_in_progress_is_409(api_client, integration_key, calls, running_request):
    claim(integration_key.key, "busy", ERROR, {"message": "x"})
    running_request(integration_key.key, "busy")

    response = post(api_client(integration_key), ERROR, {"message": "x"}, key="busy")

    assert_error(response, 409, "idempotency_in_progress")
    assert calls["report_error"] == 0


def test_a_request_still_running_is_409_however_old_its_claim(
    api_client, integration_key, calls, running_request
):
    claim(
        integration_key.key,
        "slow",
        ERROR,
        {"message": "x"},
        age=idempotency.STALE_AFTER + timedelta(minutes=1),
    )
    running_request(integration_key.key, "slow")

    assert_error(
        post(api_client(integration_key), ERROR, {"message": "x"}, key="slow"), 409, "idempotency_in_progress"
    )
    assert calls["report_error"] == 0


def test_a_claim_whose_request_died_is_taken_over_at_once(api_client, integration_key, calls):
    # A fresh claim nobody holds the lock of: its request died (worker killed, database restarted) before
    # storing an answer, and the retry must not wait STALE_AFTER for it.
    record = claim(integration_key.key, "cut-off", ERROR, {"message": "x"})
    client = api_client(integration_key)

    response = post(client, ERROR, {"message": "x"}, key="cut-off")

    assert response.status_code == 200, response.content
    assert not response.has_header("Idempotent-Replayed")
    assert calls["report_error"] == 1
    record.refresh_from_db()
    assert (record.status_code, record.response_body) == (200, {"status": "error"})
    assert post(client, ERROR, {"message": "x"}, key="cut-off")["Idempotent-Replayed"] == "true"
    assert calls["report_error"] == 1


def test_the_key_lock_is_released_after_each_answer(api_client, integration_key, calls):
    client = api_client(integration_key)
    post(client, ERROR, {"message": "x"}, key="released")  # stored
    post(client, ERROR, {"message": "x"}, key="released")  # replayed
    post(client, ERROR, {"message": "y"}, key="released")  # 422

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
        assert cursor.fetchone()[0] == 0


def test_a_stale_claim_is_taken_over(api_client, integration_key, integration, calls):
    record = claim(
        integration_key.key,
        "died",
        ERROR,
        {"message": "x"},
        age=idempotency.STALE_AFTER + timedelta(seconds=1),
    )
    client = api_client(integration_key)

    response = post(client, ERROR, {"message": "x"}, key="died")

    assert response.status_code == 200, response.content
    assert not response.has_header("Idempotent-Replayed")
    assert calls["report_error"] == 1
    record.refresh_from_db()
    assert record.status_code == 200
    assert record.response_body == {"status": "error"}
    # ...and from now on it replays.
    assert post(client, ERROR, {"message": "x"}, key="died")["Idempotent-Replayed"] == "true"
    assert calls["report_error"] == 1


def test_an_expired_record_runs_the_request_again(api_client, integration_key, calls):
    claim(integration_key.key, "old", CONNECT, {}, age=timedelta(hours=25), status_code=200)

    response = post(api_client(integration_key), CONNECT, key="old")

    assert response.json() == {"status": "connected"}
    assert not response.has_header("Idempotent-Replayed")
    assert calls["handshake"] == 1


def test_responses_are_kept_for_at_least_24_hours(api_client, integration_key, settings):
    assert settings.IDEMPOTENCY_TTL_HOURS >= 24
    post(api_client(integration_key), CONNECT, key="kept")

    record = IdempotencyRecord.objects.get(api_key=integration_key.key, key="kept")

    # (created_at is stamped a moment after the expiry is computed)
    assert record.expires_at - record.created_at >= timedelta(hours=24) - timedelta(seconds=1)


def test_keys_are_the_owners_not_one_api_keys(api_client, integration_key, issue_key, integration, calls):
    # Two API keys of one integration are one sender: the same request sent with the second replays.
    second = issue_key(kind=KeyKind.INTEGRATION, name="second", integration=integration)
    first = post(api_client(integration_key), ERROR, {"message": "from the first key"}, key="shared")

    response = post(api_client(second), ERROR, {"message": "from the first key"}, key="shared")

    assert response.status_code == 200, response.content
    assert response["Idempotent-Replayed"] == "true" and response.json() == first.json()
    assert calls["report_error"] == 1


def test_without_the_header_every_post_runs(api_client, integration_key, calls):
    client = api_client(integration_key)
    client.post(ERROR, {"message": "a"}, format="json")
    client.post(ERROR, {"message": "a"}, format="json")

    assert calls["report_error"] == 2
    assert not IdempotencyRecord.objects.exists()


def test_a_server_error_releases_the_claim(api_client, integration_key, monkeypatch):
    real = lifecycle.handshake
    monkeypatch.setattr(lifecycle, "handshake", lambda *a, **k: 1 / 0)
    client = api_client(integration_key)
    client.raise_request_exception = False
    assert_error(post(client, CONNECT, key="retry-me"), 500, "internal_error")

    monkeypatch.setattr(lifecycle, "handshake", real)
    response = post(client, CONNECT, key="retry-me")

    assert response.json() == {"status": "connected"}
    assert not response.has_header("Idempotent-Replayed")


def test_an_overlong_key_is_400(api_client, integration_key):
    response = post(api_client(integration_key), CONNECT, key="k" * 256)
    assert_error(response, 400, "validation_error")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_concurrent_requests_with_one_key_execute_once(integration_key, integration, monkeypatch):
    real = lifecycle.report_error
    executions = []

    def slow_report_error(*args, **kwargs):
        executions.append(threading.get_ident())
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "report_error", slow_report_error)
    before = status_changes(integration)
    barrier = threading.Barrier(2)
    responses = [None, None]

    def worker(index):
        client = Client(HTTP_AUTHORIZATION=f"Bearer {integration_key.plaintext}")
        try:
            barrier.wait(timeout=5)
            responses[index] = client.post(
                ERROR,
                {"message": "both at once"},
                content_type="application/json",
                HTTP_IDEMPOTENCY_KEY="race",
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert all(r is not None for r in responses), "a worker thread failed"
    assert len(executions) == 1
    assert status_changes(integration) == before + 1
    statuses = sorted(r.status_code for r in responses)
    assert statuses in ([200, 200], [200, 409]), [r.content for r in responses]
    winner = next(r for r in responses if r.status_code == 200 and not r.has_header("Idempotent-Replayed"))
    assert winner.json() == {"status": "error"}
    loser = next(r for r in responses if r is not winner)
    if loser.status_code == 409:
        assert_error(loser, 409, "idempotency_in_progress")
    else:
        assert loser["Idempotent-Replayed"] == "true"


def test_records_past_their_retention_are_pruned(integration_key):
    claim(integration_key.key, "old", CONNECT, {}, age=timedelta(hours=25), status_code=200)
    kept = claim(integration_key.key, "new", CONNECT, {}, status_code=200)

    assert prune_idempotency_records_task() == 1

    assert list(IdempotencyRecord.objects.all()) == [kept]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_records_kept_before_the_model_moved_to_the_api_app_are_read_after(integration_key):
    # The old head: the model in tokens, the api app without migrations, the pruning task named tokens'.
    tokens_head = ("tokens", "0005_revoke_org_keys_of_non_admins")
    executor = MigrationExecutor(connection)
    executor.migrate([tokens_head, ("api", None)])
    try:
        Old = executor.loader.project_state([tokens_head]).apps.get_model("tokens", "IdempotencyRecord")
        pk = Old.objects.create(
            api_key_id=integration_key.key.pk, key="before", fingerprint="f", status_code=201,
            response_body={"id": "7", "secret": "whsec_b2xkLWhvb2s="}, expires_at=timezone.now(),
        ).pk  # fmt: skip
        assert PeriodicTask.objects.filter(task="tokens.tasks.prune_idempotency_records_task").exists()

        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

        record = IdempotencyRecord.objects.get(pk=pk)
        assert (record.key, record.response_body) == ("before", {"id": "7", "secret": "whsec_b2xkLWhvb2s="})
        tasks = set(
            PeriodicTask.objects.filter(task__contains="prune_idempotency").values_list("task", flat=True)
        )
        assert tasks == {"api.tasks.prune_idempotency_records_task"}
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_migration_gives_kept_records_their_owner_and_one_record_per_owner_and_key(
    integration_key, issue_key, integration, org_key
):
    before = ("api", "0002_prune_task_from_tokens")
    executor = MigrationExecutor(connection)
    executor.migrate([before])
    try:
        Old = executor.loader.project_state([before]).apps.get_model("api", "IdempotencyRecord")
        second = issue_key(kind=KeyKind.INTEGRATION, name="second", integration=integration)
        now = timezone.now()
        made = {
            (api_key.pk, value): Old.objects.create(
                api_key_id=api_key.pk, key=value, fingerprint="f", status_code=201, expires_at=now
            ).pk
            for api_key, value in [
                (integration_key.key, "shared"),
                (second.key, "shared"),  # the same owner's other key: the newer record is kept
                (integration_key.key, "own"),
                (org_key.key, "shared"),  # another owner
            ]
        }

        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

        kept = set(IdempotencyRecord.objects.values_list("pk", "owner", "key"))
        assert kept == {
            (made[(second.key.pk, "shared")], f"integration:{integration.pk}", "shared"),
            (made[(integration_key.key.pk, "own")], f"integration:{integration.pk}", "own"),
            (made[(org_key.key.pk, "shared")], f"organization:{org_key.key.organization_id}", "shared"),
        }
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
