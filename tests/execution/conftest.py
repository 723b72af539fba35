import pytest

SAMPLE_PLUGINS = [
    f"tests.plugins.sample_plugins.{name}"
    for name in (
        "EchoPlugin",
        "RaisingPlugin",
        "NoneReturningPlugin",
        "WrongOutputPlugin",
        "SlowPlugin",
        "NoOpPlugin",
    )
] + ["tests.plugins.broken_import.Broken"]


@pytest.fixture(autouse=True)
def _sample_plugins(settings):
    settings.PLUGINS = SAMPLE_PLUGINS
