from django.apps import AppConfig


class GovernanceScannerConfig(AppConfig):
    name = "governance_scanner"
    verbose_name = "Governance scanner"

    def ready(self) -> None:
        from governance_scanner import checks  # noqa: F401  (registers the system check)
