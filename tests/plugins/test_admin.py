import pytest

from plugins.models import PluginMetrics
from plugins.runtime.tool_runner import ToolRunner

pytestmark = pytest.mark.django_db


def test_metrics_changelist_lists_every_plugin_with_counts(client, staff_user, settings):
    settings.PLUGINS = ["tests.plugins.sample_plugins.EchoPlugin"]
    ToolRunner().run("echo", {"message": "x"})
    ToolRunner().run("echo", {})
    client.force_login(staff_user)
    response = client.get("/admin/plugins/pluginmetrics/")
    assert response.status_code == 200
    page = response.content.decode()
    for expected in ("text_stats", "image_metadata", "echo", "50.0%", "AVAILABLE"):
        assert expected in page


def test_metrics_are_read_only_in_the_admin(client, staff_user):
    row = PluginMetrics.objects.create(plugin_name="p", success_count=3)
    client.force_login(staff_user)
    assert client.get("/admin/plugins/pluginmetrics/add/").status_code == 403
    response = client.post(f"/admin/plugins/pluginmetrics/{row.pk}/change/", {"success_count": 99})
    assert response.status_code == 403
    assert (
        client.post(f"/admin/plugins/pluginmetrics/{row.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    row.refresh_from_db()
    assert row.success_count == 3
    page = client.get(f"/admin/plugins/pluginmetrics/{row.pk}/change/")
    assert page.status_code == 200
    assert b'name="success_count"' not in page.content


def test_non_staff_users_cannot_see_the_admin(client, user):
    client.force_login(user)
    response = client.get("/admin/plugins/pluginmetrics/")
    assert response.status_code == 302
