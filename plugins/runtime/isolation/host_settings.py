"""Django's settings in a plugin host, for a plugin that imports Django: nothing to steal.

No database, a secret made afresh in each host, no apps of the server's. The
server's own settings module is neither readable nor importable there.
"""

import secrets

SECRET_KEY = secrets.token_urlsafe(50)
DATABASES: dict[str, dict[str, str]] = {}
INSTALLED_APPS: list[str] = []
USE_TZ = True
