from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = "Connector API"

    def ready(self):
        # Webhook bodies are the objects as GET answers them: the API registers its renderers with the
        # outbox (integrations.webhooks.outbox), which sits below every app it renders for.
        from api.inventory import renderers as inventory_renderers  # noqa: F401

        # A manifest channel's pulled orders are read as POST /api/v1/orders reads them (orders.manifest).
        from api.orders import readers as order_readers  # noqa: F401
        from api.orders import renderers as order_renderers  # noqa: F401
