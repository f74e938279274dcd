from django.apps import AppConfig


class AutomationsConfig(AppConfig):
    name = "automations"
    verbose_name = "Automations and exceptions"

    def ready(self):
        from . import receivers  # noqa: F401 - connects the signal receivers
