"""The console app: the top layer, above every domain app, for the screens and commands that span apps."""

from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Console"
