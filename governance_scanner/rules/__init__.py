"""The rule catalogue, registered once. Codes and names are stable: tools and
suppressions refer to them. Every other list of rules derives from ``RULES``."""

from __future__ import annotations

from governance_scanner.rules.base import FileRule, ProjectRule, Rule, ScannerRule
from governance_scanner.rules.gov001_ungoverned_plugin_call import UngovernedPluginCall
from governance_scanner.rules.gov005_job_status import JobStatusOutsideStateMachine
from governance_scanner.rules.gov006_layer_skip import LayerSkip
from governance_scanner.rules.runner_contract import (
    MetricsNotInFinally,
    ToolRunnerMissing,
    ToolRunnerNoFinally,
)


class ParseError(ScannerRule):
    """A file cannot be parsed (syntax error, bad encoding, binary content).

    The scanner never imports or runs code, so a file it cannot parse is a file
    it cannot vouch for. It is reported at the line Python gives (1 when it
    gives none) and the other files are still scanned.

    Bad::

        def broken(:
            pass

    Good::

        def fixed():
            pass
    """

    code = "GOV000"
    name = "parse-error"
    message = "file cannot be parsed"


class InvalidSuppression(ScannerRule):
    """A suppression comment without a reason, or naming no known rule.

    A suppression is a decision someone must be able to review, so it names the
    rule it silences and says why, on the offending line itself. An invalid
    suppression suppresses nothing: the underlying finding is reported too.

    Bad::

        result = plugin.run(payload)  # governance: allow[GOV001]

    Good::

        result = plugin.run(payload)  # governance: allow[GOV001] exercises the runtime guard
    """

    code = "GOV007"
    name = "invalid-suppression"
    message = "suppression without a reason"


RULES: tuple[type[Rule], ...] = (
    ParseError,
    UngovernedPluginCall,
    ToolRunnerMissing,
    ToolRunnerNoFinally,
    MetricsNotInFinally,
    JobStatusOutsideStateMachine,
    LayerSkip,
    InvalidSuppression,
)
RULES_BY_CODE: dict[str, type[Rule]] = {rule.code: rule for rule in RULES}
FILE_RULES: tuple[type[FileRule], ...] = tuple(r for r in RULES if issubclass(r, FileRule))
PROJECT_RULES: tuple[type[ProjectRule], ...] = tuple(r for r in RULES if issubclass(r, ProjectRule))

__all__ = ["FILE_RULES", "PROJECT_RULES", "RULES", "RULES_BY_CODE"]
