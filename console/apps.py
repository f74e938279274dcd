"""
The console app: the top layer, above every domain app, for the screens and commands that span apps; and
the admin's app config, which installs the console's admin site (console/site.py) as `admin.site`.
"""

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps  # the module: its AdminConfig is a default config too


class ConsoleConfig(AppConfig):
    default = True  # the one default: this module also holds the admin's config below
    name = "console"
    verbose_name = "Console"


class SwitchyardAdminConfig(admin_apps.AdminConfig):
    """
    Installed instead of django.contrib.admin, so `admin.site` is SwitchyardAdminSite (Django's documented
    way). It lives here, not beside the site, because INSTALLED_APPS imports it before any model is loaded,
    and the site imports the dashboard, which reads the models.
    """

    default = False
    default_site = "console.site.SwitchyardAdminSite"
