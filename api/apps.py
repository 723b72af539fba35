from django.apps import AppConfig


class ApiConfig(AppConfig):
    """The HTTP layer every endpoint shares: errors, parsing, the OpenAPI schema's base."""

    name = "api"
    verbose_name = "API"
