from django.apps import AppConfig


class GovernanceScannerConfig(AppConfig):
    name = "governance_scanner"
    verbose_name = "Governance scanner"
