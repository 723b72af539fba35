"""The admin and the API docs, styled, from gunicorn with DEBUG off (WhiteNoise, collectstatic)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.conf import settings

from tests.browser.test_admin_browser import CHROMIUM, CHROMIUM_ARGS, sync_api
from tests.conftest import ROOT

pytestmark = pytest.mark.any_database

PASSWORD = "a-long-password-1"


@pytest.fixture
def production_server(processes, tmp_path):
    static_root = tmp_path / "static"
    env = {**processes.env, "DEBUG": "0", "STATIC_ROOT": str(static_root)}
    completed = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert (static_root / "staticfiles.json").exists()  # the manifest: hashed names
    # Made by the server's settings: the test's own hash passwords with MD5, for speed.
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "createsuperuser",
            "--noinput",
            "--username",
            "operator",
            "--email",
            "operator@localhost",
        ],
        cwd=ROOT,
        env={**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
        check=True,
        capture_output=True,
        timeout=120,
    )
    return processes.server(DEBUG="0", STATIC_ROOT=str(static_root))


@pytest.fixture
def page(production_server):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(20_000)
        yield page
        browser.close()


def test_the_admin_and_swagger_ui_load_their_static_files(production_server, page):
    base = production_server.base
    failed: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)

    page.goto(f"{base}/admin/login/")
    # base.css sets the header's colours and the body's font: computed, not just fetched.
    header = page.locator("#header")
    assert header.evaluate("e => getComputedStyle(e).display") == "flex"
    assert "rgb(" in header.evaluate("e => getComputedStyle(e).backgroundColor")
    assert header.evaluate("e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"
    stylesheets = page.evaluate("[...document.styleSheets].map(s => s.href).filter(Boolean)")
    assert any("/static/admin/css/base." in href for href in stylesheets), stylesheets
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")
    page.screenshot(path=str(settings.BASE_DIR / "browser-production-admin.png"), full_page=True)

    page.goto(f"{base}/api/docs/")
    page.locator(".opblock").first.wait_for()  # Swagger UI's bundle ran and read the schema
    assert page.locator(".opblock").count() > 5
    page.screenshot(path=str(settings.BASE_DIR / "browser-production-swagger.png"), full_page=True)
    assert failed == []
