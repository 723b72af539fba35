"""``manage.py verify_audit``: is the audit chain intact, and are the records it describes?

Exit status 0 with a one-line summary when everything verifies; 1 naming the
first broken link of the chain (or the first record that is not as audited)
otherwise. Read-only: it takes no lock and writes nothing.
"""

from __future__ import annotations

import json
import re
from argparse import ArgumentParser, ArgumentTypeError
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from execution.audit.verify import Problem, Report, verify


def held_head(value: str) -> tuple[int, str]:
    match = re.fullmatch(r"(\d+):([0-9a-f]{64})", value.strip())
    if match is None:
        raise ArgumentTypeError("expected SEQ:HASH, e.g. 1234:9f86d081...")
    return int(match.group(1)), match.group(2)


class Command(BaseCommand):
    help = (
        "Verify the audit trail: the hash chain in seq order (the first broken link is "
        "named) and the jobs and plugin metrics it describes. Exits 1 on any problem."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--expect-head",
            type=held_head,
            metavar="SEQ:HASH",
            help="a head held outside the database (a seal's log line): the chain must "
            "still have that entry, with that hash",
        )
        parser.add_argument(
            "--chain-only",
            action="store_true",
            help="check the chain only, not the jobs and metrics it describes",
        )
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        report = verify(expect_head=options["expect_head"], check_records=not options["chain_only"])
        if options["json"]:
            self.stdout.write(json.dumps(_as_json(report), indent=2))
        elif report.ok:
            self.stdout.write(
                f"Audit trail verified: {report.entries} sealed entries (seq "
                f"{report.base_seq + 1}-{report.head_seq}, head {report.head_hash[:16]}), "
                f"{report.unsealed} waiting to be sealed, {report.jobs} jobs, in "
                f"{report.elapsed_s:.1f} s"
            )
        else:
            self._print_problems(report)
        if not report.ok:
            raise CommandError("The audit trail does not verify", returncode=1)

    def _print_problems(self, report: Report) -> None:
        if report.chain_problem is not None:
            self.stderr.write(f"BROKEN CHAIN: {report.chain_problem.message}")
        for problem in report.record_problems:
            self.stderr.write(f"RECORD: {problem.message}")
        hidden = report.record_problem_count - len(report.record_problems)
        if hidden > 0:
            self.stderr.write(f"... and {hidden} more records that are not as audited")


def _problem_json(problem: Problem) -> dict[str, Any]:
    return {
        "kind": problem.kind,
        "message": problem.message,
        "seq": problem.seq,
        "entry_id": problem.entry_id,
        "job_id": str(problem.job_id) if problem.job_id else None,
    }


def _as_json(report: Report) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "sealed_entries": report.entries,
        "unsealed_entries": report.unsealed,
        "jobs": report.jobs,
        "base_seq": report.base_seq,
        "head_seq": report.head_seq,
        "head_hash": report.head_hash,
        "chain_problem": _problem_json(report.chain_problem) if report.chain_problem else None,
        "record_problems": [_problem_json(p) for p in report.record_problems],
        "record_problem_count": report.record_problem_count,
        "elapsed_s": round(report.elapsed_s, 3),
    }
