from django.contrib import admin
from django.urls import include, path, re_path

from agentmaestro.api import api, not_found_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    # Anything else under /api/v1/ answers 404 in the API's JSON error shape.
    re_path(r"^api/v1/(?P<rest>.*)$", not_found_view),
    path("", include("agentmaestro.console.urls")),
]
