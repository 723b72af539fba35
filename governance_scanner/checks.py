"""The scan as a Django system check (tag ``governance``): ``manage.py check`` and
``runserver`` report violations in the project's own code as errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core import checks

from governance_scanner.config import ConfigError, load_config
from governance_scanner.scanner import Scanner, UsageError


@checks.register("governance")
def check_governance(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    root = Path(settings.BASE_DIR)
    try:
        config = load_config(None, cwd=root)
        result = Scanner(config, cwd=root, jobs=1).scan([root])
    except (ConfigError, UsageError) as exc:
        return [checks.Error(f"Governance scan could not run: {exc}", id="governance.E000")]
    return [
        checks.Error(
            f"{finding.path}:{finding.line}:{finding.column}: {finding.message}",
            hint=f"python manage.py scan_violations --explain {finding.rule}",
            id=f"governance.{finding.rule}",
        )
        for finding in result.violations
    ]
