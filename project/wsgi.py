import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from api.wsgi import ChunkedRequestBody

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

application = ChunkedRequestBody(
    get_wsgi_application(), max_bytes=settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2**31
)
