from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "inventory"
    verbose_name = "Catalog and stock"

    def ready(self):
        # Webhook bodies are rendered by this app's API; registering here keeps integrations below it.
        from .api import renderers  # noqa: F401
