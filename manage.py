#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    # manage.py is the developer's entry point: DEBUG is on unless set. Servers
    # load project.wsgi/asgi, where DEBUG stays off and SECRET_KEY is required;
    # in production run management commands with DEBUG=0 too (docs/deployment.md).
    os.environ.setdefault("DEBUG", "1")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
