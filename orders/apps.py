from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    verbose_name = "Orders and fulfillment"

    def ready(self):
        # Webhook bodies are rendered by this app's API; registering here keeps integrations below it.
        from .api import renderers  # noqa: F401
