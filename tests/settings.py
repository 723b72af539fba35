"""Settings for the test suite: the project's settings, made safe and fast for tests."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")

from project.settings import *  # noqa: F403
from project.settings import BASE_DIR, DATABASES

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not :memory:, so tests with threads and subprocesses share one real
    # database with WAL and the busy timeout, as in production.
    # TEST_SQLITE_NAME lets two test runs on one checkout keep out of each other's way.
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get("TEST_SQLITE_NAME", str(BASE_DIR / "test_db.sqlite3"))
    }
# Threads in tests open their own connections; persistent ones would outlive the test.
DATABASES["default"]["CONN_MAX_AGE"] = 0

# The sources, not collectstatic's hashed copies: tests render the admin without it
# (tests/faults/test_production_static.py runs collectstatic and the manifest).
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
PLUGINS = []
PLUGIN_DEFAULT_TIMEOUT_S = 5.0
PLUGIN_METRICS_ENABLED = True
# The test process itself recovers no leases in the background; tests that need
# recovery call the service or start servers and workers that do.
JOB_RECOVERY_INTERVAL_S = 0
# Nor does it seal audit entries in the background: tests seal when they mean to.
AUDIT_SEAL_INTERVAL_S = 0
# Nor checkpoint SQLite's log from a thread (servers and workers the tests start do).
SQLITE_CHECKPOINT_INTERVAL_S = 0
# Nor start every plugin's host at its first request: tests start the ones they use.
PLUGIN_WARM_HOSTS = False
# Nor throttle: the suite makes many requests quickly, from one address, some with wrong
# tokens on purpose. tests/execution/test_throttling.py turns them on where it means to.
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {"burst": None, "sustained": None, "failed_authentication": None},
}
# Every user may run every plugin: the suite is about other things. The policy tests
# (tests/execution/test_policy_*.py) restrict access where they mean to.
PLUGIN_ACCESS = "open"
