from django.apps import AppConfig


class CommonConfig(AppConfig):
    name = "agentmaestro.common"
    label = "common"
