"""The admin pages of an incident fit at 1280 and 1920 px: nothing overflows its box.

Screenshots of each page at each width are written beside the project
(browser-width-<page>-<width>.png) for a person to look at.
"""

from __future__ import annotations

import os

import pytest

from execution.models import Job
from execution.services import JobExecutionService
from tests.browser.test_admin_browser import CHROMIUM, CHROMIUM_ARGS, sync_api

pytestmark = pytest.mark.any_database

WIDTHS = (1280, 1920)

# Every element of the page's content whose content is wider than its own box (and that
# does not scroll on purpose), as "tag.class: scrollWidth > clientWidth".
OVERFLOWING = """
() => {
  const out = [];
  const boxes = document.querySelectorAll(
    '#content, #content-main, #changelist, #result_list, #result_list th, #result_list td, '
    + 'fieldset, .form-row, .readonly, table, table td, table th, .hourly, .overview'
  );
  for (const el of boxes) {
    const style = getComputedStyle(el);
    if (style.overflowX === 'auto' || style.overflowX === 'scroll') continue;
    if (el.scrollWidth > el.clientWidth + 1) {
      const name = `${el.tagName.toLowerCase()}.${el.className}`;
      out.push(`${name}: ${el.scrollWidth} > ${el.clientWidth}`);
    }
  }
  const doc = document.documentElement;
  if (doc.scrollWidth > doc.clientWidth + 1) {
    out.push(`page: ${doc.scrollWidth} > ${doc.clientWidth}`);
  }
  return out;
}
"""


@pytest.fixture
def incident(django_user_model, settings):
    """Jobs of every kind, made before Playwright starts (see test_admin_browser.py)."""
    settings.PLUGINS = [
        "tests.plugins.sample_plugins.EchoPlugin",
        "tests.plugins.sample_plugins.RaisingPlugin",
    ]
    admin = django_user_model.objects.create_superuser("operator", password="a-long-password-1")
    service = JobExecutionService()
    for i in range(3):
        service.execute_now(
            plugin_name="echo", payload={"message": f"fine {i}"}, requested_by=admin
        )
    failed = service.execute_now(
        plugin_name="raising", payload={"message": "boom " * 40}, requested_by=admin
    )
    Job.objects.filter(pk=failed.pk).update(attempt=3)
    return failed


@pytest.fixture
def browser(incident):
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", WIDTHS)
def test_no_admin_page_of_an_incident_is_clipped(live_server, incident, browser, settings, width):
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "a-long-password-1")
    page.click("input[type=submit]")
    pages = {
        "jobs": "/admin/execution/job/",
        "job": f"/admin/execution/job/{incident.pk}/change/",
        "overview": "/admin/execution/job/overview/?window=day",
        "metrics": "/admin/plugins/pluginmetrics/",
    }
    clipped = {}
    for name, url in pages.items():
        page.goto(f"{live_server.url}{url}")
        sync_api.expect(page.locator("#content")).to_be_visible()
        page.screenshot(
            path=str(settings.BASE_DIR / f"browser-width-{name}-{width}.png"), full_page=True
        )
        if overflowing := page.evaluate(OVERFLOWING):
            clipped[name] = overflowing
    assert clipped == {}
    # The columns an incident needs are on the list, and each is wholly visible.
    page.goto(f"{live_server.url}/admin/execution/job/")
    for column in ("error_type_display", "attempt", "created_display", "duration_display"):
        cell = page.locator(f"#result_list td.field-{column}").first
        box, table = cell.bounding_box(), page.locator("#result_list").bounding_box()
        assert box
        assert table
        assert box["x"] + box["width"] <= table["x"] + table["width"] + 1
        assert box["x"] + box["width"] <= width
