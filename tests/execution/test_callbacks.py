"""Completion callbacks: the final job POSTed, signed, to a receiver this test starts on 127.0.0.1.

Deliveries run here by calling the delivery task's service, as a worker would;
tests/faults/test_callback_worker.py has a real db_worker deliver them.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django_tasks_db.models import DBTaskResult
from rest_framework.test import APIClient

from execution.callbacks import delivery, signing
from execution.callbacks.destinations import Destination
from execution.callbacks.models import CallbackAttempt, CallbackState, JobCallback
from execution.callbacks.services import deliver_callback, recover_lost_deliveries
from execution.clock import database_now
from execution.models import Job, JobStatus
from execution.services import JobExecutionService
from execution.services.lease_recovery import LeaseRecoveryService
from plugins.errors.error_envelope import ErrorType, build_error_envelope
from tests.execution.callback_receiver import receiver
from tests.statements import statements

KEY = "test-callback-signing-key"
DELIVERY_TASK = "execution.tasks.deliver_callback_task"


@pytest.fixture(autouse=True)
def callbacks_on(settings):
    """Callbacks to 127.0.0.1 allowed explicitly (a private address), retried at once."""
    settings.CALLBACK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.CALLBACK_ALLOW_PRIVATE_ADDRESSES = True
    settings.CALLBACK_SIGNING_KEY = KEY
    settings.CALLBACK_TIMEOUT_S = 5
    settings.CALLBACK_RETRY_FIRST_DELAY_S = 0
    settings.CALLBACK_RETRY_MAX_DELAY_S = 0
    settings.CALLBACK_RETRY_FOR_S = 60
    return settings


def submit(client, url, plugin="echo", payload=None):
    body = {"plugin": plugin, "payload": payload or {"message": "hi"}, "callback_url": url}
    return client.post("/v1/jobs", body, format="json")


def submitted_and_run(client, url, **kwargs) -> Job:
    response = submit(client, url, **kwargs)
    assert response.status_code == 202, response.content
    return JobExecutionService().run_job(job_id=response.json()["id"])


def delivery_tasks() -> list[DBTaskResult]:
    return list(DBTaskResult.objects.filter(task_path=DELIVERY_TASK).order_by("enqueued_at"))


def deliver_until_settled(job_id, rounds=10) -> JobCallback:
    """Run the callback's queued delivery task until it is delivered or given up."""
    for _ in range(rounds):
        deliver_callback(job_id=job_id, task_id=JobCallback.objects.get(pk=job_id).task_id)
        callback = JobCallback.objects.get(pk=job_id)
        if callback.state in (CallbackState.DELIVERED, CallbackState.GAVE_UP):
            return callback
    raise AssertionError(f"still {callback.state} after {rounds} rounds")


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"detail"}
    return body["detail"]


# Delivery and its signature ------------------------------------------------------------


def test_a_finished_job_is_posted_signed_to_its_callback(api_client, user):
    with receiver() as hook:
        job = submitted_and_run(api_client, hook.url())
        assert job.status == JobStatus.SUCCESS
        (task,) = delivery_tasks()  # queued by the transaction that ended the job
        assert task.args_kwargs["args"] == [str(job.pk)]
        assert JobCallback.objects.get(pk=job.pk).state == CallbackState.DUE

        attempt = deliver_callback(job_id=job.pk)

    assert attempt is not None
    assert attempt.succeeded
    (posted,) = hook.received
    assert posted.path == "/hook"
    assert posted.headers["Content-Type"] == "application/json"
    assert posted.headers["X-Job-Id"] == str(job.pk)
    assert posted.headers["X-Callback-Attempt"] == "1"
    detail = api_client.get(f"/v1/jobs/{job.pk}").json()
    delivered = json.loads(posted.body)
    assert delivered == {name: value for name, value in detail.items() if name != "callback"}
    assert delivered["status"] == "SUCCESS"
    assert delivered["result"]["echoed"] == "hi"

    header = posted.headers["X-Signature"]
    timestamp = int(header.split(",")[0].removeprefix("t="))
    assert abs(timestamp - posted.at) < 60
    assert signing.verify(posted.body, header, KEY.encode(), now=posted.at)
    # A replay later on, a changed body or another key: the receiver can tell.
    assert not signing.verify(posted.body, header, KEY.encode(), now=timestamp + 301)
    assert not signing.verify(posted.body.replace(b"hi", b"ho"), header, KEY.encode())
    assert not signing.verify(posted.body, header, b"another key")
    callback = JobCallback.objects.get(pk=job.pk)
    assert callback.state == CallbackState.DELIVERED
    assert callback.delivered_at is not None


def test_the_default_key_is_derived_from_the_secret_key(settings):
    settings.CALLBACK_SIGNING_KEY = ""
    derived = signing.signing_key()
    assert derived
    assert settings.SECRET_KEY.encode() not in derived
    settings.SECRET_KEY = "another-secret-key-for-this-test"
    assert signing.signing_key() != derived


def test_a_500_is_retried_until_the_receiver_takes_it(api_client, user):
    with receiver(500, 503) as hook:
        job = submitted_and_run(api_client, hook.url())
        callback = deliver_until_settled(job.pk)

    assert callback.state == CallbackState.DELIVERED
    attempts = list(CallbackAttempt.objects.filter(callback=callback))
    assert [(a.number, a.status_code) for a in attempts] == [(1, 500), (2, 503), (3, 200)]
    assert [a.error for a in attempts] == ["HTTP 500", "HTTP 503", ""]
    assert all(a.duration_ms is not None and a.started_at for a in attempts)
    assert [r.headers["X-Callback-Attempt"] for r in hook.received] == ["1", "2", "3"]
    assert len(delivery_tasks()) == 3  # each retry is a task of its own
    assert deliver_callback(job_id=job.pk) is None  # delivered: never again
    assert len(hook.received) == 3


def test_retries_back_off_and_give_up_once_their_time_is_over(api_client, user, settings):
    settings.CALLBACK_RETRY_FIRST_DELAY_S = 10
    settings.CALLBACK_RETRY_MAX_DELAY_S = 1000
    settings.CALLBACK_RETRY_FOR_S = 15
    with receiver(500, 500, 500, 500) as hook:
        job = submitted_and_run(api_client, hook.url())
        deliver_callback(job_id=job.pk)
        callback = JobCallback.objects.get(pk=job.pk)
        assert callback.state == CallbackState.DUE
        wait_s = (callback.next_attempt_at - database_now()).total_seconds()
        assert 8 < wait_s <= 10
        retry_task = delivery_tasks()[-1]
        assert retry_task.run_after == callback.next_attempt_at
        assert deliver_callback(job_id=job.pk) is None  # not due yet
        # Ten seconds later, as far as the callback knows:
        JobCallback.objects.filter(pk=job.pk).update(next_attempt_at=database_now())
        deliver_callback(job_id=job.pk)  # the next wait (20 s) would end past the 15 s
        assert deliver_callback(job_id=job.pk) is None

    callback.refresh_from_db()
    assert callback.state == CallbackState.GAVE_UP
    assert callback.attempts.count() == 2
    assert len(hook.received) == 2


def test_redirects_are_not_followed(api_client, user, settings):
    settings.CALLBACK_RETRY_FOR_S = 0  # one attempt
    with receiver(302) as hook:
        job = submitted_and_run(api_client, hook.url())
        callback = deliver_until_settled(job.pk)

    assert [r.path for r in hook.received] == ["/hook"]  # never /elsewhere
    (attempt,) = callback.attempts.all()
    assert attempt.status_code == 302
    assert "redirects are not followed" in attempt.error
    assert callback.state == CallbackState.GAVE_UP


def test_an_unreachable_receiver_is_an_attempt_with_its_error(api_client, user, settings):
    settings.CALLBACK_RETRY_FOR_S = 0
    with receiver() as hook:
        url = hook.url()
    job = submitted_and_run(api_client, url)  # the receiver is gone: nothing listens
    callback = deliver_until_settled(job.pk)
    (attempt,) = callback.attempts.all()
    assert attempt.status_code is None
    assert "ConnectionRefused" in attempt.error


# Every way a job ends --------------------------------------------------------------------


def test_a_job_cancelled_while_it_waits_calls_back(api_client, user):
    with receiver() as hook:
        response = submit(api_client, hook.url())
        job_id = response.json()["id"]
        cancelled = api_client.post(f"/v1/jobs/{job_id}/cancel")
        assert cancelled.status_code == 200
        deliver_until_settled(job_id)
    (posted,) = hook.received
    body = json.loads(posted.body)
    assert body["status"] == "CANCELLED"
    assert body["error"]["type"] == "Cancelled"


def test_a_job_recovered_as_worker_lost_calls_back(user):
    with receiver() as hook:
        job = JobExecutionService().create_job(
            plugin_name="echo", payload={"message": "x"}, requested_by=user, callback_url=hook.url()
        )
        loaded = Job.objects.load_pending(job.pk)
        assert loaded.claim(lease_holder="lost-host:1:abc", lease_s=60)
        assert delivery_tasks() == []  # running: nothing due
        Job.objects.filter(pk=job.pk).update(lease_expires_at=database_now() - timedelta(seconds=1))
        LeaseRecoveryService().recover_expired()
        deliver_until_settled(job.pk)
    body = json.loads(hook.received[0].body)
    assert body["status"] == "FAILED"
    assert body["error"]["type"] == "WorkerLost"


def test_a_failed_job_calls_back_with_its_error(api_client, user):
    with receiver() as hook:
        job = submitted_and_run(api_client, hook.url(), plugin="raising", payload={})
        assert job.status == JobStatus.FAILED
        deliver_until_settled(job.pk)
    assert json.loads(hook.received[0].body)["error"]["type"] == "PluginExecutionError"


def test_a_rolled_back_finish_queues_nothing(user):
    job = JobExecutionService().create_job(
        plugin_name="echo",
        payload={"message": "x"},
        requested_by=user,
        callback_url="http://127.0.0.1:9/hook",
    )
    due_inside: list[str] = []

    def finish_then_fail() -> None:
        with transaction.atomic():
            job.mark_failed(dict(build_error_envelope(ErrorType.PLUGIN_CRASHED, "gone")))
            due_inside.append(JobCallback.objects.get(pk=job.pk).state)
            raise RuntimeError("the commit failed")

    with pytest.raises(RuntimeError):
        finish_then_fail()
    assert due_inside == [CallbackState.DUE]
    assert JobCallback.objects.get(pk=job.pk).state == CallbackState.WAITING
    assert delivery_tasks() == []


def test_a_synchronous_run_never_looks_for_a_callback(api_client):
    with statements() as run:
        response = api_client.post(
            "/v1/analyze-execution", {"plugin": "echo", "payload": {"message": "x"}}, format="json"
        )
    assert response.status_code == 200
    assert [sql for sql in run if "execution_job" in sql]  # the job was recorded
    assert not [sql for sql in run if JobCallback._meta.db_table in sql]


# Refused at submit, and at delivery ----------------------------------------------------

REFUSED = [
    ({"CALLBACK_ALLOWED_HOSTS": []}, "http://127.0.0.1:9/hook", "callbacks are off"),
    ({}, "http://example.com/hook", "not one of CALLBACK_ALLOWED_HOSTS"),
    ({}, "http://127.0.0.10/hook", "not one of CALLBACK_ALLOWED_HOSTS"),
    ({"CALLBACK_ALLOW_PRIVATE_ADDRESSES": False}, "http://127.0.0.1:9/hook", "loopback"),
    (
        {"CALLBACK_ALLOW_PRIVATE_ADDRESSES": False, "CALLBACK_ALLOWED_HOSTS": ["localhost"]},
        "http://localhost:9/hook",
        "loopback",
    ),
    (
        {"CALLBACK_ALLOW_PRIVATE_ADDRESSES": False, "CALLBACK_ALLOWED_HOSTS": ["*"]},
        "http://169.254.169.254/latest/meta-data",
        "link-local",
    ),
    (
        {"CALLBACK_ALLOW_PRIVATE_ADDRESSES": False, "CALLBACK_ALLOWED_HOSTS": [".internal", "*"]},
        "http://10.1.2.3/hook",
        "private",
    ),
    (
        {"CALLBACK_ALLOW_PRIVATE_ADDRESSES": False, "CALLBACK_ALLOWED_HOSTS": ["[::1]"]},
        "http://[::1]:9/hook",
        "loopback",
    ),
    (
        {"CALLBACK_ALLOW_PRIVATE_ADDRESSES": False, "CALLBACK_ALLOWED_HOSTS": ["*"]},
        "http://[::ffff:127.0.0.1]/hook",
        "loopback",
    ),
    ({"CALLBACK_ALLOWED_HOSTS": ["*"]}, "http://224.0.0.1/hook", "multicast"),
    ({}, "ftp://127.0.0.1/hook", "http:// or https://"),
    ({}, "http://user:secret@127.0.0.1/hook", "credentials"),
    ({}, "http://127.0.0.1/hook#part", "fragment"),
    ({}, "http://127.0.0.1/hook#", "fragment"),
    ({}, "http://127.0.0.1:99999/hook", "not a valid URL"),
    ({}, "http://127.0.0.1/" + "a" * 2100, "2048"),
    ({}, "http://127.0.0.1/a b", "spaces"),
    ({}, 42, "Not a valid string"),
]


SEMANTIC_REFUSALS = {
    "callbacks are off",
    "not one of CALLBACK_ALLOWED_HOSTS",
    "loopback",
    "link-local",
    "private",
    "multicast",
    "not a valid URL",
}


@pytest.mark.parametrize(("overrides", "url", "says"), REFUSED)
def test_refused_destinations_are_400_and_record_nothing(
    api_client, settings, overrides, url, says
):
    for name, value in overrides.items():
        setattr(settings, name, value)
    response = submit(api_client, url)
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["type"] == "ValidationError"
    assert says in json.dumps(error["details"]), error
    (entry,) = error["details"]["errors"]
    # Refused for what the schema cannot state (the server's hosts, addresses, a port
    # past 65535): semantic. Refused for what it states (scheme, length...): not.
    assert entry.get("semantic", False) is (says in SEMANTIC_REFUSALS), entry
    assert Job.objects.count() == 0
    assert JobCallback.objects.count() == 0
    assert delivery_tasks() == []


def test_the_synchronous_endpoint_takes_no_callback_url(api_client):
    response = api_client.post(
        "/v1/analyze-execution",
        {"plugin": "echo", "payload": {"message": "x"}, "callback_url": "http://127.0.0.1/h"},
        format="json",
    )
    assert response.status_code == 400
    (entry,) = error_of(response)["details"]["errors"]
    assert (entry["location"], entry["message"]) == (["callback_url"], "Unknown field.")
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    "change",
    [
        {"CALLBACK_ALLOW_PRIVATE_ADDRESSES": False},
        {"CALLBACK_ALLOWED_HOSTS": ["hooks.example.com"]},
    ],
)
def test_a_destination_refused_by_delivery_time_gets_no_request(api_client, user, settings, change):
    settings.CALLBACK_RETRY_FOR_S = 0
    with receiver() as hook:
        job = submitted_and_run(api_client, hook.url())
        for name, value in change.items():
            setattr(settings, name, value)
        callback = deliver_until_settled(job.pk)
    assert hook.received == []
    (attempt,) = callback.attempts.all()
    assert attempt.status_code is None
    assert "CALLBACK_A" in attempt.error  # the setting that refuses it
    assert callback.state == CallbackState.GAVE_UP


def test_delivery_connects_to_the_address_it_checked(api_client, user, settings, monkeypatch):
    """A name that resolves to an allowed address when checked goes there, not elsewhere."""
    import socket

    settings.CALLBACK_ALLOWED_HOSTS = ["hooks.test"]
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host == "hooks.test":
            return real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with receiver() as hook:
        job = submitted_and_run(api_client, f"http://hooks.test:{hook.port}/named")
        looked_up: list[str] = []

        def counted(host, *args, **kwargs):
            looked_up.append(host)
            return resolve(host, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", counted)
        deliver_until_settled(job.pk)
    (posted,) = hook.received
    assert posted.path == "/named"
    assert posted.headers["Host"] == f"hooks.test:{hook.port}"
    assert looked_up.count("hooks.test") == 1  # checked once; the connection used that answer


def test_a_name_rebound_to_a_private_address_gets_no_request(
    api_client, user, settings, monkeypatch, caplog
):
    """Public when submitted, loopback when delivered (DNS rebinding): refused at delivery."""
    import socket

    settings.CALLBACK_ALLOWED_HOSTS = ["hooks.test"]
    settings.CALLBACK_ALLOW_PRIVATE_ADDRESSES = False
    settings.CALLBACK_RETRY_FOR_S = 0
    answers = {"hooks.test": "93.184.216.34"}  # a global address, never contacted here
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        return real(answers.get(host, host), *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with receiver() as hook:
        job = submitted_and_run(api_client, f"http://hooks.test:{hook.port}/hook")
        answers["hooks.test"] = "127.0.0.1"  # the receiver's address, from now on
        callback = deliver_until_settled(job.pk)
    assert hook.received == []
    (attempt,) = callback.attempts.all()
    assert "resolves to an address callbacks may not reach" in attempt.error
    assert "127.0.0.1" not in attempt.error  # the owner learns no internal address
    assert "hooks.test refused: it resolves to 127.0.0.1" in caplog.text  # the operator does
    assert callback.state == CallbackState.GAVE_UP


def test_https_verifies_the_receivers_certificate(api_client, user, settings, tmp_path):
    """A receiver whose certificate no trusted authority signed gets an attempt, no body."""
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    settings.CALLBACK_RETRY_FOR_S = 0
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with receiver(tls=context) as hook:
        job = submitted_and_run(api_client, hook.url().replace("http://", "https://"))
        callback = deliver_until_settled(job.pk)
    assert hook.received == []
    (attempt,) = callback.attempts.all()
    assert attempt.status_code is None
    assert "CERTIFICATE_VERIFY_FAILED" in attempt.error


# Who sees it ----------------------------------------------------------------------------


def test_the_owner_sees_the_callback_and_its_attempts_and_others_do_not(
    api_client, user, staff_user
):
    with receiver(500) as hook:
        url = hook.url()
        accepted = submit(api_client, url)
        assert accepted.json()["callback"] == {
            "url": url,
            "state": "WAITING",
            "next_attempt_at": None,
            "delivered_at": None,
            "attempts": [],
        }
        job = JobExecutionService().run_job(job_id=accepted.json()["id"])
        deliver_until_settled(job.pk)

    mine = api_client.get(f"/v1/jobs/{job.pk}").json()["callback"]
    assert mine["url"] == url
    assert mine["state"] == "DELIVERED"
    assert [(a["number"], a["status_code"]) for a in mine["attempts"]] == [(1, 500), (2, 200)]
    assert mine["attempts"][0]["error"] == "HTTP 500"

    staff = APIClient()
    staff.force_authenticate(staff_user)
    seen = staff.get(f"/v1/jobs/{job.pk}").json()
    assert seen["id"] == str(job.pk)
    assert seen["callback"] is None
    other = get_user_model().objects.create_user("mallory", password="pw-mallory-123456")
    stranger = APIClient()
    stranger.force_authenticate(other)
    assert stranger.get(f"/v1/jobs/{job.pk}").status_code == 404
    assert "callback" not in api_client.get("/v1/jobs").json()["results"][0]  # summaries


def test_a_job_without_callback_shows_null(api_client):
    response = api_client.post(
        "/v1/jobs", {"plugin": "echo", "payload": {"message": "x"}}, format="json"
    )
    assert response.status_code == 202
    assert response.json()["callback"] is None


# Exactly once, and lost deliveries ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_make_one_attempt(user):
    with receiver(delay_s=0.5) as hook:
        job = JobExecutionService().create_job(
            plugin_name="echo", payload={"message": "x"}, requested_by=user, callback_url=hook.url()
        )
        JobExecutionService().run_job(job_id=job.pk)
        results: list[object] = []
        threads = [
            threading.Thread(target=lambda: results.append(deliver_callback(job_id=job.pk)))
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert deliver_callback(job_id=job.pk) is None
    assert len(hook.received) == 1
    assert sorted(result is None for result in results) == [False, True]
    assert JobCallback.objects.get(pk=job.pk).state == CallbackState.DELIVERED


def test_a_delivery_whose_worker_was_lost_is_queued_again_and_made(user, settings):
    settings.JOB_LEASE_GRACE_S = 1
    with receiver() as hook:
        job = JobExecutionService().create_job(
            plugin_name="echo", payload={"message": "x"}, requested_by=user, callback_url=hook.url()
        )
        JobExecutionService().run_job(job_id=job.pk)
        (lost_task,) = delivery_tasks()
        long_ago = database_now() - timedelta(minutes=5)
        # A worker took the task, claimed attempt 1 and died (kill -9) before recording it.
        DBTaskResult.objects.filter(pk=lost_task.pk).update(status="RUNNING", started_at=long_ago)
        JobCallback.objects.filter(pk=job.pk).update(
            state=CallbackState.DELIVERING, attempt_count=1, claimed_until=long_ago
        )

        assert recover_lost_deliveries() == 1
        assert recover_lost_deliveries() == 0  # its new task is live

        lost_task.refresh_from_db()
        assert lost_task.status == "FAILED"
        assert len(delivery_tasks()) == 2
        callback = deliver_until_settled(job.pk)
    attempts = list(callback.attempts.all())
    assert [(a.number, a.status_code) for a in attempts] == [(1, None), (2, 200)]
    assert "went away" in attempts[0].error
    assert len(hook.received) == 1


def test_the_receivers_check_in_the_docs_verifies_a_real_delivery(api_client, user):
    """docs/api.md's Python, run as written, against what a delivery sent."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    section = docs.split("### Verifying a callback", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/api.md", "exec"), namespace)
    verified = namespace["verified"]
    with receiver() as hook:
        job = submitted_and_run(api_client, hook.url())
        deliver_until_settled(job.pk)
    (posted,) = hook.received
    header = posted.headers["X-Signature"]
    assert verified(posted.body, header, KEY.encode())
    assert not verified(posted.body + b" ", header, KEY.encode())
    timestamp = int(header.split(",")[0].removeprefix("t="))
    old = header.replace(f"t={timestamp}", f"t={timestamp - 600}")
    assert not verified(posted.body, old, KEY.encode())  # replayed ten minutes later


def test_staff_see_the_callback_and_its_attempts_in_the_admin(api_client, user, admin_client):
    with receiver(500) as hook:
        job = submitted_and_run(api_client, hook.url())
        deliver_until_settled(job.pk)
    page = admin_client.get(f"/admin/execution/job/{job.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert hook.url() in text
    assert "#1 at" in text
    assert "500" in text
    assert "Delivered" in text or "delivered" in text
    plain = JobExecutionService().create_job(plugin_name="echo", payload={"message": "x"})
    other_page = admin_client.get(f"/admin/execution/job/{plain.pk}/change/")
    assert other_page.status_code == 200
    assert "callback" not in other_page.content.decode().lower()


def test_pruning_a_job_removes_its_callback_attempts_and_their_tasks(api_client, user):
    from execution.services.retention import prune_jobs

    with receiver(500) as hook:
        job = submitted_and_run(api_client, hook.url())
        deliver_until_settled(job.pk)
    assert len(delivery_tasks()) == 2
    Job.objects.filter(pk=job.pk).update(finished_at=database_now() - timedelta(days=40))

    report = prune_jobs(older_than=timedelta(days=30))

    assert report.jobs == 1
    assert not JobCallback.objects.exists()
    assert not CallbackAttempt.objects.exists()
    assert delivery_tasks() == []


def test_a_worker_ends_a_job_without_callback_with_no_look_for_one(user):
    job = JobExecutionService().create_job(
        plugin_name="echo", payload={"message": "x"}, requested_by=user
    )
    with statements() as run:
        ran = JobExecutionService().run_job(job_id=job.pk)
    assert ran.status == JobStatus.SUCCESS
    looks = [sql for sql in run if JobCallback._meta.db_table in sql]
    assert len(looks) == 1  # only the load of the job, in the same statement
    assert looks[0].lstrip().upper().startswith("SELECT")


def test_a_fault_before_sending_is_a_failed_attempt_not_a_stuck_callback(
    api_client, user, settings, monkeypatch
):
    from execution.callbacks import services

    settings.CALLBACK_RETRY_FOR_S = 0

    def broken(job):
        raise RuntimeError("the body could not be rendered")

    monkeypatch.setattr(services, "job_body", broken)
    with receiver() as hook:
        job = submitted_and_run(api_client, hook.url())
        callback = deliver_until_settled(job.pk)
    assert hook.received == []
    (attempt,) = callback.attempts.all()
    assert attempt.error == "Not sent: RuntimeError"
    assert callback.state == CallbackState.GAVE_UP


# One deadline per attempt -----------------------------------------------------------------


@contextmanager
def trickling_receiver(answer: bytes, every_s: float) -> Iterator[dict[str, Any]]:
    """A receiver on 127.0.0.1 that reads the request, then sends ``answer`` a byte at a time."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: dict[str, Any] = {"port": listener.getsockname()[1], "sent": 0, "cut_off": False}

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            try:
                for byte in answer:
                    time.sleep(every_s)
                    connection.sendall(bytes([byte]))
                    seen["sent"] += 1
                connection.recv(1)  # until the client closes
            except OSError:
                seen["cut_off"] = True

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        listener.close()
        thread.join(10)


def test_a_receiver_trickling_its_answer_is_cut_off_at_the_attempts_deadline(
    api_client, user, settings
):
    """Each byte comes well within the timeout; the whole answer would take 4 of them."""
    settings.CALLBACK_TIMEOUT_S = 1
    settings.CALLBACK_RETRY_FOR_S = 0
    answer = b"HTTP/1.1 200 OK\r\n\r\n"
    with trickling_receiver(answer, every_s=0.2) as seen:
        job = submitted_and_run(api_client, f"http://127.0.0.1:{seen['port']}/hook")
        callback = deliver_until_settled(job.pk)
    (attempt,) = callback.attempts.all()
    assert attempt.status_code is None
    assert attempt.error == "TimeoutError: timed out"
    assert seen["sent"] < len(answer)  # the delivery stopped listening before the end
    assert callback.state == CallbackState.GAVE_UP


def test_only_the_status_line_of_the_answer_is_read():
    """A receiver that never finishes its headers is still an answer: its status counts."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-A: ")
            connection.recv(1)  # headers never end; wait for the client to hang up

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    destination = Destination("http", "127.0.0.1", listener.getsockname()[1], "/", ("127.0.0.1",))
    try:
        delivered = delivery.post(destination, b"{}", {}, timeout_s=5)
    finally:
        listener.close()
        thread.join(10)
    assert (delivered.status_code, delivered.error) == (204, "")


def test_at_most_two_of_the_checked_addresses_are_tried(monkeypatch):
    tried: list[str] = []

    def refused(address, timeout=None, source=None):
        tried.append(address[0])
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket, "create_connection", refused)
    addresses = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
    destination = Destination("http", "hooks.test", 9, "/", addresses)
    delivered = delivery.post(destination, b"{}", {}, timeout_s=5)
    assert tried == ["127.0.0.2", "127.0.0.3"]
    assert delivered.status_code is None
    assert "ConnectionRefused" in delivered.error


@pytest.mark.parametrize(("late_status", "late_error"), [(200, ""), (500, "HTTP 500")])
def test_a_slow_workers_outcome_replaces_the_lost_guess_of_the_worker_that_took_over(
    user, late_status, late_error
):
    """Worker 1 outlives its claim; worker 2 takes over (recording attempt 1 as lost)."""
    from execution.callbacks import services

    with receiver() as hook:
        job = JobExecutionService().create_job(
            plugin_name="echo", payload={"message": "x"}, requested_by=user, callback_url=hook.url()
        )
        JobExecutionService().run_job(job_id=job.pk)
        claimed = services._claim(job.pk)
        assert claimed is not None
        first, first_number = claimed
        started_at = database_now()
        JobCallback.objects.filter(pk=job.pk).update(
            claimed_until=database_now() - timedelta(seconds=1)
        )
        taken_over = services._claim(job.pk)
        assert taken_over is not None
        second, second_number = taken_over
        assert (first_number, second_number) == (1, 2)
        assert CallbackAttempt.objects.get(callback_id=job.pk, number=1).error == (
            services.LOST_DELIVERY
        )

        late = delivery.Delivered(late_status, late_error, 12.5)
        recorded = services._record(first, first_number, started_at, late, task_id=None)
        assert (recorded.number, recorded.status_code) == (1, late_status)
        assert JobCallback.objects.get(pk=job.pk).state == CallbackState.DELIVERING  # worker 2's

        services._record(
            second, second_number, database_now(), delivery.Delivered(200, "", 1.0), task_id=None
        )
    attempts = list(CallbackAttempt.objects.filter(callback_id=job.pk))
    assert [(a.number, a.status_code, a.error) for a in attempts] == [
        (1, late_status, late_error),
        (2, 200, ""),
    ]
    assert JobCallback.objects.get(pk=job.pk).state == CallbackState.DELIVERED
    assert delivery_tasks()[-1].args_kwargs["args"] == [str(job.pk)]
    assert len(delivery_tasks()) == 1  # the late failure queued no retry of its own


def test_the_claim_outlasts_the_longest_attempt(user, settings):
    """Before a claim expires, its attempt (bounded by CALLBACK_TIMEOUT_S) has ended."""
    from execution.callbacks import services

    settings.CALLBACK_TIMEOUT_S = 10
    job = JobExecutionService().create_job(
        plugin_name="echo",
        payload={"message": "x"},
        requested_by=user,
        callback_url="http://127.0.0.1:9/h",
    )
    JobExecutionService().run_job(job_id=job.pk)
    assert services._claim(job.pk) is not None
    claimed_for = JobCallback.objects.get(pk=job.pk).claimed_until - database_now()
    assert claimed_for.total_seconds() > 2 * settings.CALLBACK_TIMEOUT_S


# Addresses that hide an internal one -------------------------------------------------------

REFUSED_ADDRESSES = [
    ("64:ff9b::a9fe:a9fe", "NAT64 of 169.254.169.254 (cloud metadata)"),
    ("64:ff9b::a00:1", "NAT64 of 10.0.0.1"),
    ("64:ff9b:1::a9fe:a9fe", "local-use NAT64"),
    ("::7f00:1", "IPv4-compatible 127.0.0.1"),
    ("::a9fe:a9fe", "IPv4-compatible 169.254.169.254"),
    ("2002:7f00:1::", "6to4 of 127.0.0.1"),
    ("2002:a9fe:a9fe::1", "6to4 of 169.254.169.254"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("fec0::1", "site-local"),
    ("::ffff:10.0.0.1", "IPv4-mapped 10.0.0.1"),
    ("240.0.0.1", "reserved"),
    ("100::1", "discard-only"),
]


@pytest.mark.parametrize(("address", "what"), REFUSED_ADDRESSES)
def test_addresses_that_reach_an_internal_one_are_refused(settings, address, what):
    from execution.callbacks.destinations import address_problem

    settings.CALLBACK_ALLOW_PRIVATE_ADDRESSES = False
    assert "CALLBACK_ALLOW_PRIVATE_ADDRESSES" in address_problem(ipaddress.ip_address(address))
    settings.CALLBACK_ALLOW_PRIVATE_ADDRESSES = True  # the operator's own network: allowed
    assert address_problem(ipaddress.ip_address(address)) == ""


@pytest.mark.parametrize(
    "address", ["64:ff9b::e000:1", "::ffff:224.0.0.1", "2002:e000:1::", "::ffff:0.0.0.0"]
)
def test_an_embedded_multicast_or_unspecified_address_is_always_refused(settings, address):
    from execution.callbacks.destinations import address_problem

    settings.CALLBACK_ALLOW_PRIVATE_ADDRESSES = True
    assert "multicast or unspecified" in address_problem(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "2606:4700::1111", "64:ff9b::5db8:d822", "2002:5db8:d822::1"]
)
def test_public_addresses_are_allowed(settings, address):
    from execution.callbacks.destinations import address_problem

    settings.CALLBACK_ALLOW_PRIVATE_ADDRESSES = False
    assert address_problem(ipaddress.ip_address(address)) == ""


def test_a_nat64_literal_of_the_metadata_address_is_a_400(api_client, settings):
    settings.CALLBACK_ALLOW_PRIVATE_ADDRESSES = False
    settings.CALLBACK_ALLOWED_HOSTS = ["*"]
    response = submit(api_client, "http://[64:ff9b::a9fe:a9fe]/latest/meta-data")
    assert response.status_code == 400
    assert "CALLBACK_ALLOW_PRIVATE_ADDRESSES" in json.dumps(error_of(response)["details"])
    assert JobCallback.objects.count() == 0


def test_a_refusal_does_not_say_what_an_internal_name_resolves_to(
    api_client, settings, monkeypatch, caplog
):
    settings.CALLBACK_ALLOWED_HOSTS = [".internal"]
    settings.CALLBACK_ALLOW_PRIVATE_ADDRESSES = False
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        return real("10.1.2.3" if host == "db.internal" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    response = submit(api_client, "http://db.internal/hook")
    assert response.status_code == 400
    (entry,) = error_of(response)["details"]["errors"]
    assert entry["location"] == ["callback_url"]
    assert entry["message"].startswith(
        "The callback host db.internal resolves to an address callbacks may not reach"
    )
    assert "10.1.2.3" not in response.content.decode()
    assert "db.internal refused: it resolves to 10.1.2.3" in caplog.text


def test_a_host_that_does_not_resolve_is_a_semantic_refusal(api_client, settings, monkeypatch):
    settings.CALLBACK_ALLOWED_HOSTS = ["hooks.test"]

    def unresolvable(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)
    response = submit(api_client, "http://hooks.test/hook")
    assert response.status_code == 400
    (entry,) = error_of(response)["details"]["errors"]
    assert entry["type"] == "callback_host_unresolved"
    assert entry["semantic"] is True


@pytest.mark.parametrize(
    ("url", "matches"),
    [
        ("http://127.0.0.1:9/hook", True),
        ("HTTPS://hooks.example.com/a/b?c=d&e=@f", True),
        ("http://[::1]:9", True),
        ("ftp://127.0.0.1/hook", False),
        ("http://user:secret@127.0.0.1/hook", False),
        ("http://127.0.0.1/hook#", False),
        ("http:///hook", False),
    ],
)
def test_the_schemas_pattern_states_the_syntactic_refusals(url, matches):
    """What the schema's pattern refuses, the server refuses without ``semantic``."""
    import re

    from execution.api.schema import CALLBACK_URL_PROPERTY

    assert bool(re.match(CALLBACK_URL_PROPERTY["pattern"], url)) is matches
