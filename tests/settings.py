"""Settings for the test suite: the real stack (PostgreSQL, Redis), from the environment.

tools/run_tests.py exports DATABASE_URL and REDIS_URL after checking that both servers
answer (or starting throwaway ones); these defaults are the standard local ports.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/agentmaestro")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("SECRET_KEY", "tests-only-" + "k" * 40)
# Threads (sync_to_async, the concurrency tests) must not leave connections open, or
# the test database cannot be dropped at the end of the session.
os.environ.setdefault("CONN_MAX_AGE", "0")

from agentmaestro.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
