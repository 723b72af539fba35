"""Make an API token for a user and print it: the only time its value is shown."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from execution.policy.tokens import create_token, parse_duration


class Command(BaseCommand):
    help = "Create an API token for USER and print it once (it is stored only as a digest)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--expiry", help="Lifetime such as 30d, 12h, 90m, 2w (default: until revoked)."
        )

    def handle(self, *args: Any, username: str, expiry: str | None, **options: Any) -> None:
        user = _user(username)
        try:
            expires_in = parse_duration(expiry) if expiry else None
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        new = create_token(user=user, expires_in=expires_in)
        until = new.token.expires_at.isoformat() if new.token.expires_at else "until revoked"
        self.stderr.write(f"Token {new.token.prefix}… for {username!r}, valid {until}:")
        self.stdout.write(new.key)


def _user(username: str) -> Any:
    try:
        return get_user_model().objects.get_by_natural_key(username)
    except get_user_model().DoesNotExist as exc:
        raise CommandError(f"No user {username!r}.") from exc
