import os
import sys

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from api.wsgi import ChunkedRequestBody
from project.secret_key import MISSING_SECRET_KEY, secret_key_is_set

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

if not secret_key_is_set():
    # Exit status 3 is gunicorn's "worker failed to boot": it stops instead of
    # starting the worker again and again.
    sys.stderr.write(f"{MISSING_SECRET_KEY}\n")
    raise SystemExit(3)

application = ChunkedRequestBody(
    get_wsgi_application(), max_bytes=settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2**31
)
