from django.apps import AppConfig


class WorkspacesConfig(AppConfig):
    name = "agentmaestro.workspaces"
    label = "workspaces"
    default_auto_field = "django.db.models.BigAutoField"
