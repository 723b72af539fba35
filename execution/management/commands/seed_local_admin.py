"""Create (or refresh) a local superuser and a new API token, and print both.

Tokens are stored as digests, so an earlier run's token cannot be shown again:
each run makes a new one (earlier ones keep working until revoked).

Meant for ``make run`` on a developer machine: it refuses to run with DEBUG off
unless ``--force`` is given, so it cannot reset a production password by accident.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from execution.policy.tokens import create_token


class Command(BaseCommand):
    help = "Create or refresh the local admin user and its API token, and print them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument(
            "--base-url", default="http://127.0.0.1:8000", help="Where the server will answer."
        )
        parser.add_argument("--force", action="store_true", help="Run even when DEBUG is off.")

    def handle(self, *args: Any, username: str, force: bool, base_url: str, **options: Any) -> None:
        if not settings.DEBUG and not force:
            raise CommandError("Refusing to seed a local admin with DEBUG off (use --force).")
        password = secrets.token_urlsafe(12)
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"email": f"{username}@localhost"}
        )
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        key = create_token(user=user).key
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"  Local admin {'created' if created else 'refreshed'}:",
                    f"    admin:    {base_url}/admin/  user {username!r}  password {password!r}",
                    f"    API:      Authorization: Token {key}",
                    f"    try:      curl -H 'Authorization: Token {key}' {base_url}/v1/plugins",
                    "    (a new token each run, shown only now: it is stored hashed)",
                    "",
                ]
            )
        )
