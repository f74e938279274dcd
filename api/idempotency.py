"""
`Idempotency-Key` on POST, with the IETF draft's semantics: the same key and body replay the first
response (kept IDEMPOTENCY_TTL_HOURS), another body answers 422, a request still running answers 409.

The claim is a row inserted under a unique constraint (key owner, Idempotency-Key) in PostgreSQL, so two
concurrent requests can never both execute, and the stored response outlives any cache eviction. Keys are
the owner's — an integration's, an organization's own keys', the platform's — so a retry sent with the key
that replaced a rotated one replays the first answer; another owner's keys never meet them. Nothing
here uses the cache: with Redis down the guarantee is the same.

While a request runs it also holds a session-level advisory lock on its key. That is how a retry tells a
claim whose request is still running (409) from one whose request died — a killed web worker, or a
PostgreSQL restart that cut the connection before the response was stored: the lock went with the session,
and the retry takes the claim over at once instead of waiting STALE_AFTER. (SQLite, for a first run, has
no advisory locks and keeps the STALE_AFTER rule.)

Records past their retention are pruned by `prune` (beat: api.tasks.prune_idempotency_records_task).
"""

import hashlib
import json
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from api.errors import ApiError
from api.models import IdempotencyRecord, key_owner

HEADER = "HTTP_IDEMPOTENCY_KEY"
# Without advisory locks (SQLite): a claim older than this is from a request that died; a retry takes it over.
STALE_AFTER = timedelta(minutes=5)
REPLAYED_HEADERS = ("Location", "Content-Type")


class Replay(Exception):
    def __init__(self, response):
        self.response = response


IN_PROGRESS = "A request with this Idempotency-Key is still being processed; retry in a moment."
RETRY_AFTER = {"Retry-After": "1"}
# What a reused key's request differs in, said so: another endpoint is a key shared by two operations.
DIFFERS = {
    "endpoint": "This Idempotency-Key was used with another endpoint ({endpoint} is not the one it was first "
    "sent to): a key names one operation; send a new key for this one.",
    "body": "This Idempotency-Key was used with a different request body at {endpoint}: a retry sends the "
    "same body; another operation needs a new key.",
}
# Said as well when the first request came with another of the owner's API keys (one rotated since, say).
OTHER_KEY = " It was first sent with another API key of this {owner} ({key})."


def _body(request) -> str:
    return json.dumps(request.data, sort_keys=True, cls=JSONEncoder, separators=(",", ":"))


def fingerprint(request) -> str:
    """The endpoint's digest and the body's (32 hex digits each), so that a mismatch says which differs."""
    endpoint = hashlib.sha256(f"{request.method} {request.path}".encode()).hexdigest()[:32]
    return endpoint + hashlib.sha256(_body(request).encode()).hexdigest()[:32]


def legacy_fingerprint(request) -> str:
    """The fingerprint of records stored before issue 17 (one digest of both), read until they expire."""
    return hashlib.sha256(f"{request.method} {request.path}\n{_body(request)}".encode()).hexdigest()


def in_progress() -> ApiError:
    return ApiError("idempotency_in_progress", IN_PROGRESS, headers=RETRY_AFTER)


def mismatch(request, record: IdempotencyRecord, digest: str) -> ApiError:
    """
    The 422 for a reused key whose record was stored for another request, naming what differs: the endpoint
    or the body, and the API key when the first request came with another of the owner's keys.
    """
    differs = ["body" if record.fingerprint[:32] == digest[:32] else "endpoint"]
    message = DIFFERS[differs[0]].format(endpoint=f"{request.method} {request.path}")
    if record.api_key_id != request.auth.pk:
        differs.append("api_key")
        owner = record.owner.partition(":")[0] or "platform"
        message += OTHER_KEY.format(owner=owner, key=record.api_key.display)
    return ApiError("idempotency_conflict", message, details={"differs": differs})


def lock_key(owner: str, value: str) -> int:
    """The advisory lock (a signed 64-bit number) a request holds on its owner's Idempotency-Key while it runs."""
    digest = hashlib.sha256(f"idempotency:{owner}:{value}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _advisory(function: str, lock: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s)", [lock])
        return cursor.fetchone()[0]


def release(request) -> None:
    """Give up the key's lock, if this request holds it (done in finish, or when begin gives up)."""
    lock = request.__dict__.pop("_idempotency_lock", None)
    if lock is not None:
        _advisory("pg_advisory_unlock", lock)


def begin(request):
    """Claim the key for this request, or raise Replay / ApiError. No-op without the header."""
    value = request.META.get(HEADER)
    if request.method != "POST" or not value or request.auth is None:
        return
    if len(value) > 255:
        raise ApiError("validation_error", "Idempotency-Key is longer than 255 characters.")
    locks = connection.vendor == "postgresql"
    if locks:
        lock = lock_key(key_owner(request.auth), value)
        if not _advisory("pg_try_advisory_lock", lock):
            raise in_progress()
        request._idempotency_lock = lock
    try:
        _claim(request, value, claimer_gone=locks)
    except BaseException:
        release(request)
        raise


def _claim(request, value, *, claimer_gone: bool):
    """
    Insert the claim, or decide on the record already there. `claimer_gone`: this request holds the key's
    lock, so no other request with this key is running — an unfinished claim is one whose request died.
    """
    now, digest, owner = timezone.now(), fingerprint(request), key_owner(request.auth)
    ttl = timedelta(hours=settings.IDEMPOTENCY_TTL_HOURS)
    for _ in range(2):
        try:
            with transaction.atomic():
                request._idempotency = IdempotencyRecord.objects.create(
                    api_key=request.auth, owner=owner, key=value, fingerprint=digest, expires_at=now + ttl
                )
            return
        except IntegrityError:
            record = (
                IdempotencyRecord.objects.filter(owner=owner, key=value).select_related("api_key").first()
            )
            if record is None:
                continue  # pruned meanwhile: claim again
        if record.expires_at <= now:
            IdempotencyRecord.objects.filter(pk=record.pk, expires_at__lte=now).delete()
            continue
        if record.fingerprint != digest and record.fingerprint != legacy_fingerprint(request):
            raise mismatch(request, record, digest)
        if record.status_code is None:
            died = Q(created_at__lte=now - STALE_AFTER) if not claimer_gone else Q()
            taken = IdempotencyRecord.objects.filter(died, pk=record.pk, status_code__isnull=True).update(
                created_at=now, expires_at=now + ttl
            )
            if taken:
                request._idempotency = record
                return
            raise in_progress()
        response = Response(record.response_body, status=record.status_code, headers=record.response_headers)
        response["Idempotent-Replayed"] = "true"
        raise Replay(response)
    raise in_progress()


def finish(request, response):
    """Store the response of a claimed request; a server error releases the claim so a retry runs again."""
    try:
        _store(request, response)
    finally:
        release(request)


def _store(request, response):
    record = getattr(request, "_idempotency", None)
    if record is None:
        return
    request._idempotency = None
    if response.status_code >= 500:
        IdempotencyRecord.objects.filter(pk=record.pk).delete()
        return
    body = json.loads(json.dumps(response.data, cls=JSONEncoder)) if response.data is not None else None
    headers = {h: response[h] for h in REPLAYED_HEADERS if response.has_header(h) and h != "Content-Type"}
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        status_code=response.status_code, response_body=body, response_headers=headers
    )


def prune() -> int:
    """Drop stored responses past their retention; how many went."""
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted
