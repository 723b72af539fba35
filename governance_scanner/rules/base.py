"""The shape every rule has: a stable code, a name, a one-line message, a docstring.

There are three kinds, as in ruff and bandit:

* a :class:`FileRule` looks at one file. It never walks the tree itself: the
  shared :class:`~governance_scanner.checker.Checker` walks each file once and
  calls the rule's ``visit_<Node>(node, checker)`` hooks, with scopes, imports,
  plugin values and Job values already known;
* a :class:`ProjectRule` looks at the project as a whole, once per scan (the
  runner contract: it depends on configured modules, whichever files were given);
* a :class:`ScannerRule` is reported by the scanner itself (parse errors,
  invalid suppressions); it exists so that its code is documented and selectable.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from governance_scanner.checker import FileOptions, SourceFile
    from governance_scanner.project import Project


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    column: int
    rule: str
    message: str


@dataclass(frozen=True)
class PendingFinding:
    """A finding that holds only if ``class_name`` turns out to derive from a plugin base.

    Class hierarchies span files, so this is decided once every file is parsed.
    """

    finding: Finding
    class_name: str


def finding_at(path: str, rule: type[Rule], node: ast.AST, message: str | None = None) -> Finding:
    return Finding(
        path=path,
        line=getattr(node, "lineno", 1),
        column=getattr(node, "col_offset", 0) + 1,
        rule=rule.code,
        message=message or rule.message,
    )


class Rule:
    """One rule: a stable code, a name, a one-line message; the docstring explains it."""

    code: ClassVar[str]
    name: ClassVar[str]
    message: ClassVar[str]


class FileRule(Rule):
    """A rule decided from one file: ``visit_<Node>(node, checker)`` hooks.

    ``trigger_words`` and ``triggers`` are cheap text tests: a file is walked for
    this rule only if its source contains one of the words (a substring search,
    much faster than a regex) and then matches every pattern, so files that cannot
    hold a violation cost a search or two. A new instance is made for each file:
    hooks may keep state.
    """

    def __init__(self, source: SourceFile) -> None:
        self.source = source
        self.found: list[Finding | PendingFinding] = []

    @classmethod
    def trigger_words(cls, options: FileOptions) -> tuple[str, ...]:
        return ()

    @classmethod
    def triggers(cls, options: FileOptions) -> tuple[re.Pattern[str], ...]:
        return ()

    @classmethod
    def applies_to(cls, source: SourceFile) -> bool:
        text, options = source.text, source.options
        words = cls.trigger_words(options)
        if words and not any(word in text for word in words):
            return False
        return all(pattern.search(text) for pattern in cls.triggers(options))

    def report(self, node: ast.AST, message: str | None = None) -> None:
        self.found.append(finding_at(self.source.display_path, type(self), node, message))


class ProjectRule(Rule):
    """A rule decided once per scan from the project as a whole."""

    def check_project(self, project: Project) -> Iterator[Finding]:
        raise NotImplementedError


class ScannerRule(Rule):
    """A finding the scanner itself makes while reading files."""
