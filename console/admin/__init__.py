"""
The model admins of every app, registered on the console's admin site (Django's autodiscover imports this
package). One module per app, or a package with one module per model where an app has many pages; what
they share is in mixins.py (tenancy, object actions) and display.py.
"""

from . import automations, integrations, inventory, orders, organizations, tokens  # noqa: F401 - registers them
