"""The Celery app, configured from Django settings (``CELERY_*``).

The broker is Redis when ``REDIS_URL`` is set and the in-process ``memory://``
transport otherwise (standalone mode).
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentmaestro.settings")

app = Celery("agentmaestro")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
