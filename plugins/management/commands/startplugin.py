"""``manage.py startplugin NAME [DIRECTORY]``: a new, pip-installable plugin package.

Django's TemplateCommand (what ``startapp`` uses) renders ``plugins/plugin_template/``;
the name and directory are checked first (plugins/scaffold.py), so a bad one writes
nothing.
"""

from __future__ import annotations

import shutil
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError
from django.core.management.templates import TemplateCommand

from plugins.scaffold import (
    HOST_DISTRIBUTION,
    TEMPLATE_DIR,
    PluginPackage,
    ScaffoldError,
    check_name,
)


class Command(TemplateCommand):
    help = (
        "Write a new plugin package: pyproject.toml with its governed_plugins entry point "
        "and its dependency on the host, the plugin (Input, Output, run), a README and "
        "tests that use plugins.testing.run_plugin."
    )
    # Not pyproject.toml in the template folder: tools (ruff, pytest) would read it as
    # this project's configuration.
    rewrite_template_suffixes = ((".py-tpl", ".py"), (".toml-tpl", ".toml"))

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "name", help="The plugin's name: [a-z0-9_]+, starting with a letter, no keyword."
        )
        parser.add_argument(
            "directory",
            nargs="?",
            help="Where to write the package: a new or empty directory (default: ./NAME-plugin).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            package = PluginPackage.plan(options["name"], options["directory"])
        except ScaffoldError as exc:
            raise CommandError(str(exc)) from exc
        created = not package.directory.exists()
        package.directory.mkdir(parents=True, exist_ok=True)
        try:
            super().handle(
                "plugin",
                package.name,
                str(package.directory),
                template=str(TEMPLATE_DIR),
                extensions=["py", "toml", "md"],
                files=[],
                verbosity=options["verbosity"],
                package=package.package,
                distribution=package.distribution,
                class_name=package.class_name,
                entry_point=package.entry_point,
                host_requirement=package.host_requirement,
                host_distribution=HOST_DISTRIBUTION,
            )
        except BaseException:
            if created:
                shutil.rmtree(package.directory, ignore_errors=True)
            raise
        if package.host_requirement == HOST_DISTRIBUTION:
            self.stderr.write(
                f"{HOST_DISTRIBUTION} is not installed as a distribution here, so its "
                "version is not pinned: pip install -e the checkout first."
            )
        self.stdout.write(
            f"Wrote {package.distribution} (plugin {package.name!r}, entry point "
            f"{package.entry_point}) in {package.directory}.\n"
            f"Next: pip install -e '{package.directory}[test]' into the host's environment, "
            f"then pytest {package.directory}/tests."
        )

    def validate_name(self, name: str, name_or_dir: str = "name") -> None:
        """The plugin's rules, not startapp's (which refuses names of importable modules)."""
        try:
            check_name(name)
        except ScaffoldError as exc:
            raise CommandError(str(exc)) from exc
