"""``manage.py prune_jobs --older-than 30d [--keep-audit] [--dry-run]``: retention."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from execution.services.retention import DEFAULT_BATCH_SIZE, InvalidAge, parse_age, prune_jobs


class Command(BaseCommand):
    help = (
        "Delete final jobs (and their task records) that finished longer ago than "
        "--older-than; with --keep-audit, keep each job's metadata and outcome and drop "
        "its input and result. Each removal is recorded in the audit trail."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than", required=True, help="An age: 30d, 12h or 90m (by finish time)."
        )
        parser.add_argument(
            "--keep-audit",
            action="store_true",
            help="Keep the jobs' metadata and outcome; drop their input and result.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Print what would go; change nothing."
        )
        parser.add_argument(
            "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="Jobs per transaction."
        )
        parser.add_argument(
            "--actor", default="retention", help="The name the audit records as the pruner."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            older_than = parse_age(options["older_than"])
        except InvalidAge as exc:
            raise CommandError(f"--older-than: {exc}") from exc
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        report = prune_jobs(
            older_than=older_than,
            keep_audit=options["keep_audit"],
            dry_run=options["dry_run"],
            actor=options["actor"],
            batch_size=options["batch_size"],
        )
        verb = "slim" if report.keep_audit else "delete"
        if report.dry_run:
            self.stdout.write(
                f"Dry run: would {verb} {report.jobs} job(s) and {report.tasks} task record(s) "
                f"finished before {report.cutoff.isoformat()}; nothing changed."
            )
            return
        done = "Slimmed" if report.keep_audit else "Deleted"
        self.stdout.write(
            f"{done} {report.jobs} job(s) and {report.tasks} task record(s) finished before "
            f"{report.cutoff.isoformat()}, in {report.batches} batch(es)."
        )
