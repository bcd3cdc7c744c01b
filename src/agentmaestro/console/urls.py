from django.urls import path

from agentmaestro.console import views

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    path("runs/<uuid:run_id>/stream/", views.run_stream, name="run-stream"),
    path("healthz", views.healthz, name="healthz"),
]
