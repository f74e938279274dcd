"""The project's admin site: Django's, plus the pages that belong to no single model (the dashboard)."""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.urls import path


class SwitchyardAdminSite(admin.AdminSite):
    def get_urls(self):
        from automations.admin.engines import dashboard_view

        dashboard = self.admin_view(lambda request: dashboard_view(request, self))
        return [path("automations/dashboard/", dashboard, name="automations_dashboard"), *super().get_urls()]


class SwitchyardAdminConfig(AdminConfig):
    """Installed instead of django.contrib.admin, so `admin.site` is SwitchyardAdminSite (Django's documented way)."""

    default_site = "console.site.SwitchyardAdminSite"
