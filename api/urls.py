from django.urls import path, re_path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from api.automations import views as automation_views
from api.errors import not_found_view
from api.integrations import feed as integration_feed
from api.integrations import views as integration_views
from api.inventory import views as inventory_views
from api.orders import views as order_views
from api.tokens import views as token_views
from core.ids import IdConverter

# Object routes take `<id:pk>` (ScopedViewSet.lookup_value_converter): DRF's default lookup regex, [^/.]+,
# handed "²", "٣" or " 1" to the queryset, which read some as another id and failed on others. A path the
# converter refuses matches no route and gets the catch-all's 404 below.
register_converter(IdConverter, "id")
router = SimpleRouter(trailing_slash=False, use_regex_path=False)
router.register("events", integration_views.EventViewSet, basename="event")
router.register("webhooks", integration_views.WebhookViewSet, basename="webhook")
router.register("webhook-deliveries", integration_views.WebhookDeliveryViewSet, basename="webhook-delivery")
router.register("webhook-events", integration_feed.WebhookEventViewSet, basename="webhook-event")
router.register("exceptions", automation_views.SyncExceptionViewSet, basename="exception")
router.register("products", inventory_views.ProductViewSet, basename="product")
router.register("locations", inventory_views.LocationViewSet, basename="location")
router.register("orders", order_views.OrderViewSet, basename="order")
router.register("shipping-requests", order_views.ShippingRequestViewSet, basename="shipping-request")
router.register("fulfillments", order_views.FulfillmentViewSet, basename="fulfillment")

urlpatterns = [
    path("me", token_views.MeView.as_view(), name="me"),
    path("integration", integration_views.IntegrationView.as_view(), name="integration"),
    path("integration/connect", integration_views.ConnectView.as_view(), name="integration-connect"),
    path("integration/error", integration_views.ReportErrorView.as_view(), name="integration-error"),
    path("inventory", inventory_views.InventoryView.as_view(), name="inventory"),
    path("availability", inventory_views.AvailabilityView.as_view(), name="availability"),
    path(
        "webhooks/<id:pk>/deliveries",
        integration_views.SubscriptionDeliveryViewSet.as_view({"get": "list"}),
        name="webhook-deliveries",
    ),
    *router.urls,
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's init script as a file, so the docs' CSP needs no inline script.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    re_path(r"^.*$", not_found_view, name="not-found"),
]
