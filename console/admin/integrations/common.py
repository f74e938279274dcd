"""What the integration, subscription and delivery pages share: the status badge and the deliveries links."""

from django.urls import reverse
from django.utils.html import format_html, format_html_join

from integrations.choices import BADGE, DeliveryStatus, IntegrationStatus

from ...display import badge

# The delivery states someone may need to act on, counted on the integration and subscription pages.
UNSETTLED = (DeliveryStatus.PENDING, DeliveryStatus.FAILED, DeliveryStatus.DEAD)


def status_badge(status, label=None):
    return badge(BADGE, status, label or IntegrationStatus(status).label)


def deliveries_links(query, counts, *, label):
    """A link to the filtered deliveries list, then one per status with its count."""
    url = reverse("admin:integrations_webhookdelivery_changelist")
    parts = format_html_join(
        ", ",
        '<a href="{}?{}&amp;status__exact={}" data-status="{}">{} {}</a>',
        ((url, query, status, status, counts[status], status) for status in counts),
    )
    return format_html('<a href="{}?{}">{}</a>: {}', url, query, label, parts)
