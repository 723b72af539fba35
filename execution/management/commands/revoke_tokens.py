"""Revoke every live API token of a user: their next request is answered 401."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from execution.management.commands.create_token import _user
from execution.policy.tokens import revoke_tokens


class Command(BaseCommand):
    help = "Revoke all API tokens of USER."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        revoked = revoke_tokens(user=_user(username))
        self.stdout.write(f"Revoked {revoked} token(s) of {username!r}.")
