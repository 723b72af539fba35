from django.apps import AppConfig


class ApiConfig(AppConfig):
    """The HTTP API's shared parts: errors, parsing, and the OpenAPI schema's extensions."""

    name = "api"
    verbose_name = "API"

    def ready(self) -> None:
        from api import schema  # noqa: F401  (registers the schema extensions)
