"""Set up Django for a benchmark on a scratch SQLite database (WAL) in a temp folder."""

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_django(database_url: str | None = None) -> str:
    """Configure settings, create the schema, and return the database URL used."""
    sys.path.insert(0, str(ROOT))
    if database_url is None:
        database_url = f"sqlite:///{tempfile.mkdtemp(prefix='bench-')}/bench.sqlite3"
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("SECRET_KEY", "benchmark-only")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return database_url
