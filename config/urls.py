from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from api.errors import not_found_view

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/v1/", include(("api.urls", "api"))),
    # The rest of /api (/api/, /api/v2/…) answers the API's JSON 404 too, also when DEBUG shows Django's
    # HTML page for other unknown paths (handler404 is not used then).
    re_path(r"^api(?:/.*)?$", not_found_view, name="api-not-found"),
]

handler404 = "api.errors.handler404"
handler500 = "api.errors.handler500"
