"""GOV005 job-status-outside-state-machine."""

from __future__ import annotations

import ast
import re

from governance_scanner.checker import Checker, FileOptions, SourceFile, word_pattern
from governance_scanner.rules.base import FileRule

_STATUS_WRITE = re.compile(r"\.status\b|\bstatus\s*=|[\"']status[\"']")


class JobStatusOutsideStateMachine(FileRule):
    """A Job's ``status`` is written outside the state machine modules.

    Status changes are conditional updates in ``execution/models.py``
    (``UPDATE ... WHERE status = <expected>``): that is what stops two workers
    running one job and a stale copy overwriting a newer state. Writing the
    field anywhere else bypasses both. Django's ORM and SQLAlchemy's update
    forms are recognised; the models are ``job-models``, the modules allowed to
    write are ``state-machine-modules``.

    Bad::

        job.status = "SUCCESS"
        job.save()
        Job.objects.filter(pk=job_id).update(status="RUNNING")
        session.query(Job).filter(Job.id == job_id).update({"status": "RUNNING"})
        session.execute(update(Job).values(status="RUNNING"))

    Good::

        job.mark_succeeded(result)
        Job.objects.claim(job_id)
    """

    code = "GOV005"
    name = "job-status-outside-state-machine"
    message = "Job status written outside the state machine; use the Job transition methods"

    @classmethod
    def trigger_words(cls, options: FileOptions) -> tuple[str, ...]:
        return ("status",)

    @classmethod
    def triggers(cls, options: FileOptions) -> tuple[re.Pattern[str], ...]:
        # a status write (attribute, keyword or field name) and a job or a Job model in sight
        return (_STATUS_WRITE, word_pattern(("job", *options.job_models), r"(?:{})\b"))

    @classmethod
    def applies_to(cls, source: SourceFile) -> bool:
        return not source.is_state_machine and super().applies_to(source)

    def _check_targets(self, targets: list[ast.expr], checker: Checker) -> None:
        for target in targets:
            if isinstance(target, ast.Tuple | ast.List):
                self._check_targets(list(target.elts), checker)
            elif (
                isinstance(target, ast.Attribute)
                and target.attr == "status"
                and checker.is_job(target.value)
            ):
                self.report(target)

    def visit_Assign(self, node: ast.Assign, checker: Checker) -> None:
        self._check_targets(node.targets, checker)

    def visit_AugAssign(self, node: ast.AugAssign, checker: Checker) -> None:
        self._check_targets([node.target], checker)

    def visit_AnnAssign(self, node: ast.AnnAssign, checker: Checker) -> None:
        if node.value is not None:
            self._check_targets([node.target], checker)

    def visit_Call(self, node: ast.Call, checker: Checker) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id == "setattr" and len(node.args) >= 2:
            if _is_status(node.args[1]) and checker.is_job(node.args[0]):
                self.report(node)
        elif isinstance(func, ast.Attribute) and checker.is_job_query(func.value):
            writes = func.attr in ("update", "create", "values") and _sets_status(node)
            if writes or (func.attr == "bulk_update" and _names_status(node)):
                self.report(node)


def _is_status(node: ast.expr) -> bool:
    """``"status"`` (a field name) or ``Job.status`` (SQLAlchemy's column)."""
    if isinstance(node, ast.Constant):
        return node.value == "status"
    return isinstance(node, ast.Attribute) and node.attr == "status"


def _sets_status(node: ast.Call) -> bool:
    """``status=...`` or a mapping with a status key: ``.update({"status": ...})``."""
    if any(keyword.arg == "status" for keyword in node.keywords):
        return True
    return any(
        isinstance(argument, ast.Dict)
        and any(key is not None and _is_status(key) for key in argument.keys)
        for argument in node.args
    )


def _names_status(node: ast.Call) -> bool:
    fields = node.args[1] if len(node.args) > 1 else None
    for keyword in node.keywords:
        if keyword.arg == "fields":
            fields = keyword.value
    return isinstance(fields, ast.List | ast.Tuple | ast.Set) and any(
        _is_status(item) for item in fields.elts
    )
