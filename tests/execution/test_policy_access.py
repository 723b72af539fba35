"""Who may run what: grants to users and groups, restricted and open access, the listing."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from execution.audit.events import AuditEvent
from execution.audit.models import AuditEntry
from execution.models import Job, JobStatus
from execution.policy.models import PluginGrant
from execution.policy.tokens import create_token
from execution.services import AnalysisExecutionService
from execution.services.job_execution_service import JobExecutionService
from plugins.metrics.instruments import POLICY_DECISIONS

pytestmark = pytest.mark.django_db

ECHO = {"plugin": "echo", "payload": {"message": "hi"}}


@pytest.fixture(autouse=True)
def _restricted(settings):
    settings.PLUGIN_ACCESS = "restricted"


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {create_token(user=user).key}")
    return client


def decisions(decision: str, reason: str, plugin: str) -> float:
    return POLICY_DECISIONS.labels(decision=decision, reason=reason, plugin=plugin)._value.get()


def test_without_a_grant_a_run_is_403_naming_the_plugin_and_only_the_refusal_is_recorded(
    api_client, user
):
    before = decisions("denied", "no_grant", "echo")
    for url in ("/v1/analyze-execution", "/v1/jobs"):
        response = api_client.post(url, ECHO, format="json")
        assert response.status_code == 403, response.content
        error = response.json()["detail"]
        assert error["type"] == "PermissionDenied"
        assert error["plugin"] == "echo"
        assert "echo" in error["message"]
        assert error["details"] == {"plugin": "echo", "access": "restricted"}
    assert not Job.objects.exists()
    entries = list(AuditEntry.objects.values_list("event", "actor", "plugin_name", "error_type"))
    assert entries == [(AuditEvent.POLICY_DENIED, "alice", "echo", "PermissionDenied")] * 2
    assert decisions("denied", "no_grant", "echo") == before + 2


def test_a_grant_to_the_user_lets_them_run_it_both_ways(api_client, user):
    PluginGrant.objects.create(plugin_name="echo", user=user)
    before = decisions("allowed", "grant", "echo")
    response = api_client.post("/v1/analyze-execution", ECHO, format="json")
    assert response.status_code == 200, response.content
    assert api_client.post("/v1/jobs", ECHO, format="json").status_code == 202
    assert decisions("allowed", "grant", "echo") == before + 2
    # A grant is of one plugin only.
    response = api_client.post(
        "/v1/analyze-execution", {"plugin": "noop", "payload": {}}, format="json"
    )
    assert response.status_code == 403


def test_a_grant_to_a_group_covers_its_members_only(api_client, user):
    analysts = Group.objects.create(name="analysts")
    PluginGrant.objects.create(plugin_name="echo", group=analysts)
    assert api_client.post("/v1/analyze-execution", ECHO, format="json").status_code == 403
    user.groups.add(analysts)
    assert api_client.post("/v1/analyze-execution", ECHO, format="json").status_code == 200


def test_open_access_lets_every_user_run_every_plugin(settings, api_client):
    settings.PLUGIN_ACCESS = "open"
    assert api_client.post("/v1/analyze-execution", ECHO, format="json").status_code == 200


def test_a_superuser_runs_everything_without_a_grant(staff_user):
    client = client_for(staff_user)
    assert client.post("/v1/analyze-execution", ECHO, format="json").status_code == 200


def test_an_unknown_plugin_is_403_for_whom_it_is_not_granted_and_404_like_for_a_superuser(
    api_client, staff_user
):
    body = {"plugin": "no_such_plugin", "payload": {}}
    assert api_client.post("/v1/jobs", body, format="json").status_code == 403
    response = client_for(staff_user).post("/v1/jobs", body, format="json")
    assert response.json()["detail"]["type"] == "PluginNotFound"


def test_the_plugin_list_shows_a_user_what_they_may_run(api_client, user):
    PluginGrant.objects.create(plugin_name="echo", user=user)
    listed = api_client.get("/v1/plugins").json()
    assert [(p["name"], p["may_run"]) for p in listed] == [("echo", True)]
    assert api_client.get("/v1/plugins/echo").status_code == 200
    response = api_client.get("/v1/plugins/noop")
    assert response.status_code == 404
    assert response.json()["detail"]["type"] == "PluginNotFound"


def test_staff_see_every_plugin_marked_whether_they_may_run_it(db):
    staff = get_user_model().objects.create_user("stella", password="pw-stella-1", is_staff=True)
    PluginGrant.objects.create(plugin_name="noop", user=staff)
    client = client_for(staff)
    listed = {p["name"]: p["may_run"] for p in client.get("/v1/plugins").json()}
    assert listed["noop"] is True
    assert listed["echo"] is False
    assert len(listed) > 2
    assert client.get("/v1/plugins/echo").json()["may_run"] is False


def test_a_superuser_sees_every_plugin_runnable(staff_user):
    listed = client_for(staff_user).get("/v1/plugins").json()
    assert listed
    assert all(p["may_run"] for p in listed)


def test_the_admins_rerun_checks_the_grant_of_whoever_reruns(
    user, django_capture_on_commit_callbacks
):
    PluginGrant.objects.create(plugin_name="echo", user=user)
    job = AnalysisExecutionService().execute(
        plugin_name="echo", payload={"message": "x"}, user=user
    )
    operator = get_user_model().objects.create_user("otto", password="pw-otto-12345", is_staff=True)
    service = AnalysisExecutionService()
    with pytest.raises(Exception, match="not granted") as refused:
        service.rerun(job=job, user=operator)
    assert type(refused.value).__name__ == "PluginAccessDenied"
    assert Job.objects.count() == 1
    assert AuditEntry.objects.filter(event=AuditEvent.POLICY_DENIED, actor="otto").count() == 1
    assert not AuditEntry.objects.filter(event=AuditEvent.JOB_RERUN).exists()
    PluginGrant.objects.create(plugin_name="echo", user=operator)
    again = service.rerun(job=job, user=operator)
    assert again.status == JobStatus.PENDING


def test_the_admin_action_reports_a_rerun_policy_refuses(client, user):
    PluginGrant.objects.create(plugin_name="echo", user=user)
    job = AnalysisExecutionService().execute(
        plugin_name="echo", payload={"message": "x"}, user=user
    )
    operator = get_user_model().objects.create_user("otto", password="pw-otto-12345", is_staff=True)
    from django.contrib.auth.models import Permission

    operator.user_permissions.add(*Permission.objects.filter(codename__in=["add_job", "view_job"]))
    client.force_login(operator)
    response = client.post(
        reverse("admin:execution_job_changelist"),
        {"action": "run_again", "_selected_action": [str(job.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert "not granted to you" in response.content.decode()
    assert Job.objects.count() == 1


def test_grants_are_managed_in_the_admin(admin_client, user):
    response = admin_client.post(
        reverse("admin:execution_plugingrant_add"),
        {"plugin_name": "echo", "user": user.pk, "max_sync_runs": "2"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    grant = PluginGrant.objects.get()
    assert (grant.plugin_name, grant.user, grant.max_sync_runs) == ("echo", user, 2)
    # One user or one group, not both, not neither.
    response = admin_client.post(
        reverse("admin:execution_plugingrant_add"), {"plugin_name": "noop"}
    )
    assert "one user or one group" in response.content.decode()
    assert admin_client.get(reverse("admin:execution_plugingrant_changelist")).status_code == 200


def test_grant_plugin_command_grants_and_revokes(user):
    call_command("grant_plugin", "echo", "--user", "alice", "--max-active-jobs", "5")
    grant = PluginGrant.objects.get()
    assert (grant.user, grant.max_active_jobs, grant.max_sync_runs) == (user, 5, None)
    call_command("grant_plugin", "echo", "--group", "analysts")
    assert PluginGrant.objects.get(group__name="analysts").plugin_name == "echo"
    call_command("grant_plugin", "echo", "--user", "alice", "--revoke")
    assert not PluginGrant.objects.filter(user=user).exists()


def test_a_job_runs_in_the_background_only_through_a_checked_submission(user):
    """The worker does not check again: the grant was checked when the job was recorded."""
    PluginGrant.objects.create(plugin_name="echo", user=user)
    job = AnalysisExecutionService().submit(plugin_name="echo", payload={"message": "x"}, user=user)
    PluginGrant.objects.all().delete()
    ran = JobExecutionService().run_job(job_id=job.pk)
    assert ran.status == JobStatus.SUCCESS


def test_the_schema_documents_the_refusals_and_quota_exceeded(client):
    schema = client.get("/api/schema/?format=json").json()
    components = schema["components"]["schemas"]
    assert "QuotaExceeded" in components["Error"]["discriminator"]["mapping"]
    details = components["QuotaExceededError"]["properties"]["details"]["properties"]
    assert {"quota", "limit", "used", "resets_at", "resets"} <= set(details)
    for path in ("/v1/analyze-execution", "/v1/jobs"):
        responses = schema["paths"][path]["post"]["responses"]
        assert "QuotaExceeded" in responses["429"]["description"]
        assert "grant" in responses["403"]["description"]


def test_an_unknown_plugin_access_setting_stops_the_start():
    import subprocess
    import sys

    from tests.conftest import ROOT

    completed = subprocess.run(
        [sys.executable, "-c", "import project.settings"],
        cwd=ROOT,
        env={"PLUGIN_ACCESS": "everyone", "SECRET_KEY": "x", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode != 0
    assert "PLUGIN_ACCESS must be 'restricted' or 'open'" in completed.stderr
