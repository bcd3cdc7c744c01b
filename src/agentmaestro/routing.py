from django.urls import path, re_path

from agentmaestro.common.consumers import NotFoundSocket
from agentmaestro.runs.consumers import RunStreamConsumer
from agentmaestro.workspaces.consumers import ApprovalsConsumer, WorkspaceConsumer

websocket_urlpatterns = [
    path("ws/runs/<uuid:run_id>/", RunStreamConsumer.as_asgi()),
    path("ws/workspaces/<uuid:workspace_id>/", WorkspaceConsumer.as_asgi()),
    path("ws/workspaces/<uuid:workspace_id>/approvals/", ApprovalsConsumer.as_asgi()),
    re_path(r"^", NotFoundSocket.as_asgi()),
]
