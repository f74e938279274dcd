"""
Webhook subscriptions (docs/connectors/contract.md, "Events, exceptions, webhooks"): subscribe and
unsubscribe, the grant each event type needs, the guard that keeps targets off loopback and private networks
(core.targets), switching a subscription off (a receiver gone or failing for days) and back on, and rotating
its signing secret with an overlap during which both secrets sign.
"""

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core import history
from core.errors import DomainError
from core.signing import new_secret
from core.targets import check_target_url

from ..audit import record_event
from ..choices import OWED, EventKind, EventType
from ..models import Integration, WebhookSubscription
from .doorbells import ring

# The read grant a key must hold to be told of each event type (webhooks:write is checked by the view).
# integration.status_changed concerns the key's own integration: nothing beyond webhooks access.
_GRANTS_BY_TYPE: dict[EventType, str | None] = {
    EventType.ORDER_CREATED: "orders:read",
    EventType.ORDER_UPDATED: "orders:read",
    EventType.ORDER_CANCELED: "orders:read",
    EventType.SHIPPING_REQUEST_CREATED: "shipping_requests:read",
    EventType.SHIPPING_REQUEST_UPDATED: "shipping_requests:read",
    EventType.SHIPPING_REQUEST_CANCELED: "shipping_requests:read",
    EventType.SHIPPING_REQUEST_REJECTED: "shipping_requests:read",
    EventType.FULFILLMENT_CREATED: "fulfillments:read",
    EventType.FULFILLMENT_UPDATED: "fulfillments:read",
    EventType.FULFILLMENT_CANCELED: "fulfillments:read",
    EventType.INVENTORY_UPDATED: "inventory:read",
    EventType.PRODUCT_CREATED: "products:read",
    EventType.PRODUCT_UPDATED: "products:read",
    EventType.PRODUCT_DELETED: "products:read",
    EventType.INTEGRATION_STATUS_CHANGED: None,
}
EVENT_GRANTS: dict[str, str | None] = {event.value: grant for event, grant in _GRANTS_BY_TYPE.items()}


class MissingEventGrant(DomainError, PermissionError):
    """The key lacks the read grant(s) of some event types: 403 missing_grant, `details.required` names them."""

    api_code = "missing_grant"

    def __init__(self, required: list[str]):
        message = f"This key lacks the grant(s) these events need: {', '.join(required)}."
        super().__init__(message, details={"required": required})


class SubscriptionConflict(DomainError):
    """The integration's subscriptions leave no room for this one: 409 conflict, `details` says why."""

    api_code = "conflict"

    def __init__(self, message: str, details: dict):
        super().__init__(message, details=details)


def check_room(integration, url: str, event_types: list[str]) -> None:
    """
    SubscriptionConflict when `url` already gets one of `event_types` from this integration (one delivery per
    event and URL), or when the integration holds WEBHOOK_MAX_SUBSCRIPTIONS already (switched-off ones count:
    they can be switched back on). Call it holding the integration's row lock.
    """
    existing = WebhookSubscription.objects.filter(integration=integration)
    taken = {
        event for types in existing.filter(url=url).values_list("event_types", flat=True) for event in types
    }
    doubled = [event for event in event_types if event in taken]
    if doubled:
        raise SubscriptionConflict(
            f"{url} is already subscribed to {', '.join(doubled)}. Subscribe it to other event types, or "
            "delete the subscription that has them first.",
            {"url": url, "events": doubled},
        )
    limit = settings.WEBHOOK_MAX_SUBSCRIPTIONS
    if existing.count() >= limit:
        raise SubscriptionConflict(
            f"This integration has the most webhook subscriptions allowed ({limit}); delete one first.",
            {"limit": limit},
        )


def check_events(events, key) -> list[str]:
    """The event types, deduplicated, in catalogue order; unknown → ValidationError, ungranted → MissingEventGrant."""
    if not isinstance(events, list | tuple) or not events:
        raise ValidationError({"events": ["Name at least one event type."]})
    unknown = sorted({str(e) for e in events if e not in EVENT_GRANTS})
    if unknown:
        # "*" is not supported: a subscription names what it wants, so grants can be checked per type.
        raise ValidationError(
            {"events": [f"Unknown event type(s): {', '.join(unknown)}. Known: {', '.join(EVENT_GRANTS)}."]}
        )
    missing = sorted(
        {EVENT_GRANTS[e] for e in events if EVENT_GRANTS[e] and EVENT_GRANTS[e] not in key.grants}
    )
    if missing:
        raise MissingEventGrant(missing)
    return [e for e in EVENT_GRANTS if e in set(events)]


@transaction.atomic
def subscribe(integration, url: str, events, key) -> tuple[WebhookSubscription, str]:
    """A new active subscription of `integration`, and its secret (returned this once)."""
    event_types = check_events(events, key)
    check_target_url(url)
    # Subscribes of one integration take turns on its row, so two at once cannot both pass check_room.
    Integration.objects.select_for_update().filter(pk=integration.pk).exists()
    check_room(integration, url, event_types)
    secret = new_secret()
    with history.actor_context(f"key:{key.prefix}"):
        subscription = WebhookSubscription.objects.create(
            integration=integration, url=url, event_types=event_types, secret=secret
        )
    record_event(
        integration,
        EventKind.CONFIG_CHANGED,
        f"Webhook subscription added: {url}",
        actor=f"key:{key.prefix}",
        data={"webhook": str(subscription.pk), "url": url, "events": event_types},  # never the secret
    )
    return subscription, secret


@transaction.atomic
def unsubscribe(subscription: WebhookSubscription, *, actor=None) -> None:
    """Delete the subscription and record it on its integration's trail."""
    integration = subscription.integration
    data = {"webhook": str(subscription.pk), "url": subscription.url, "events": subscription.event_types}
    # Its deliveries are locked first (in id order, as a worker recording outcomes updates them): a worker's
    # attempt committed between the deletion's read of the attempts and its delete of the deliveries would
    # otherwise still point at a deleted delivery, and the commit fail on the foreign key (a 500).
    list(subscription.deliveries.select_for_update().order_by("pk").values_list("pk", flat=True))
    with history.actor_context(actor):
        subscription.delete()
    record_event(
        integration,
        EventKind.CONFIG_CHANGED,
        f"Webhook subscription removed: {data['url']}",
        actor=actor,
        data=data,
    )


@transaction.atomic
def reactivate(subscription: WebhookSubscription, *, actor=None) -> bool:
    """
    Switch a switched-off subscription back on (False if it was on): its failure run starts afresh, and the
    deliveries it owes, which waited while it was off, go out.
    """
    now = timezone.now()
    updated = WebhookSubscription.objects.filter(pk=subscription.pk, active=False).update(
        active=True, disabled_reason="", disabled_at=None, failing_since=None, updated_at=now
    )
    if not updated:
        return False
    reason = subscription.disabled_reason
    subscription.active, subscription.disabled_reason = True, ""
    subscription.disabled_at = subscription.failing_since = None
    history.record_change(subscription, actor=actor)  # update() sends no post_save
    record_event(
        subscription.integration,
        EventKind.CONFIG_CHANGED,
        f"Webhook subscription to {subscription.url} switched back on.",
        actor=actor,
        data={"webhook": str(subscription.pk), "url": subscription.url, "was": reason},
    )
    owed = subscription.deliveries.filter(status__in=OWED, next_attempt_at__lte=now).count()
    if owed:
        transaction.on_commit(lambda: ring(owed))
    return True


def switch_off(subscription: WebhookSubscription, reason: str, *, delivery=None, now=None) -> None:
    """Deactivate a subscription (its owed deliveries wait; re-activating sends them) and say why."""
    now = now or timezone.now()
    updated = WebhookSubscription.objects.filter(pk=subscription.pk, active=True).update(
        active=False, disabled_reason=reason[:500], disabled_at=now, updated_at=now
    )
    subscription.active, subscription.disabled_reason, subscription.disabled_at = False, reason[:500], now
    if updated:
        history.record_change(subscription)  # update() sends no post_save; whoever is acting (none: the hub)
        record_event(
            subscription.integration,
            EventKind.CONFIG_CHANGED,
            f"Webhook subscription to {subscription.url} switched off: {reason}",
            data={"webhook": str(subscription.pk), "url": subscription.url, "reason": reason}
            | ({"event_id": delivery.event_id} if delivery else {}),
        )


def check_active(subscription: WebhookSubscription) -> None:
    """SubscriptionConflict for a switched-off subscription: nothing queued for it would go out."""
    if not subscription.active:
        raise SubscriptionConflict(
            f"This subscription is switched off ({subscription.disabled_reason or 'no reason recorded'}): "
            "nothing is sent to it until an administrator switches it back on.",
            {"active": False},
        )


@transaction.atomic
def rotate_secret(subscription: WebhookSubscription, overlap: timedelta, *, actor=None) -> str:
    """
    Give the subscription a new signing secret and return it (shown this once). The secret it replaces keeps
    signing deliveries beside the new one for `overlap` (zero: it stops at once); a secret rotated out
    earlier whose overlap had not ended stops now, so at most two ever sign.
    """
    now = timezone.now()
    locked = WebhookSubscription.objects.select_for_update().get(pk=subscription.pk)
    secret, keep = new_secret(), overlap > timedelta(0)
    locked.previous_secret = locked.secret if keep else ""
    locked.previous_secret_until = now + overlap if keep else None
    locked.secret = secret
    # Only fields the history leaves out: a rotation is told on the trail below, never with a secret.
    locked.save(update_fields=["secret", "previous_secret", "previous_secret_until", "updated_at"])
    until = locked.previous_secret_until
    record_event(
        locked.integration,
        EventKind.CONFIG_CHANGED,
        f"Webhook signing secret rotated for {locked.url}; "
        + (
            f"the previous one also signs until {until:%Y-%m-%d %H:%M} UTC."
            if until
            else "the previous one no longer signs."
        ),
        actor=actor,
        data={
            "webhook": str(locked.pk),
            "url": locked.url,
            "previous_until": until.isoformat() if until else None,
        },
    )
    subscription.secret, subscription.previous_secret_until = secret, until
    return secret


def previous_secrets(subscription: WebhookSubscription, now=None) -> tuple[str, ...]:
    """The rotated-out secret while its overlap lasts (deliveries are signed with it too), else nothing."""
    until = subscription.previous_secret_until
    if until is None or until <= (now or timezone.now()):
        return ()
    return (subscription.previous_secret,) if subscription.previous_secret else ()
