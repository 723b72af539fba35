"""The project's settings plus the benchmark-only URLs and plugin."""

from project.settings import *  # noqa: F403

ROOT_URLCONF = "bench_app"
PLUGINS = ["bench_plugins.BenchNoOpPlugin", "bench_plugins.BenchSleepPlugin"]
