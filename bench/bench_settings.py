"""The project's settings plus the benchmark-only URLs and plugin."""

import os

from project.settings import *  # noqa: F403
from project.settings import INSTALLED_APPS

ROOT_URLCONF = "bench_app"
PLUGINS = ["bench_app.BenchNoOpPlugin"]

# Records audit entries where the services will, until they do (see audit_standin.py).
if os.environ.get("BENCH_AUDIT_STANDIN", "1") == "1":
    INSTALLED_APPS = [*INSTALLED_APPS, "audit_standin.AuditStandinConfig"]
