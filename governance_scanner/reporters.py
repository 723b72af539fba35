"""Output formats: text (default), json, sarif, github."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from governance_scanner.rules import RULES, RULES_BY_CODE
from governance_scanner.rules.base import Finding
from governance_scanner.scanner import ScanResult

JSON_VERSION = 1
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
TOOL_NAME = "governance-scanner"
DISTRIBUTION = "governed-plugin-execution"
SCANNER_DOCS = Path(__file__).resolve().parent.parent / "docs" / "scanner.md"


def tool_version() -> str:
    """The version of the distribution the scanner ships in."""
    from importlib import metadata  # only SARIF needs it; it is slow to import

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def information_uri() -> str:
    """The project's own page: its declared home page, else the scanner's reference page."""
    from importlib import metadata

    try:
        urls = metadata.metadata(DISTRIBUTION).get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        urls = []
    for entry in urls:
        _, _, url = entry.partition(", ")
        if url.startswith("https://"):
            return str(url)
    return SCANNER_DOCS.as_uri()


def _rule_name(code: str) -> str:
    rule = RULES_BY_CODE.get(code)
    return rule.name if rule else code


def _finding_dict(finding: Finding) -> dict[str, Any]:
    return {
        "rule": finding.rule,
        "name": _rule_name(finding.rule),
        "path": finding.path,
        "line": finding.line,
        "column": finding.column,
        "message": finding.message,
    }


def render_json(result: ScanResult) -> str:
    return json.dumps(
        {
            "version": JSON_VERSION,
            "files_scanned": result.files_scanned,
            "violations": [_finding_dict(finding) for finding in result.violations],
            "suppressed": [
                {**_finding_dict(item.finding), "reason": item.reason} for item in result.suppressed
            ],
        },
        indent=2,
    )


def render_text(result: ScanResult, *, statistics: bool = False) -> str:
    lines = [f"{f.path}:{f.line}:{f.column}: {f.rule} {f.message}" for f in result.violations]
    if statistics and result.violations:
        counts = Counter(finding.rule for finding in result.violations)
        lines.append("")
        lines.extend(
            f"{count:5}  {code}  {_rule_name(code)}" for code, count in sorted(counts.items())
        )
    files = len({finding.path for finding in result.violations})
    suppressed = f", {len(result.suppressed)} suppressed" if result.suppressed else ""
    if result.violations:
        lines.append(
            f"Found {len(result.violations)} violation(s) in {files} file(s) "
            f"({result.files_scanned} files scanned{suppressed})."
        )
    else:
        lines.append(f"No violations ({result.files_scanned} files scanned{suppressed}).")
    return "\n".join(lines)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(result: ScanResult) -> str:
    """GitHub Actions workflow commands: one ::error annotation per violation."""
    return "\n".join(
        f"::error file={_escape_property(f.path)},line={f.line},col={f.column},"
        f"title={_escape_property(f'{f.rule} {_rule_name(f.rule)}')}::{_escape_data(f.message)}"
        for f in result.violations
    )


def rule_help(code: str) -> str:
    import inspect  # only --explain and SARIF need it; it is slow to import

    rule = RULES_BY_CODE[code]
    return inspect.cleandoc(rule.__doc__ or rule.message)


def render_sarif(result: ScanResult) -> str:
    rules = [
        {
            "id": rule.code,
            "name": rule.name,
            "shortDescription": {"text": rule.message},
            "fullDescription": {"text": rule_help(rule.code).splitlines()[0]},
            "help": {"text": rule_help(rule.code), "markdown": rule_help(rule.code)},
            "defaultConfiguration": {"level": "error"},
        }
        for rule in RULES
    ]
    index = {rule.code: position for position, rule in enumerate(RULES)}

    def sarif_result(finding: Finding, justification: str | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {
            "ruleId": finding.rule,
            "ruleIndex": index[finding.rule],
            "level": "error",
            "message": {"text": finding.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": finding.path, "uriBaseId": "%SRCROOT%"},
                        "region": {"startLine": finding.line, "startColumn": finding.column},
                    }
                }
            ],
        }
        if justification is not None:
            item["suppressions"] = [{"kind": "inSource", "justification": justification}]
        return item

    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": TOOL_NAME,
                        "version": tool_version(),
                        "informationUri": information_uri(),
                        "rules": rules,
                    }
                },
                "results": [
                    *(sarif_result(finding) for finding in result.violations),
                    *(sarif_result(item.finding, item.reason) for item in result.suppressed),
                ],
                "columnKind": "unicodeCodePoints",
            }
        ],
    }
    return json.dumps(log, indent=2)


def render(result: ScanResult, output_format: str, *, statistics: bool = False) -> str:
    if output_format == "json":
        return render_json(result)
    if output_format == "sarif":
        return render_sarif(result)
    if output_format == "github":
        return render_github(result)
    return render_text(result, statistics=statistics)
