"""
Webhook subscriptions of the organization's integrations: state, failing since, what they owe; a test event,
switching on and off as buttons and bulk actions. The signing secret is never shown.
"""

from django.contrib import admin, messages
from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils.html import format_html

from console.admin.history import ConfigHistoryAdmin
from integrations import audit
from integrations.choices import IntegrationStatus
from integrations.models import WebhookDelivery, WebhookSubscription
from integrations.webhooks import replay, subscriptions

from ...display import badge
from ..mixins import ObjectActionsMixin, OrganizationScopedAdmin, object_action
from .common import UNSETTLED, deliveries_links

SUBSCRIPTION_BADGE = {"active": "green", "failing": "amber", "off": "red"}


def _deliveries_of(status):
    """Deliveries of the row's subscription in `status`: a subquery run for the listed rows only."""
    counted = (
        WebhookDelivery.objects.filter(subscription=OuterRef("pk"), status=status)
        .order_by()
        .values("subscription")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(ConfigHistoryAdmin, ObjectActionsMixin, OrganizationScopedAdmin):
    list_display = [
        "url",
        "integration",
        "event_list",
        "state_badge",
        "failing_since",
        "delivery_counts",
        "created_at",
    ]
    list_filter = ["active", "integration"]
    list_select_related = ["integration"]
    search_fields = ["url", "integration__name"]
    exclude = ["secret"]
    # URL and events are checked (SSRF guard, grants) by the API's service only: not editable here. On and
    # off go through the buttons and actions, which record why.
    fields = [
        "integration",
        "url",
        "event_types",
        "state_badge",
        "disabled_at",
        "failing_since",
        "last_sequence",
        "delivery_counts",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields
    actions = ["send_test_event_selected", "switch_on_selected", "switch_off_selected"]
    change_form_template = "admin/integrations/webhooksubscription/change_form.html"

    def has_add_permission(self, request, *args):
        return False  # made through the API, which shows the secret once

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(**{f"_{status.value}": _deliveries_of(status) for status in UNSETTLED})
        )

    @admin.display(description="events")
    def event_list(self, obj):
        return ", ".join(obj.event_types)

    @admin.display(description="state", ordering="active")
    def state_badge(self, obj):
        if not obj.active:
            return format_html(
                "{}<br><small>{}</small>",
                badge(SUBSCRIPTION_BADGE, "off", "Switched off"),
                obj.disabled_reason or "No reason recorded.",
            )
        if obj.failing_since:
            return badge(SUBSCRIPTION_BADGE, "failing", "Failing")
        return badge(SUBSCRIPTION_BADGE, "active", "Active")

    @admin.display(description="deliveries")
    def delivery_counts(self, obj):
        counts = {status.value: getattr(obj, f"_{status.value}", 0) for status in UNSETTLED}
        return deliveries_links(f"subscription__id__exact={obj.pk}", counts, label="All")

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["can_act"] = self.has_change_permission(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- test event, on and off: buttons on the page, actions on the list --------------------------------
    def action_label(self, obj):
        return obj.url

    def action_queryset(self, queryset):
        return queryset.select_related("integration__organization")

    @object_action("test-event", name="test", bulk="Send a test event to selected subscriptions")
    def send_test_event(self, request, subscription):
        if not subscription.active:
            return f"{subscription.url} is switched off: switch it on first.", messages.WARNING
        if subscription.integration.status == IntegrationStatus.DISABLED:
            return f"“{subscription.integration}” is disabled: nothing is sent while it is.", messages.WARNING
        sent = replay.send_test_event(subscription, actor=request.user)
        link = reverse("admin:integrations_webhookdelivery_change", args=[sent.pk])
        return format_html(
            'Test event <a href="{}">{}</a> queued for {}.', link, sent.event_id, subscription.url
        )

    @object_action("switch-on", bulk="Switch selected subscriptions back on")
    def switch_on(self, request, subscription):
        if not subscriptions.reactivate(subscription, actor=request.user):
            return f"{subscription.url} is already on.", messages.INFO
        return f"Switched {subscription.url} back on; what it owes goes out now."

    @object_action("switch-off", bulk="Switch selected subscriptions off")
    def switch_off(self, request, subscription):
        if not subscription.active:
            return f"{subscription.url} is already off.", messages.INFO
        subscriptions.switch_off(subscription, f"Switched off by {audit.actor_label(request.user)}.")
        return f"Switched {subscription.url} off; its deliveries wait until it is on again."

    # Deleting in the admin is unsubscribing: recorded on the integration's trail like the API's DELETE.
    def delete_model(self, request, obj):
        subscriptions.unsubscribe(obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for subscription in queryset.select_related("integration__organization"):
            subscriptions.unsubscribe(subscription, actor=request.user)
