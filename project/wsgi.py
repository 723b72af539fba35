import os
import sys

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from api.wsgi import ChunkedRequestBody

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

try:
    max_bytes = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2**31
except SystemExit as stop:  # settings refused the environment, in one line
    # Exit status 3 is gunicorn's "worker failed to boot": it stops instead of
    # starting the worker again and again.
    sys.stderr.write(f"{stop}\n")
    raise SystemExit(3) from None

application = ChunkedRequestBody(get_wsgi_application(), max_bytes=max_bytes)
