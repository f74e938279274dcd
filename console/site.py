"""The project's admin site: Django's, plus the pages that belong to no single model (the dashboard)."""

from django.contrib import admin
from django.urls import path

from console.dashboard import dashboard_view


class SwitchyardAdminSite(admin.AdminSite):
    def get_urls(self):
        dashboard = self.admin_view(lambda request: dashboard_view(request, self))
        return [path("automations/dashboard/", dashboard, name="automations_dashboard"), *super().get_urls()]
