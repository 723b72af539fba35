"""Paths through a block of statements: can control leave it without making a call?

:func:`exits_skipping` answers for a ``finally`` body and a test for "this
statement makes the call". It returns how control can leave the block on a path
that never made the call: ``"next"`` (falling off its end), ``"return"``,
``"raise"``, ``"break"`` or ``"continue"``. An empty set means every path makes
the call. Explicit exits are followed through ``if``/``elif``/``else``,
``match``, loops (with ``break``, ``continue`` and ``else``), ``with`` and nested
``try`` (handlers, ``else``, ``finally``). Exceptions that any statement might
raise are not followed, except into a ``try``'s handlers: a handler is entered
without the call unless the call is the first statement of the ``try``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

MakesCall = Callable[[ast.stmt], bool]
NEXT = "next"
_LOOP_EXITS = frozenset({NEXT, "break", "continue"})


def exits_skipping(block: list[ast.stmt], makes_call: MakesCall) -> set[str]:
    """The ways out of ``block`` on which no statement made the call."""
    exits: set[str] = set()
    for statement in block:
        found = _statement_exits(statement, makes_call)
        exits |= found - {NEXT}
        if NEXT not in found:
            return exits
    exits.add(NEXT)
    return exits


def _statement_exits(statement: ast.stmt, makes_call: MakesCall) -> set[str]:
    if makes_call(statement):
        return set()
    if isinstance(statement, ast.Return):
        return {"return"}
    if isinstance(statement, ast.Raise):
        return {"raise"}
    if isinstance(statement, ast.Break):
        return {"break"}
    if isinstance(statement, ast.Continue):
        return {"continue"}
    if isinstance(statement, ast.If):
        return exits_skipping(statement.body, makes_call) | exits_skipping(
            statement.orelse, makes_call
        )
    if isinstance(statement, ast.For | ast.AsyncFor | ast.While):
        return _loop_exits(statement, makes_call)
    if isinstance(statement, ast.With | ast.AsyncWith):
        return exits_skipping(statement.body, makes_call)
    if isinstance(statement, ast.Try | ast.TryStar):
        return _try_exits(statement, makes_call)
    if isinstance(statement, ast.Match):
        exits: set[str] = set()
        for case in statement.cases:
            exits |= exits_skipping(case.body, makes_call)
        if not any(_catches_everything(case) for case in statement.cases):
            exits.add(NEXT)  # no case matched
        return exits
    return {NEXT}


def _catches_everything(case: ast.match_case) -> bool:
    pattern = case.pattern
    while isinstance(pattern, ast.MatchAs) and pattern.pattern is not None:
        pattern = pattern.pattern
    return case.guard is None and isinstance(pattern, ast.MatchAs) and pattern.pattern is None


def _loop_exits(loop: ast.For | ast.AsyncFor | ast.While, makes_call: MakesCall) -> set[str]:
    body = exits_skipping(loop.body, makes_call)
    exits = body - _LOOP_EXITS
    if "break" in body:
        exits.add(NEXT)
    endless = (
        isinstance(loop, ast.While) and isinstance(loop.test, ast.Constant) and loop.test.value
    )
    if not endless:
        # The loop can end without a break: at once, or after iterations that skipped the call.
        exits |= exits_skipping(loop.orelse, makes_call)
    return exits


def _try_exits(statement: ast.Try | ast.TryStar, makes_call: MakesCall) -> set[str]:
    body = exits_skipping(statement.body, makes_call)
    before_finally = body - {NEXT}
    if NEXT in body:
        before_finally |= exits_skipping(statement.orelse, makes_call)
    if statement.handlers and not (statement.body and makes_call(statement.body[0])):
        for handler in statement.handlers:
            before_finally |= exits_skipping(handler.body, makes_call)
    if not statement.finalbody or not before_finally:
        return before_finally
    final = exits_skipping(statement.finalbody, makes_call)
    if NEXT not in final:
        return final  # the finally makes the call or leaves by itself on every path
    return (final - {NEXT}) | before_finally
