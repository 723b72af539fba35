"""Inline suppressions: ``# governance: allow[GOV001] <reason>`` on the offending line."""

from __future__ import annotations

import re
from dataclasses import dataclass

from governance_scanner.rules.base import Finding

MARKER = "governance:"
SUPPRESSION = re.compile(r"#\s*governance:\s*allow\[(?P<codes>[^\]]*)\](?P<reason>.*)$")


@dataclass(frozen=True)
class Suppression:
    codes: frozenset[str]
    reason: str


def parse_suppressions(
    source: str, display_path: str, known_codes: frozenset[str]
) -> tuple[dict[int, Suppression], list[Finding]]:
    """Valid suppressions by line, and a GOV007 finding for every invalid one."""
    suppressions: dict[int, Suppression] = {}
    invalid: list[Finding] = []
    if MARKER not in source:
        return suppressions, invalid
    import io  # only here: most files have no marker, and warm runs parse none
    import tokenize

    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return suppressions, invalid
    for token in tokens:
        if token.type != tokenize.COMMENT or MARKER not in token.string:
            continue
        line, column = token.start[0], token.start[1] + 1
        match = SUPPRESSION.search(token.string)
        if match is None:
            problem = "malformed suppression; write # governance: allow[GOV001] <reason>"
        else:
            codes = frozenset(code.strip() for code in match["codes"].split(",") if code.strip())
            reason = match["reason"].strip()
            unknown = sorted(codes - known_codes)
            if not codes:
                problem = "suppression names no rule code"
            elif unknown:
                problem = f"suppression names unknown code {', '.join(unknown)}"
            elif not reason:
                problem = "suppression without a reason; say why after the ]"
            else:
                suppressions[line] = Suppression(codes, reason)
                continue
        invalid.append(Finding(display_path, line, column, "GOV007", problem))
    return suppressions, invalid
