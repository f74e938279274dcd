"""The automations admin: exceptions, automation rules, routing cards, engine settings and the dashboard."""

from . import engines, exceptions, routing, rules  # noqa: F401 - registers the model admins
