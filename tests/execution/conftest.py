import pytest
from django.contrib.auth import get_user_model

from execution.audit import signing
from execution.audit.chain import seal
from tests.execution import audit_scenarios as scenario

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


# The audit tests' shared fixtures ----------------------------------------------------


@pytest.fixture(autouse=True)
def _no_signing_key():
    signing.set_signing_key(None)
    yield
    signing.set_signing_key(None)


@pytest.fixture
def other(db):
    return get_user_model().objects.create_user("bob", password="pw-bob-123456")


@pytest.fixture
def history(user, other):
    """A bit of every kind of job, with its audit entries, sealed."""
    jobs = scenario.a_bit_of_everything(user, other)
    seal()
    return jobs
