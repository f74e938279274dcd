from django.apps import AppConfig


class TokensConfig(AppConfig):
    name = "tokens"
    verbose_name = "API keys"

    def ready(self):
        # Webhooks tell an integration only of what one of its keys may read; keys sit above integrations, so
        # the outbox is handed the reader of their grants rather than reaching up for it.
        from integrations.webhooks import outbox

        from .grants import grants_by_integration

        outbox.register_grants_reader(grants_by_integration)
