from typing import Any

from django.apps import AppConfig
from django.core.signals import request_started


class PluginsConfig(AppConfig):
    name = "plugins"
    verbose_name = "Plugins"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # On the first request, not here: commands such as migrate start no plugin process.
        request_started.connect(_warm_up, dispatch_uid="plugins-warm-up")


def _warm_up(**kwargs: Any) -> None:
    from plugins.runtime.tool_runner import warm_up_once

    warm_up_once()
