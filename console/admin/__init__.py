"""The model admins of every app, registered on the console's admin site (Django's autodiscover imports this)."""
