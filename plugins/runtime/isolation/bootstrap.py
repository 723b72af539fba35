"""Imported once by the forkserver that plugin child processes are forked from.

Setting Django up and importing the project's plugins here means every child
starts with the settings, the apps, the runtime and the plugin modules already
imported: a new child (after a crash, a kill or recycling) is ready at the cost
of a fork. The process that uses the pool imported the same plugin modules
already, so this adds no way to fail. The forkserver never touches a database.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)


def _setup() -> None:
    try:
        import django
        from django.apps import apps

        if os.environ.get("DJANGO_SETTINGS_MODULE") and not apps.ready:
            django.setup()
        import plugins.runtime.tool_runner  # noqa: F401  (what children are handed to run)
        from plugins.registry import get_registry

        get_registry()  # imports every discovered plugin's module
    except Exception:  # the forkserver must start even so; children will report the error
        logger.exception("Preparing the plugin forkserver failed")


_setup()
