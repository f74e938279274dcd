"""The automations admin: exceptions, automation rules and their run log, routing cards, engine settings."""

from . import engines, exceptions, routing, rules  # noqa: F401 - registers the model admins
