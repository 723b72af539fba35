"""manage.py verify_audit and seal_audit, the audit log's admin, its gauges, and its key."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from prometheus_client.parser import text_string_to_metric_families

from execution.audit.chain import seal
from execution.audit.metrics import hash_prefix
from execution.audit.models import AuditChain, AuditEntry
from tests.conftest import ROOT, subprocess_env
from tests.execution import audit_scenarios as scenario
from tests.execution.audit_scenarios import sql

ENTRY_TABLE = AuditEntry._meta.db_table
CHANGELIST = "/admin/execution/auditentry/"


@pytest.fixture
def history(user):
    other = get_user_model().objects.create_user("bob", password="pw-bob-123456")
    jobs = scenario.a_bit_of_everything(user, other)
    seal()
    return jobs


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_a_clean_trail_exits_0_with_a_one_line_summary(history):
    out, _ = run("verify_audit")
    head = AuditChain.objects.get()
    assert out.count("\n") == 1
    assert out.startswith(f"Audit trail verified: {head.head_seq} sealed entries (seq 1-")
    assert f"{len(history)} jobs" in out


def test_a_broken_link_exits_1_and_is_named(history):
    target = AuditEntry.objects.get(seq=3)
    sql(f"UPDATE {ENTRY_TABLE} SET details = %s WHERE id = %s", ['{"forged": true}', target.pk])
    with pytest.raises(CommandError) as raised:
        run("verify_audit")
    assert raised.value.returncode == 1


def test_the_report_names_the_first_broken_link(history, capsys):
    first, second = AuditEntry.objects.filter(seq__in=[3, 6]).order_by("seq")
    for entry in (first, second):
        sql(f"UPDATE {ENTRY_TABLE} SET actor = 'x' WHERE id = %s", [entry.pk])
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("verify_audit", stdout=StringIO(), stderr=err)
    assert err.getvalue().splitlines()[0] == (
        f"BROKEN CHAIN: Entry id {first.pk} at seq 3 does not match its hash: edited"
    )


def test_json_output(history):
    sql(f"DELETE FROM {ENTRY_TABLE} WHERE seq = 4")
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("verify_audit", "--json", stdout=out, stderr=StringIO())
    report = json.loads(out.getvalue())
    assert report["ok"] is False
    assert report["chain_problem"]["kind"] == "deleted"
    assert report["chain_problem"]["seq"] == 5


def test_a_held_head_is_checked(history):
    head = AuditChain.objects.get()
    run("verify_audit", "--expect-head", f"{head.head_seq}:{head.head_hash}")
    with pytest.raises(CommandError):
        run("verify_audit", "--expect-head", f"{head.head_seq}:{'1' * 64}")


def test_seal_audit_seals_and_prints_the_head(db, user):
    scenario.refuse(user)
    out, _ = run("seal_audit")
    head = AuditChain.objects.get()
    assert out.strip() == f"Sealed 1 entries; head seq={head.head_seq} hash={head.head_hash}"


# Admin ----------------------------------------------------------------------------


def test_the_admin_lists_the_audit_log_read_only(admin_client, history):
    page = admin_client.get(CHANGELIST)
    assert page.status_code == 200
    text = page.content.decode()
    assert "job.submitted" in text
    assert "Add audit entry" not in text
    entry = AuditEntry.objects.filter(event="job.submitted").first()
    detail = admin_client.get(f"{CHANGELIST}{entry.pk}/change/")
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    assert admin_client.post(f"{CHANGELIST}{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def listed(admin_client, query: str) -> list[AuditEntry]:
    response = admin_client.get(f"{CHANGELIST}?{query}")
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_the_admin_filters_by_job_actor_plugin_and_event(admin_client, history, user):
    job = history["cancelled"]
    assert [e.event for e in listed(admin_client, f"job={job.pk}")] == [
        "job.cancelled",
        "job.submitted",
    ]
    assert {e.actor for e in listed(admin_client, "actor=bob")} == {"bob"}
    refused = listed(admin_client, "plugin=echo&event__exact=request.refused")
    assert [(e.event, e.actor) for e in refused] == [("request.refused", "alice")]
    assert [e.job_id for e in listed(admin_client, f"q={job.pk}")] == [job.pk, job.pk]
    assert listed(admin_client, "job=not-a-uuid") == []
    page = admin_client.get(CHANGELIST).content.decode()
    assert "?plugin=echo" in page
    assert "?actor=bob" in page


def test_an_entry_links_to_its_job_while_it_exists(admin_client, history):
    job = history["ok"]
    page = admin_client.get(f"{CHANGELIST}?job={job.pk}").content.decode()
    assert f"/admin/execution/job/{job.pk}/change/" in page
    from execution.audit.retention import prune_jobs

    prune_jobs([job.pk])
    page = admin_client.get(f"{CHANGELIST}?job={job.pk}").content.decode()
    assert f"/admin/execution/job/{job.pk}/change/" not in page
    assert "(gone)" in page


# Gauges ---------------------------------------------------------------------------


def test_the_head_is_on_the_metrics_page(client, history, user):
    scenario.refuse(user)  # one waiting
    page = client.get("/metrics").content.decode()
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
        if sample.name.startswith("governed_audit_")
    }
    head = AuditChain.objects.get()
    assert values["governed_audit_head_seq"] == head.head_seq
    assert values["governed_audit_head_hash_prefix"] == hash_prefix(head.head_hash)
    assert values["governed_audit_unsealed_entries"] == 1
    assert values["governed_audit_last_seal_timestamp_seconds"] == head.sealed_at.timestamp()


# The key never reaches a plugin's process --------------------------------------------

PROBE = """
import json, os, sys
import django
django.setup()
from execution.audit.signing import signing_key
from plugins.registry import PluginRegistry
from plugins.runtime.limits import ExecutionLimits, IsolationKind
from plugins.runtime.tool_runner import ToolRunner
from tests.execution.audit_plugins import EnvironmentProbePlugin

registry = PluginRegistry(
    record_metrics=False, defaults=ExecutionLimits(isolation=IsolationKind.PROCESS, timeout_s=30)
)
registry.register(EnvironmentProbePlugin, source="tests")
names = ["AUDIT_SIGNING_KEY", "AUDIT_PROBE_CONTROL", "TMPDIR"]
result, error = ToolRunner(registry=registry).run("environment_probe", {"names": names})
print(json.dumps({"result": result, "error": error, "pid": os.getpid(),
                  "sealer_key": (signing_key() or b"").decode()}))
"""


def test_a_plugin_process_sees_no_signing_key(db):
    env = subprocess_env(
        AUDIT_SIGNING_KEY="never-for-plugins",
        AUDIT_PROBE_CONTROL="an ordinary variable",
        PLUGIN_ISOLATION="process",
    )
    completed = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["error"] is None, report["error"]
    probe = report["result"]
    assert probe["pid"] != report["pid"]  # it ran in a host process
    # A host's environment is allow-listed (TMPDIR is its own): not even an ordinary
    # variable of the server's reaches it, and never the key.
    assert probe["in_environ"] == {
        "AUDIT_SIGNING_KEY": False,
        "AUDIT_PROBE_CONTROL": False,
        "TMPDIR": True,
    }
    assert not any(probe["in_settings"].values())
    assert report["sealer_key"] == "never-for-plugins"


def test_the_admin_search_takes_any_text(admin_client, history):
    assert {e.actor for e in listed(admin_client, "q=bob")} == {"bob"}
