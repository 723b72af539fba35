"""Grant a plugin to a user or a group (or take it back): the admin's grants, from a shell.

manage.py grant_plugin text_stats --user alice
manage.py grant_plugin text_stats --group analysts --max-sync-runs 2
manage.py grant_plugin text_stats --user alice --revoke
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser

from execution.policy.models import PluginGrant
from plugins.registry import get_registry

LIMITS = ("max_active_jobs", "max_sync_runs", "daily_stored_bytes", "daily_execution_s")


class Command(BaseCommand):
    help = "Grant a plugin to a user or a group, with optional limits; --revoke takes it back."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("plugin", help="The plugin's registered name.")
        grantee = parser.add_mutually_exclusive_group(required=True)
        grantee.add_argument("--user", help="A username.")
        grantee.add_argument("--group", help="A group's name (created if it does not exist).")
        for name in LIMITS:
            parser.add_argument(
                f"--{name.replace('_', '-')}",
                type=int,
                dest=name,
                help="This grant's limit (0: no limit; omitted: the setting's).",
            )
        parser.add_argument("--revoke", action="store_true", help="Remove the grant.")

    def handle(self, *args: Any, plugin: str, revoke: bool, **options: Any) -> None:
        if not revoke and not get_registry().is_registered(plugin):
            raise CommandError(f"No plugin named {plugin!r} is registered")
        if options["user"]:
            try:
                grantee: dict[str, Any] = {
                    "user": get_user_model().objects.get(username=options["user"])
                }
            except get_user_model().DoesNotExist as exc:
                raise CommandError(f"No user {options['user']!r}") from exc
        else:
            grantee = {"group": Group.objects.get_or_create(name=options["group"])[0]}
        kind = "user" if "user" in grantee else "group"
        label = f"{plugin} to {kind} {options['user'] or options['group']}"
        if revoke:
            deleted, _ = PluginGrant.objects.filter(plugin_name=plugin, **grantee).delete()
            self.stdout.write(f"Revoked {label}." if deleted else f"No grant of {label}.")
            return
        limits = {name: options[name] for name in LIMITS if options[name] is not None}
        if any(value < 0 for value in limits.values()):
            raise CommandError("Limits are 0 (no limit) or more")
        grant, created = PluginGrant.objects.update_or_create(
            plugin_name=plugin, **grantee, defaults=limits
        )
        self.stdout.write(f"{'Granted' if created else 'Updated'} {grant}.")
