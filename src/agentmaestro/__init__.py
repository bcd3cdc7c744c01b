"""AgentMaestro: a deterministic orchestration server for tool-using LLM agents."""

# Load the Celery app with Django, so tasks enqueued from any process (web, commands,
# tests) use the configured broker rather than Celery's default app (amqp://localhost).
from agentmaestro.celery import app as celery_app

__all__ = ("celery_app",)
