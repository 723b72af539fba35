"""A new plugin package, as ``manage.py startplugin`` writes it: its names and checks.

The package depends on this project's distribution (:data:`HOST_DISTRIBUTION`),
which provides the contract and the test helper, and registers its plugin in the
``governed_plugins`` entry-point group, so installing it is all it takes. The files
are Django templates in ``plugin_template/``, rendered by Django's TemplateCommand.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from plugins.contract import MAX_PLUGIN_NAME_LENGTH

HOST_DISTRIBUTION = "governed-plugin-execution"
"""This project's name on PyPI and in pip: what a plugin package depends on."""
TEMPLATE_DIR = Path(__file__).resolve().parent / "plugin_template"
# A plugin name ([a-z0-9_]+) that also makes Python identifiers: it names the package.
_SCAFFOLD_NAME = re.compile(r"[a-z][a-z0-9_]*")
_RELEASE = re.compile(r"(\d+)\.(\d+)")


class ScaffoldError(ValueError):
    """A name or directory a plugin package cannot be written with; nothing was written."""


@dataclass(frozen=True)
class PluginPackage:
    """What one new plugin package is called, where it goes and what it requires."""

    name: str
    """The plugin's registered name, and its entry point's."""
    package: str
    """The import package: ``<name>_plugin``."""
    distribution: str
    """The name pip knows it by: ``<name>-plugin``."""
    class_name: str
    directory: Path
    host_requirement: str
    """The dependency on the host, a compatible range of the installed version."""

    @classmethod
    def plan(cls, name: str, directory: str | None = None) -> PluginPackage:
        """Check ``name`` and ``directory`` (default: ``./<name>-plugin``); raise ScaffoldError."""
        check_name(name)
        distribution = f"{name.replace('_', '-')}-plugin"
        target = Path(directory if directory else distribution).expanduser().resolve()
        check_directory(target)
        return cls(
            name=name,
            package=f"{name}_plugin",
            distribution=distribution,
            class_name="".join(part.title() for part in name.split("_")) + "Plugin",
            directory=target,
            host_requirement=host_requirement(),
        )

    @property
    def entry_point(self) -> str:
        return f"{self.package}.plugin:{self.class_name}"


def check_name(name: str) -> None:
    """A plugin name that is also a Python identifier and no keyword, or ScaffoldError."""
    if len(name) > MAX_PLUGIN_NAME_LENGTH or not _SCAFFOLD_NAME.fullmatch(name):
        raise ScaffoldError(
            f"{name!r} is not a plugin name for a new package: use lowercase letters, digits "
            f"and underscores ([a-z0-9_]+), starting with a letter (it names the Python "
            f"package), at most {MAX_PLUGIN_NAME_LENGTH} characters"
        )
    if keyword.iskeyword(name):
        raise ScaffoldError(f"{name!r} is a Python keyword: choose another plugin name")


def check_directory(target: Path) -> None:
    """A directory to write into: one that does not exist yet, or an empty one."""
    if target.exists() and not target.is_dir():
        raise ScaffoldError(f"{target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()):
        raise ScaffoldError(f"{target} is not empty: name a new or empty directory")


def host_requirement() -> str:
    """``governed-plugin-execution`` in the range compatible with the installed version.

    Before 1.0 a minor release may break plugins (``>=0.1,<0.2``); from 1.0 on, a
    major one (``>=1.2,<2``). Unpinned when the host is not installed as a
    distribution (run from a checkout without ``pip install -e``).
    """
    try:
        installed = version(HOST_DISTRIBUTION)
    except PackageNotFoundError:
        return HOST_DISTRIBUTION
    release = _RELEASE.match(installed)
    if release is None:
        return HOST_DISTRIBUTION
    major, minor = int(release.group(1)), int(release.group(2))
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    return f"{HOST_DISTRIBUTION}>={major}.{minor},<{upper}"
