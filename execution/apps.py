from typing import Any

from django.apps import AppConfig
from django.core.signals import request_started
from django.db.backends.signals import connection_created

from execution.clock import install_sqlite_clock


class ExecutionConfig(AppConfig):
    name = "execution"
    verbose_name = "Execution"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # A process that serves requests also recovers lost jobs (workers do it
        # in db_worker); started on the first request, so commands such as
        # migrate never start it.
        request_started.connect(_start_lease_monitor, dispatch_uid="execution-lease-monitor")
        connection_created.connect(install_sqlite_clock, dispatch_uid="execution-sqlite-clock")
        from execution.api import schema  # noqa: F401  (registers the schema extension)
        from execution.audit.setup import on_ready as audit_on_ready

        audit_on_ready()
        from execution.workers.metrics import register_collector as register_job_metrics

        register_job_metrics()


def _start_lease_monitor(**kwargs: Any) -> None:
    from execution.services.lease_recovery import LeaseMonitor

    LeaseMonitor.ensure_started()
