from django.contrib.auth import views as auth_views
from django.urls import path

from agentmaestro.console import views

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="console/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("runs/new/", views.run_start, name="run-start"),
    path("runs/<uuid:run_id>/stream/", views.run_stream, name="run-stream"),
    path("runs/<uuid:run_id>/notes/", views.run_note, name="run-note"),
    path("healthz", views.healthz, name="healthz"),
]
