"""
The delivery log: what was owed to whom and how each attempt went (headers, answer, duration); replayed —
one from its page, or the selected ones — never edited.
"""

import json

from django.contrib import admin, messages
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from integrations.choices import DELIVERY_BADGE, TEST_EVENT_TYPE, DeliveryStatus, EventType
from integrations.models import WebhookAttempt, WebhookDelivery
from integrations.webhooks import replay as webhook_replay

from ...display import badge, html_table, pre
from ..mixins import (
    ObjectActionsMixin,
    OrganizationColumnMixin,
    OrganizationScopedAdmin,
    ReadOnlyAdminMixin,
    object_action,
)

ATTEMPTS_SHOWN = 50


class EventTypeFilter(admin.SimpleListFilter):
    """The catalogue's event types and the test event: no DISTINCT scan of the deliveries table."""

    title = "event type"
    parameter_name = "event_type"

    def lookups(self, request, model_admin):
        return [(t.value, t.value) for t in EventType] + [(TEST_EVENT_TYPE, TEST_EVENT_TYPE)]

    def queryset(self, request, queryset):
        return queryset.filter(event_type=self.value()) if self.value() else queryset


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(
    OrganizationColumnMixin, ReadOnlyAdminMixin, ObjectActionsMixin, OrganizationScopedAdmin
):
    list_display = [
        "created_at",
        "organization",
        "integration",
        "event_type",
        "event_id",
        "sequence",
        "status_badge",
        "attempts",
        "last_status_code",
        "last_duration",
        "next_attempt",
    ]
    list_display_links = ["created_at", "event_id"]
    list_filter = ["status", EventTypeFilter, "integration"]
    list_select_related = ["integration", "organization"]
    # Event ids are pasted from a receiver's logs (the webhook-id header), whole or cut short.
    search_fields = ["^event_id"]
    search_help_text = "The event id (webhook-id header), or its start."
    show_full_result_count = False
    actions = ["replay_selected"]
    change_form_template = "admin/integrations/webhookdelivery/change_form.html"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "created_at",
                    "organization",
                    "integration",
                    "subscription_link",
                    "event_id",
                    "event_type",
                    "sequence",
                ]
            },
        ),
        (
            "Status",
            {
                "fields": [
                    "status_badge",
                    "attempts",
                    "next_attempt",
                    "last_attempt_at",
                    "last_status_code",
                    "last_duration",
                    "last_error",
                    "last_response_excerpt",
                    "succeeded_at",
                ]
            },
        ),
        ("Body", {"fields": ["pretty_body"]}),
        ("Attempts", {"fields": ["attempt_table"]}),
    ]
    readonly_fields = [
        "subscription_link",
        "status_badge",
        "next_attempt",
        "last_duration",
        "last_response_excerpt",
        "pretty_body",
        "attempt_table",
    ]

    # --- list -----------------------------------------------------------------------------------------
    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return badge(DELIVERY_BADGE, obj.status, obj.get_status_display())

    @admin.display(description="last duration", ordering="last_duration_ms")
    def last_duration(self, obj):
        return "—" if obj.last_duration_ms is None else f"{obj.last_duration_ms} ms"

    @admin.display(description="next attempt", ordering="next_attempt_at")
    def next_attempt(self, obj):
        if obj.status not in (DeliveryStatus.PENDING, DeliveryStatus.FAILED):
            return "—"  # settled: the stored time is history, not a plan
        return timezone.localtime(obj.next_attempt_at).strftime("%Y-%m-%d %H:%M:%S")

    # --- the page -------------------------------------------------------------------------------------
    @admin.display(description="subscription")
    def subscription_link(self, obj):
        subscription = obj.subscription
        state = "" if subscription.active else " (switched off)"
        return format_html(
            '<a href="{}">{}</a>{}',
            reverse("admin:integrations_webhooksubscription_change", args=[subscription.pk]),
            subscription.url,
            state,
        )

    @admin.display(description="last response")
    def last_response_excerpt(self, obj):
        return pre(obj.last_response) if obj.last_response else "—"

    @admin.display(description="body (as signed and sent)")
    def pretty_body(self, obj):
        try:
            text = json.dumps(json.loads(obj.body), indent=2, ensure_ascii=False)
        except ValueError:
            text = obj.body
        return pre(text)

    @admin.display(description="attempts")
    def attempt_table(self, obj):
        # The latest ATTEMPTS_SHOWN, oldest first (a replay starts numbering again at 1).
        attempts = reversed(obj.attempt_log.order_by("-started_at", "-pk")[:ATTEMPTS_SHOWN])
        return html_table(
            ["#", "Started", "URL", "Request headers", "Response", "Body excerpt", "Duration", "Error"],
            (
                (
                    a.number,
                    timezone.localtime(a.started_at).strftime("%Y-%m-%d %H:%M:%S"),
                    a.url,
                    pre("\n".join(f"{k}: {v}" for k, v in (a.request_headers or {}).items())),
                    attempt_badge(a),
                    pre(a.response_excerpt) if a.response_excerpt else "—",
                    "—" if a.duration_ms is None else f"{a.duration_ms} ms",
                    a.error or "—",
                )
                for a in attempts
            ),
            empty="Not attempted yet.",
        )

    # --- replay -----------------------------------------------------------------------------------------
    def has_replay_permission(self, request, obj=None):
        """Org admins, and members who may change the delivery's integration."""
        return self.role_allows(request, "change", obj)

    def _replay(self, request, queryset):
        selected = queryset.count()
        allowed = queryset.restrict(request.user, "change")
        permitted = selected if request.user.is_superuser else allowed.count()
        queued = webhook_replay.replay(allowed, actor=request.user)
        if queued:
            self.message_user(
                request, f"Queued {queued} deliver{'y' if queued == 1 else 'ies'} again.", messages.SUCCESS
            )
            waiting = allowed.filter(subscription__active=False).count()
            if waiting:
                self.message_user(
                    request,
                    f"{waiting} of them wait: their subscription is switched off (switch it back on to send).",
                    messages.WARNING,
                )
        if permitted - queued:
            self.message_user(
                request, f"{permitted - queued} already pending: left as they are.", messages.INFO
            )
        if selected - permitted:
            self.message_user(
                request,
                f"{selected - permitted} not replayed: you may not change their integration.",
                messages.WARNING,
            )

    @admin.action(description="Replay selected deliveries", permissions=["replay"])
    def replay_selected(self, request, queryset):
        self._replay(request, queryset)

    @object_action("replay", permission="replay")
    def replay(self, request, delivery):
        self._replay(request, WebhookDelivery.objects.filter(pk=delivery.pk))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["can_replay"] = self.has_replay_permission(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)


def attempt_badge(attempt: WebhookAttempt):
    label = str(attempt.status_code) if attempt.status_code else "no answer"
    return badge({"ok": "green", "failed": "red"}, "ok" if attempt.succeeded else "failed", label)
