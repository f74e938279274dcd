from django.apps import AppConfig

from core import sync_exceptions, triggers


class AutomationsConfig(AppConfig):
    name = "automations"
    verbose_name = "Automations and exceptions"

    def ready(self):
        # The engines are called explicitly by the apps below through core/triggers.py, and every app raises
        # its exceptions through core/sync_exceptions.py: this is where automations answers both. (Imported
        # here, not above: they use the models, which Django loads after the app configs.)
        from . import exceptions, handlers

        sync_exceptions.register(exceptions)
        triggers.register(triggers.ORDER_RECEIVED, handlers.order_received)
        triggers.register(triggers.ORDER_READY, handlers.order_ready)
        triggers.register(triggers.AVAILABILITY_CHANGED, handlers.availability_changed)
        triggers.register(triggers.INTEGRATION_STATUS_CHANGED, handlers.integration_status_changed)
        triggers.register_answer(triggers.ENGINE_ON, handlers.engine_on)
