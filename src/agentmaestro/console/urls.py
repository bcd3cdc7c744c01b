from django.contrib.auth import views as auth_views
from django.urls import path

from agentmaestro.console.views import agents, common, runs, workspaces

app_name = "console"

urlpatterns = [
    path("", workspaces.home, name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="console/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("w/<slug:slug>/", workspaces.dashboard, name="dashboard"),
    path("w/<slug:slug>/agents/", agents.agent_list, name="agents"),
    path("w/<slug:slug>/agents/<slug:agent_slug>/", agents.agent_detail, name="agent-detail"),
    path("runs/new/", runs.run_start, name="run-start"),
    path("runs/<uuid:run_id>/", runs.run_detail, name="run-detail"),
    path("runs/<uuid:run_id>/row/", workspaces.run_row, name="run-row"),
    path("runs/<uuid:run_id>/stream/", runs.run_stream, name="run-stream"),
    path("runs/<uuid:run_id>/notes/", runs.run_note, name="run-note"),
    path("assets/<str:name>", common.asset, name="asset"),
    path("healthz", common.healthz, name="healthz"),
]
