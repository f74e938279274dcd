from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = "Connector API"

    def ready(self):
        # Webhook bodies are the objects as GET answers them: the API registers its renderers with the
        # outbox (integrations.delivery), which sits below every app it renders for.
        from api.inventory import renderers as inventory_renderers  # noqa: F401
        from api.orders import renderers as order_renderers  # noqa: F401
