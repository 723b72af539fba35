"""The one refusal of processes that serve or run jobs when SECRET_KEY is missing.

Settings leave SECRET_KEY empty when DEBUG is off and the environment has none, so
commands that never sign anything (``scan_violations`` in CI, ``migrate``) still run.
Django refuses an empty key only when something reads it, with a traceback in the
middle of a request: gunicorn and the workers ask first and stop with one line.
"""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

MISSING_SECRET_KEY = "SECRET_KEY must be set when DEBUG is off (export SECRET_KEY=... or DEBUG=1)."


def secret_key_is_set() -> bool:
    try:
        return bool(settings.SECRET_KEY)
    except ImproperlyConfigured:  # Django's own refusal of an empty key
        return False
