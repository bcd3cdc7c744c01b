"""The standalone stack (SQLite, in-memory channel layer) for the store conformance suite.

tests/runs/test_sqlite_conformance.py runs the event-store, transition and replay tests
again under these settings, so both implementations of the append path meet one
contract.
"""

import os
import tempfile

os.environ.pop("DATABASE_URL", None)
os.environ.pop("REDIS_URL", None)
os.environ["AGENTMAESTRO_DATA_DIR"] = tempfile.mkdtemp(prefix="agentmaestro-sqlite-tests-")
os.environ.setdefault("SECRET_KEY", "tests-only-" + "k" * 40)
os.environ.setdefault("CONN_MAX_AGE", "0")

from agentmaestro.settings import *  # noqa: F403
from agentmaestro.settings import DATABASES

# A file, not :memory:, so that the concurrency tests' threads share one database.
DATABASES["default"]["TEST"] = {
    "NAME": os.path.join(os.environ["AGENTMAESTRO_DATA_DIR"], "test.sqlite3")
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
