"""
Manifest connectors (docs/connectors/contract.md, "Manifest connectors"; examples/MANIFEST_PROTOCOL.md): the
hub POSTs signed JSON to the endpoints a connector's manifest names, under the integration's `base_url`. This
is the generic part — the signing secret, one call, the health check, and the per-integration claims and
cursors the flows run on. The flows themselves (orders pull, dispatch, inventory push) live with the apps that
own their data.
"""

import json
import logging
import secrets
from datetime import timedelta

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q
from django.db.models.fields.json import KeyTransform
from django.utils import timezone

from core import outbound
from core.outbound import Outcome
from core.signing import new_secret

from .audit import record_event
from .choices import EventKind, IntegrationStatus, Workflow
from .connector_settings import full_settings
from .lifecycle import note_outbound, raise_integration_error, resolve_integration_error, transition
from .models import Integration
from .workflows import may_send

logger = logging.getLogger(__name__)

Status = IntegrationStatus
ENDPOINTS = ("health", "orders", "dispatch", "inventory", "prices")
# Seconds a flow's claim on an integration lasts: longer than a run's calls can take (pages × timeouts), so
# only a worker that died leaves one behind, and that one frees itself.
LEASE_SECONDS = 15 * 60


class CallRefused(Exception):
    """A call that cannot be made: integration disabled, flow off, no such endpoint, or no base URL."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


# --- the signing secret ------------------------------------------------------------------------------


def signing_secret(integration: Integration) -> str:
    """The whsec_ secret the hub signs this integration's manifest calls with; made on first use."""
    if not integration.signing_secret:
        secret = new_secret()
        # Only if still empty: two first uses at once agree on one secret.
        Integration.objects.filter(pk=integration.pk, signing_secret="").update(signing_secret=secret)
        integration.refresh_from_db(fields=["signing_secret"])
    return integration.signing_secret


def rotate_signing_secret(integration: Integration, *, actor=None) -> str:
    """A new signing secret (returned to be shown once); the old one stops verifying at once."""
    secret = new_secret()
    with transaction.atomic():
        Integration.objects.filter(pk=integration.pk).update(signing_secret=secret)
        integration.signing_secret = secret
        record_event(integration, EventKind.CONFIG_CHANGED, "Signing secret replaced.", actor=actor)
    return secret


# --- one call ------------------------------------------------------------------------------------------


def endpoint_url(integration: Integration, endpoint: str) -> str:
    """The URL of a manifest endpoint for this integration; CallRefused when there is none."""
    path = (integration.connector.manifest or {}).get(endpoint)
    if endpoint not in ENDPOINTS or not path:
        raise CallRefused(
            f"The connector {integration.connector.name!r} publishes no {endpoint!r} endpoint.", "no_endpoint"
        )
    base = full_settings(integration).get("base_url")
    if not base:
        raise CallRefused(f"{integration.name!r} has no base_url setting.", "no_base_url")
    return f"{str(base).rstrip('/')}/{str(path).lstrip('/')}"


def call(integration: Integration, endpoint: str, payload, *, flow=None, check=None, actor=None) -> Outcome:
    """
    POST `payload` to a manifest endpoint: signed with the integration's signing secret, with its auth
    token, recorded as one OUTBOUND_CALL event and counted towards the failure threshold. `check(data)`
    may return a message that makes a well-formed answer a failure (e.g. fewer accepted than sent).
    Raises CallRefused, before anything is sent, for a disabled integration or flow or a missing endpoint.
    """
    outcome = _send(integration, endpoint, payload, flow=flow, check=check, actor=actor)
    note_outbound(integration, ok=outcome.ok, reason=f"{endpoint}: {outcome.summary}", what="call")
    return outcome


def _send(integration, endpoint, payload, *, flow=None, check=None, actor=None) -> Outcome:
    if integration.status == Status.DISABLED:
        raise CallRefused(f"{integration.name!r} is disabled: no calls go out.", "disabled")
    if flow is not None and not may_send(integration, flow):
        raise CallRefused(
            f"The “{Workflow(flow).label}” flow of {integration.name!r} is switched off.", "workflow_disabled"
        )
    url = endpoint_url(integration, endpoint)
    body = json.dumps(
        payload, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
    token = full_settings(integration).get("auth_token")
    outcome = outbound.post_signed(
        url,
        signing_secret(integration),
        "msg_" + secrets.token_hex(12),
        body,
        extra_headers={"authorization": f"Bearer {token}"} if token else None,
        want_json=True,
    )
    if outcome.ok and not isinstance(outcome.data, dict):
        outcome.ok, outcome.error = False, "The answer is not a JSON object."
    if outcome.ok and check is not None:
        problem = check(outcome.data)
        if problem:
            outcome.ok, outcome.error = False, problem[:500]
    _record(integration, endpoint, outcome, actor=actor)
    return outcome


def _record(integration, endpoint, outcome: Outcome, *, actor=None):
    # The path, not the URL: a base URL may carry credentials. Never the token (post_signed masks it).
    path = (integration.connector.manifest or {}).get(endpoint, "")
    result = "succeeded" if outcome.ok else f"failed: {outcome.summary}"
    record_event(
        integration,
        EventKind.OUTBOUND_CALL,
        f"POST {endpoint} ({path}) {result} [{outcome.status_code or '-'}, {outcome.duration_ms} ms]"[:1000],
        actor=actor,
        data={
            "endpoint": endpoint,
            "path": path,
            "status_code": outcome.status_code,
            "duration_ms": outcome.duration_ms,
            "ok": outcome.ok,
            "error": outcome.error[:500],
            "msg_id": outcome.request_headers.get("webhook-id", ""),
            **({"response": outcome.excerpt[:500]} if not outcome.ok and outcome.excerpt else {}),
        },
    )


def answered_accepted(sent: int):
    """A `check` for dispatch, inventory and prices: the connector must accept the whole batch."""

    def check(data):
        accepted = data.get("accepted")
        if isinstance(accepted, bool) or not isinstance(accepted, int):
            return 'The answer has no "accepted" count.'
        if accepted < sent:
            return f"The connector accepted {accepted} of {sent}."
        return None

    return check


# --- health --------------------------------------------------------------------------------------------


def _healthy(data):
    return None if data.get("ok") is True else 'The health check did not answer {"ok": true}.'


def check_health(integration: Integration, *, actor=None) -> Outcome:
    """
    Call the `health` endpoint now. A connecting integration becomes connected when it passes and moves to
    error when it fails (docs/architecture.md, "Integration lifecycle"); for others the outcome counts like
    any call. A call that cannot be made comes back as a failed Outcome saying why, and changes nothing.
    """
    integration.refresh_from_db()
    try:
        outcome = _send(integration, "health", {}, check=_healthy, actor=actor)
    except CallRefused as exc:
        return Outcome(False, error=str(exc))
    if integration.status == Status.CONNECTING:
        if outcome.ok:
            _settle(integration, Status.CONNECTED, "Health check passed", actor=actor)
        else:
            _settle(integration, Status.ERROR, f"Health check failed: {outcome.summary}", actor=actor)
    note_outbound(integration, ok=outcome.ok, reason=f"health: {outcome.summary}", what="call")
    return outcome


def _settle(integration, to_status, reason, *, actor=None):
    """connecting → connected/error, only if still connecting: a stale answer never undoes a newer move."""
    with transaction.atomic():
        still = Integration.objects.select_for_update().filter(pk=integration.pk, status=Status.CONNECTING)
        if not still.exists():
            return
        transition(integration, to_status, reason=reason[:500], actor=actor)
    if to_status == Status.CONNECTED:
        resolve_integration_error(integration)
    else:
        raise_integration_error(integration, reason)


def health_check_targets():
    """Integrations the beat checks: connected and connecting ones whose connector has a health endpoint."""
    return Integration.objects.filter(
        status__in=(Status.CONNECTED, Status.CONNECTING), connector__manifest__has_key="health"
    )


# --- claims and cursors for the scheduled flows --------------------------------------------------------


def eligible(endpoint: str, flow):
    """Connected integrations whose connector has `endpoint` and whose `flow` switch is on."""
    return Integration.objects.filter(
        status=Status.CONNECTED,
        connector__manifest__has_key=endpoint,
        **{f"flow_{Workflow(flow).value}": True},
    )


def _lease_key(endpoint: str) -> str:
    return f"lease_{endpoint}"


def claim(endpoint: str, flow, *, limit: int, due=None, poll=False, gap: int = 0) -> list[Integration]:
    """
    Take up to `limit` eligible integrations for one run of a flow: rows locked with SKIP LOCKED, then a
    lease in manifest_state marks them taken until `release`, so two workers never run the same flow of
    one integration at once. Least recently run first, and none run less than `gap` seconds ago. With
    `poll`, next_poll_at moves on by poll_interval.
    """
    now = timezone.now()
    stamp = int(now.timestamp())
    key = _lease_key(endpoint)
    # The lease holds the end of the claim while running and the time of the last run once released.
    free = ~Q(manifest_state__has_key=key) | Q(**{f"manifest_state__{key}__lte": stamp - gap})
    queryset = eligible(endpoint, flow).filter(free)
    if due is not None:
        queryset = queryset.filter(due)
    with transaction.atomic():
        claimed = list(
            queryset.select_for_update(skip_locked=True, of=("self",))
            .select_related("connector", "organization")
            .order_by(KeyTransform(key, "manifest_state").asc(nulls_first=True), "pk")[:limit]
        )
        for integration in claimed:
            integration.manifest_state = {**(integration.manifest_state or {}), key: stamp + LEASE_SECONDS}
            if poll:
                integration.next_poll_at = now + timedelta(seconds=integration.poll_interval)
        if claimed:
            Integration.objects.bulk_update(claimed, ["manifest_state", "next_poll_at"])
    return claimed


def save_state(integration: Integration, **values) -> dict:
    """Set keys of manifest_state (cursors) under the row lock, keeping the others; returns the state."""
    with transaction.atomic():
        state = (
            Integration.objects.select_for_update()
            .values_list("manifest_state", flat=True)
            .get(pk=integration.pk)
        ) or {}
        state.update(values)
        Integration.objects.filter(pk=integration.pk).update(manifest_state=state)
    integration.manifest_state = state
    return state


def release(integration: Integration, endpoint: str, *, poll_now=False) -> None:
    """End a run: the lease becomes the time of the last run (free again); `poll_now` makes the pull due."""
    save_state(integration, **{_lease_key(endpoint): int(timezone.now().timestamp())})
    if poll_now:
        Integration.objects.filter(pk=integration.pk).update(next_poll_at=timezone.now())


def due_for_poll():
    """The orders pull condition: never polled, or next_poll_at reached."""
    return Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=timezone.now())
