"""A person inspecting a failed job in the admin, in a real browser (Debian's Chromium)."""

import os
import shutil

import pytest

from execution.services import JobExecutionService

pytestmark = pytest.mark.any_database

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
REQUIRED = os.environ.get("REQUIRE_BROWSER_TESTS") == "1"  # set by .ci/run

if not os.path.exists(CHROMIUM):  # pragma: no cover - depends on the machine
    if REQUIRED:
        raise RuntimeError(f"Browser tests are required but {CHROMIUM} is missing")
    pytest.skip(
        "Chromium is not installed (apt-get install chromium); .ci/run installs it",
        allow_module_level=True,
    )

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def failed_job(django_user_model, settings):
    """The data, created before Playwright starts: its sync API runs the test in a
    greenlet with a context of its own, where Django would open (and leak) a second
    database connection."""
    settings.PLUGINS = [
        "tests.plugins.sample_plugins.EchoPlugin",
        "tests.plugins.sample_plugins.RaisingPlugin",
    ]
    django_user_model.objects.create_superuser("operator", password="a-long-password-1")
    service = JobExecutionService()
    service.execute_now(plugin_name="echo", payload={"message": "fine"})
    return service.execute_now(plugin_name="raising", payload={"message": "boom"})


@pytest.fixture
def browser_page(failed_job):
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(15_000)
        yield page
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.mark.django_db(transaction=True)
def test_an_operator_finds_a_failed_job_and_reads_its_traceback(
    live_server, failed_job, browser_page, settings
):
    page = browser_page
    expect = sync_api.expect
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "a-long-password-1")
    page.click("input[type=submit]")
    page.get_by_role("link", name="Jobs", exact=True).click()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)

    page.locator("#changelist-filter").get_by_role("link", name="Failed", exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/admin/execution/job/?status__exact=FAILED")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(failed_job.short_id)

    rows.first.locator("th a").click()
    expect(page.locator("#content")).to_contain_text("PluginExecutionError")
    traceback = page.locator(".job-traceback")
    expect(traceback).to_contain_text("Traceback (most recent call last)")
    expect(traceback).to_contain_text("ValueError: secret connection string")
    page.screenshot(path=str(settings.BASE_DIR / "browser-failed-job.png"), full_page=True)
