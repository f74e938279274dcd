"""
`Idempotency-Key` on POST, with the IETF draft's semantics: the same key and body replay the first
response (kept IDEMPOTENCY_TTL_HOURS), another body answers 422, a request still running answers 409.

The claim is a row inserted under a unique constraint (API key, Idempotency-Key) in PostgreSQL, so two
concurrent requests can never both execute, and the stored response outlives any cache eviction.
"""

import hashlib
import json
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from tokens.models import IdempotencyRecord

from .errors import ApiError

HEADER = "HTTP_IDEMPOTENCY_KEY"
# A claim older than this is from a request that died (worker killed); a retry may take it over.
STALE_AFTER = timedelta(minutes=5)
REPLAYED_HEADERS = ("Location", "Content-Type")


class Replay(Exception):
    def __init__(self, response):
        self.response = response


def fingerprint(request) -> str:
    body = json.dumps(request.data, sort_keys=True, cls=JSONEncoder, separators=(",", ":"))
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def begin(request):
    """Claim the key for this request, or raise Replay / ApiError. No-op without the header."""
    value = request.META.get(HEADER)
    if request.method != "POST" or not value or request.auth is None:
        return
    if len(value) > 255:
        raise ApiError("validation_error", "Idempotency-Key is longer than 255 characters.")
    now, digest = timezone.now(), fingerprint(request)
    ttl = timedelta(hours=settings.IDEMPOTENCY_TTL_HOURS)
    for _ in range(2):
        try:
            with transaction.atomic():
                request._idempotency = IdempotencyRecord.objects.create(
                    api_key=request.auth, key=value, fingerprint=digest, expires_at=now + ttl
                )
            return
        except IntegrityError:
            record = IdempotencyRecord.objects.filter(api_key=request.auth, key=value).first()
            if record is None:
                continue  # pruned meanwhile: claim again
        if record.expires_at <= now:
            IdempotencyRecord.objects.filter(pk=record.pk, expires_at__lte=now).delete()
            continue
        if record.fingerprint != digest:
            raise ApiError(
                "idempotency_conflict", "This Idempotency-Key was used with a different request body."
            )
        if record.status_code is None:
            taken = IdempotencyRecord.objects.filter(
                pk=record.pk, status_code__isnull=True, created_at__lte=now - STALE_AFTER
            ).update(created_at=now, expires_at=now + ttl)
            if taken:
                request._idempotency = record
                return
            raise ApiError(
                "idempotency_in_progress", "A request with this Idempotency-Key is still being processed."
            )
        response = Response(record.response_body, status=record.status_code, headers=record.response_headers)
        response["Idempotent-Replayed"] = "true"
        raise Replay(response)
    raise ApiError("idempotency_in_progress", "A request with this Idempotency-Key is still being processed.")


def finish(request, response):
    """Store the response of a claimed request; a server error releases the claim so a retry runs again."""
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
