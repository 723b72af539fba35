"""GOV005 job-status-outside-state-machine."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from governance_scanner.rules.base import (
    FastNodeVisitor,
    Finding,
    ModuleContext,
    PendingFinding,
    Rule,
)

JOB_MODEL = "Job"


class JobStatusOutsideStateMachine(Rule):
    """A Job's ``status`` is written outside the state machine module.

    Status changes are conditional updates in ``execution/models.py``
    (``UPDATE ... WHERE status = <expected>``): that is what stops two workers
    running one job and a stale copy overwriting a newer state. Writing the
    field anywhere else bypasses both.

    Bad::

        job.status = "SUCCESS"
        job.save()
        Job.objects.filter(pk=job_id).update(status="RUNNING")

    Good::

        job.mark_succeeded(result)
        Job.objects.claim(job_id)
    """

    code = "GOV005"
    name = "job-status-outside-state-machine"
    message = "Job status written outside the state machine; use the Job transition methods"
    trigger_words = ("status", "ob")
    # a status write (attribute, keyword or field name) and a job or Job in sight
    triggers = (re.compile(r"\.status\b|\bstatus\s*=|[\"']status[\"']"), re.compile(r"[Jj]ob\b"))

    def applies_to(self, context: ModuleContext) -> bool:
        return not context.is_state_machine and super().applies_to(context)

    def check(self, context: ModuleContext) -> Iterator[Finding | PendingFinding]:
        visitor = _JobStatusVisitor(self, context)
        visitor.visit(context.tree)
        yield from visitor.found


def _is_job_name(name: str) -> bool:
    return name == "job" or name.endswith("_job")


class _JobStatusVisitor(FastNodeVisitor):
    def __init__(self, rule: Rule, context: ModuleContext) -> None:
        self.rule = rule
        self.context = context
        self.job_names: list[set[str]] = [set()]
        self.found: list[Finding | PendingFinding] = []

    def _report(self, node: ast.AST) -> None:
        self.found.append(self.context.finding(type(self.rule), node))

    def _is_job_model(self, node: ast.expr) -> bool:
        if (
            isinstance(node, ast.Name)
            and node.id == JOB_MODEL
            and node.id not in self.context.imports
        ):
            return True
        qualified = self.context.qualified_name(node)
        return qualified is not None and qualified.rsplit(".", 1)[-1] == JOB_MODEL

    def _is_bound(self, name: str) -> bool:
        return any(name in scope for scope in self.job_names)

    def is_queryset(self, node: ast.expr) -> bool:
        """``Job.objects`` and anything chained on it (``.filter(...)``, ``[0]``)."""
        if isinstance(node, ast.Attribute):
            return node.attr == "objects" and self._is_job_model(node.value)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            return self.is_queryset(node.func.value)
        if isinstance(node, ast.Subscript):
            return self.is_queryset(node.value)
        return isinstance(node, ast.Name) and self._is_bound(node.id)

    def is_job(self, node: ast.expr) -> bool:
        """A Job instance or a queryset of Jobs (the status of either is the Job's)."""
        if isinstance(node, ast.Name):
            return _is_job_name(node.id) or self._is_bound(node.id)
        if isinstance(node, ast.Attribute):
            return _is_job_name(node.attr) or self.is_queryset(node)
        if isinstance(node, ast.Call):
            return self._is_job_model(node.func) or self.is_queryset(node)
        if isinstance(node, ast.NamedExpr):
            return self.is_job(node.value)
        return self.is_queryset(node)

    def _bind(self, target: ast.expr, value: ast.expr) -> None:
        if isinstance(target, ast.Name):
            if self.is_job(value):
                self.job_names[-1].add(target.id)
            else:
                self.job_names[-1].discard(target.id)

    # Scopes and bindings ----------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        self.context.add_import(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.context.add_import(node)

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.job_names.append(set())
        self.generic_visit(node)
        self.job_names.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _visit_function

    def visit_For(self, node: ast.For) -> None:
        self.visit(node.iter)
        self._bind(node.target, node.iter)
        for statement in (*node.body, *node.orelse):
            self.visit(statement)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        self.visit(node.iter)
        self._bind(node.target, node.iter)
        for condition in node.ifs:
            self.visit(condition)

    def visit_With(self, node: ast.With) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._bind(item.optional_vars, item.context_expr)
        for statement in node.body:
            self.visit(statement)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.generic_visit(node)
        self._bind(node.target, node.value)

    # What is reported -------------------------------------------------------------

    def _check_targets(self, targets: list[ast.expr]) -> None:
        for target in targets:
            if isinstance(target, ast.Tuple | ast.List):
                self._check_targets(list(target.elts))
            elif (
                isinstance(target, ast.Attribute)
                and target.attr == "status"
                and self.is_job(target.value)
            ):
                self._report(target)

    def visit_Assign(self, node: ast.Assign) -> None:
        self._check_targets(node.targets)
        self.generic_visit(node)
        for target in node.targets:
            self._bind(target, node.value)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._check_targets([node.target])
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self._check_targets([node.target])
            self._bind(node.target, node.value)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id == "setattr" and len(node.args) >= 2:
            field = node.args[1]
            if (
                isinstance(field, ast.Constant)
                and field.value == "status"
                and self.is_job(node.args[0])
            ):
                self._report(node)
        elif isinstance(func, ast.Attribute) and self.is_queryset(func.value):
            keywords = {keyword.arg for keyword in node.keywords}
            writes_status = func.attr in ("update", "create") and "status" in keywords
            if writes_status or (func.attr == "bulk_update" and _names_status(node)):
                self._report(node)
        self.generic_visit(node)


def _names_status(node: ast.Call) -> bool:
    fields = node.args[1] if len(node.args) > 1 else None
    for keyword in node.keywords:
        if keyword.arg == "fields":
            fields = keyword.value
    return isinstance(fields, ast.List | ast.Tuple | ast.Set) and any(
        isinstance(item, ast.Constant) and item.value == "status" for item in fields.elts
    )
