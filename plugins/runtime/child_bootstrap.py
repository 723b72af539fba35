"""Imported once by the forkserver that plugin child processes are forked from.

Setting Django up here means every child starts with the settings, the apps and
the runtime already imported: a new child (after a crash, a kill or recycling)
is ready at the cost of a fork. The forkserver never touches a database.
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
        import plugins.runtime.tool_runner  # noqa: F401  (what children execute)
    except Exception:  # the forkserver must start even so; children will report the error
        logger.exception("Preparing the plugin forkserver failed")


_setup()
