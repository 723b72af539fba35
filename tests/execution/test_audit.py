"""The audit chain: recording, sealing, and verify() catching each kind of tampering."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from execution.audit import chain, sealer, signing
from execution.audit.chain import SigningKeyMismatch, seal
from execution.audit.digest import canonical_json, payload_sha256
from execution.audit.events import AuditEvent
from execution.audit.models import AuditChain, AuditEntry
from execution.audit.recorder import AuditRecord, record, record_many
from execution.audit.retention import prunable_through, prune_entries, prune_jobs
from execution.audit.verify import verify
from execution.models import Job
from tests.execution import audit_scenarios as scenario
from tests.execution.audit_scenarios import sql

ENTRY_TABLE = AuditEntry._meta.db_table
CHAIN_TABLE = AuditChain._meta.db_table


def sealed_ids() -> list[int]:
    return scenario.entry_ids(seq__isnull=False)


def seq_of(entry_id: int) -> int:
    seq = AuditEntry.objects.values_list("seq", flat=True).get(pk=entry_id)
    assert seq is not None
    return seq


# Recording ------------------------------------------------------------------------


def test_a_clean_history_verifies(history):
    report = verify()
    assert report.ok, report.first_problem
    assert report.entries == AuditEntry.objects.count()
    assert report.jobs == len(history)
    assert report.unsealed == 0
    assert report.head_seq == report.entries


def statements_run(action) -> list[str]:
    """The SQL ``action`` ran (on SQLite the recorder uses the driver's cursor: trace it)."""
    if connection.vendor != "sqlite":
        with CaptureQueriesContext(connection) as queries:
            action()
        return [query["sql"] for query in queries]
    seen: list[str] = []
    connection.ensure_connection()
    connection.connection.set_trace_callback(seen.append)
    try:
        action()
    finally:
        connection.connection.set_trace_callback(None)
    return seen


def test_recording_two_entries_is_one_insert_and_hashes_nothing(db, user):
    records = [
        AuditRecord(AuditEvent.JOB_SUBMITTED, job_id=uuid.uuid4(), actor=user),
        AuditRecord(AuditEvent.JOB_STARTED, job_id=uuid.uuid4()),
    ]
    statements = statements_run(lambda: record_many(records))
    assert len(statements) == 1
    assert statements[0].startswith("INSERT")
    assert list(AuditEntry.objects.values_list("seq", "entry_hash")) == [(None, ""), (None, "")]


def test_an_entry_carries_the_actor_and_the_plugin(db, user):
    job_id = uuid.uuid4()
    record(
        AuditEvent.JOB_FINISHED,
        job_id=job_id,
        actor=user,
        plugin_name="echo",
        plugin_version="1.0",
        plugin_fingerprint="f" * 64,
        result_sha256=payload_sha256({"a": 1}),
        error_type="",
        details={"status": "SUCCESS"},
    )
    record(AuditEvent.REQUEST_REFUSED)
    record(AuditEvent.REQUEST_REFUSED, actor="a-script")
    finished, system, named = AuditEntry.objects.order_by("id")
    assert (finished.actor, finished.actor_id, finished.job_id) == ("alice", user.pk, job_id)
    assert (finished.plugin_name, finished.plugin_version) == ("echo", "1.0")
    assert finished.plugin_fingerprint == "f" * 64
    assert finished.details == {"status": "SUCCESS"}
    assert (system.actor, system.actor_id) == ("system", None)
    assert (named.actor, named.actor_id) == ("a-script", None)


def test_the_time_is_the_databases_clock_not_the_process(db, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", lambda: datetime(2001, 1, 1, tzinfo=UTC))
    record(AuditEvent.REQUEST_REFUSED)
    assert AuditEntry.objects.get().recorded_at.year > 2001


def test_the_audit_off_records_nothing(db, settings):
    settings.AUDIT_ENABLED = False
    record(AuditEvent.REQUEST_REFUSED)
    assert not AuditEntry.objects.exists()


def test_chain_events_cannot_be_recorded(db):
    with pytest.raises(ValueError, match="written by the chain"):
        record(AuditEvent.AUDIT_CHECKPOINT)


@pytest.mark.parametrize(
    "payload",
    [
        {"b": 1, "a": [1.0, 0.1, 1e20, 1.5e300, -0.0, 2.5e-7, True, None]},
        {"text": 'naïve 日本 \u2028 "quoted" \\ back', "nested": {"z": {"y": [{}]}}},
        {"big": 12345678901234567890123, "neg": -17, "float": 3.141592653589793},
    ],
)
def test_a_payload_digest_survives_the_databases_json(db, payload):
    job = Job.objects.create(plugin_name="echo", input_payload=payload, result=payload)
    stored = Job.objects.values_list("input_payload", "result").get(pk=job.pk)
    assert payload_sha256(stored[0]) == payload_sha256(payload)
    assert payload_sha256(stored[1]) == payload_sha256(payload)


def test_canonical_json_orders_keys_and_writes_integral_numbers_as_integers():
    assert canonical_json({"b": [1.0, 1e20], "a": "é"}) == '{"a":"é","b":[1,100000000000000000000]}'
    assert payload_sha256({"x": 1, "y": 2}) == payload_sha256({"y": 2, "x": 1})
    assert payload_sha256({"x": 1}) != payload_sha256({"x": 2})


# Sealing --------------------------------------------------------------------------


def test_sealing_chains_entries_in_insertion_order_behind_a_genesis_checkpoint(db, user):
    for _ in range(3):
        scenario.refuse(user)
    result = seal()
    entries = list(AuditEntry.objects.order_by("seq"))
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    assert entries[0].event == AuditEvent.AUDIT_CHECKPOINT
    assert [e.id for e in entries[1:]] == sorted(e.id for e in entries[1:])
    assert entries[0].prev_hash == chain.GENESIS_HASH
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.entry_hash
    assert (result.sealed, result.head_seq, result.head_hash) == (3, 4, entries[-1].entry_hash)
    assert seal().sealed == 0


def test_sealing_in_small_batches_with_pauses_seals_everything_once(db, user, monkeypatch):
    for _ in range(11):
        scenario.refuse(user)
    pauses: list[float] = []
    sealing_thread = threading.get_ident()
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        # Other tests' daemon threads (a pool's stop, a timer) may sleep meanwhile.
        if threading.get_ident() == sealing_thread:
            pauses.append(seconds)
        else:
            real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    assert seal(batch_size=4, pause_s=0.5).sealed == 11
    assert pauses == [0.5, 0.5]  # between the three batches, not before the first
    assert not AuditEntry.objects.filter(seq__isnull=True).exists()
    assert verify().ok


def test_the_sealer_reads_waiting_entries_as_the_orm_loads_them(db, user):
    scenario.refuse(user)
    record(AuditEvent.JOB_FINISHED, job_id=uuid.uuid4(), details={"n": 1.5, "s": "é"})
    loaded = list(
        AuditEntry.objects.filter(seq__isnull=True)
        .order_by("id")
        .values_list(*chain.CONTENT_FIELDS)
    )
    assert chain.waiting_rows(10, "default") == loaded


def test_each_seal_logs_the_head(db, user, caplog):
    scenario.refuse(user)
    with caplog.at_level("INFO", logger="execution.audit"):
        result = seal()
    assert f"head seq={result.head_seq} hash={result.head_hash}" in caplog.text


def test_a_waiting_checkpoint_is_never_sealed_and_shows_as_inserted(history):
    sql(
        f"INSERT INTO {ENTRY_TABLE} (event, actor, plugin_name, plugin_version, "
        "plugin_fingerprint, input_sha256, result_sha256, error_type, details, prev_hash, "
        "entry_hash) VALUES ('audit.checkpoint', 'x', '', '', '', '', '', '', '{}', '', '')"
    )
    assert seal().sealed == 0
    problem = verify().chain_problem
    assert problem.kind == "inserted"
    assert "unsealed chain entry" in problem.message


@pytest.mark.django_db(transaction=True)
def test_concurrent_sealers_never_fork_the_chain(user):
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def work(seals: bool) -> None:
        try:
            start.wait()
            for _ in range(25):
                scenario.refuse(user)
                if seals:
                    seal(batch_size=7)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(i < 3,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    seal()
    seqs = list(AuditEntry.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, 101 + 1))
    assert verify().ok


# The chain: each kind of tampering, and the first broken link -----------------------


def test_an_edited_entry_is_found(history):
    target = sealed_ids()[4]
    sql(f"UPDATE {ENTRY_TABLE} SET actor = 'mallory' WHERE id = %s", [target])
    problem = verify().chain_problem
    assert (problem.kind, problem.entry_id, problem.seq) == ("edited", target, 5)


def test_an_edited_entry_rehashed_without_the_next_is_found_at_the_next(history):
    target, following = sealed_ids()[4:6]
    entry = AuditEntry.objects.get(pk=target)
    sql(f"UPDATE {ENTRY_TABLE} SET error_type = 'None' WHERE id = %s", [target])
    row = AuditEntry.objects.filter(pk=target).values_list(*chain.CONTENT_FIELDS).get()
    rehashed = chain.entry_hash(None, entry.prev_hash, row)
    sql(f"UPDATE {ENTRY_TABLE} SET entry_hash = %s WHERE id = %s", [rehashed, target])
    problem = verify().chain_problem
    assert (problem.kind, problem.entry_id) == ("reordered", following)


def test_a_deleted_entry_is_found(history):
    target, following = sealed_ids()[3:5]
    sql(f"DELETE FROM {ENTRY_TABLE} WHERE id = %s", [target])
    problem = verify().chain_problem
    assert (problem.kind, problem.entry_id, problem.seq) == ("deleted", following, 5)
    assert "no seq 4" in problem.message


def test_entries_deleted_at_the_end_are_found(history):
    head = AuditChain.objects.get().head_seq
    sql(f"DELETE FROM {ENTRY_TABLE} WHERE seq >= %s", [head - 1])
    problem = verify().chain_problem
    assert (problem.kind, problem.seq) == ("deleted", head - 1)


def forge_at_head(**fields) -> int:
    """A sealed-looking entry appended at the head, hashed as the sealer would without a key."""
    head = AuditChain.objects.get()
    forged = AuditEntry.objects.create(event=AuditEvent.JOB_FINISHED, actor="alice", **fields)
    row = list(AuditEntry.objects.filter(pk=forged.pk).values_list(*chain.CONTENT_FIELDS).get())
    row[1] = head.head_seq + 1
    digest = chain.entry_hash(None, head.head_hash, row)
    sql(
        f"UPDATE {ENTRY_TABLE} SET seq = %s, prev_hash = %s, entry_hash = %s WHERE id = %s",
        [row[1], head.head_hash, digest, forged.pk],
    )
    return forged.pk


def test_a_forged_sealed_entry_is_found(history):
    forge_at_head()
    problem = verify().chain_problem
    assert problem.kind == "inserted"
    assert "past its head" in problem.message


def test_an_entry_inserted_in_the_middle_is_found(history):
    ids = sealed_ids()
    at = seq_of(ids[3])
    # Make room after seq 4 (from the end, so seq stays unique), then forge seq 5.
    for entry_id in reversed(ids[4:]):
        sql(f"UPDATE {ENTRY_TABLE} SET seq = seq + 1 WHERE id = %s", [entry_id])
    forged = AuditEntry.objects.create(event=AuditEvent.JOB_SUBMITTED, actor="mallory")
    before = AuditEntry.objects.get(pk=ids[3])
    row = list(AuditEntry.objects.filter(pk=forged.pk).values_list(*chain.CONTENT_FIELDS).get())
    row[1] = at + 1
    digest = chain.entry_hash(None, before.entry_hash, row)
    sql(
        f"UPDATE {ENTRY_TABLE} SET seq = %s, prev_hash = %s, entry_hash = %s WHERE id = %s",
        [at + 1, before.entry_hash, digest, forged.pk],
    )
    problem = verify().chain_problem
    assert (problem.kind, problem.entry_id, problem.seq) == ("reordered", ids[4], at + 2)


def test_two_reordered_entries_are_found(history):
    first, second = sealed_ids()[2:4]
    a, b = seq_of(first), seq_of(second)
    sql(f"UPDATE {ENTRY_TABLE} SET seq = %s WHERE id = %s", [10**12, first])
    sql(f"UPDATE {ENTRY_TABLE} SET seq = %s WHERE id = %s", [a, second])
    sql(f"UPDATE {ENTRY_TABLE} SET seq = %s WHERE id = %s", [b, first])
    problem = verify().chain_problem
    assert (problem.kind, problem.entry_id, problem.seq) == ("reordered", second, a)


def test_a_moved_head_is_found(history):
    sql(f"UPDATE {CHAIN_TABLE} SET head_seq = head_seq - 1")
    assert verify().chain_problem.kind == "inserted"
    sql(f"UPDATE {CHAIN_TABLE} SET head_seq = head_seq + 1, head_hash = %s", ["0" * 64])
    assert verify().chain_problem.kind == "head"


def test_a_deleted_chain_row_is_found(history):
    sql(f"DELETE FROM {CHAIN_TABLE}")
    assert verify().chain_problem.kind == "deleted"


def rewrite_whole_chain() -> None:
    """What an insider with the code and no key can do: edit, then re-seal everything."""
    sql(f"UPDATE {ENTRY_TABLE} SET actor = 'mallory' WHERE event = %s", ["job.submitted"])
    prev = chain.GENESIS_HASH
    rows = AuditEntry.objects.order_by("seq").values_list(*chain.CONTENT_FIELDS)
    for row in list(rows):
        digest = chain.entry_hash(None, prev, row)
        sql(
            f"UPDATE {ENTRY_TABLE} SET prev_hash = %s, entry_hash = %s WHERE id = %s",
            [prev, digest, row[0]],
        )
        prev = digest
    sql(f"UPDATE {CHAIN_TABLE} SET head_hash = %s", [prev])


def test_a_rewrite_of_the_whole_chain_is_caught_by_a_head_held_outside(history):
    held = AuditChain.objects.get()
    rewrite_whole_chain()
    assert verify().chain_problem is None  # the database alone cannot show it...
    problem = verify(expect_head=(held.head_seq, held.head_hash)).chain_problem
    assert (problem.kind, problem.seq) == ("head", held.head_seq)  # ...the held head does


# The signing key ------------------------------------------------------------------


def test_with_a_signing_key_a_rewrite_without_it_is_found(user, other):
    signing.set_signing_key(b"k" * 32)
    scenario.a_bit_of_everything(user, other)
    seal()
    assert verify().ok
    rewrite_whole_chain()
    problem = verify().chain_problem
    assert (problem.kind, problem.seq) == ("edited", 1)


@pytest.mark.parametrize("key", [None, b"another key"])
def test_a_signed_chain_does_not_verify_with_another_key_or_none(user, other, key):
    signing.set_signing_key(b"the key")
    scenario.a_bit_of_everything(user, other)
    seal()
    signing.set_signing_key(key)
    report = verify()
    assert not report.ok
    assert report.chain_problem.kind == "key"


def test_an_unsigned_chain_does_not_verify_with_a_key(history):
    signing.set_signing_key(b"late key")
    assert verify().chain_problem.kind == "key"


def test_a_sealer_with_another_key_seals_nothing(history, user):
    scenario.refuse(user)
    signing.set_signing_key(b"late key")
    with pytest.raises(SigningKeyMismatch):
        seal()
    assert AuditEntry.objects.filter(seq__isnull=True).count() == 1


def test_the_key_is_taken_out_of_the_environment(monkeypatch):
    monkeypatch.setenv(signing.SIGNING_KEY_ENV, "from-env")
    signing.take_signing_key_from_environment()
    import os

    assert signing.SIGNING_KEY_ENV not in os.environ
    assert signing.signing_key() == b"from-env"


# Retention ------------------------------------------------------------------------


def test_pruned_jobs_and_entries_leave_a_chain_that_verifies(history, user):
    old = [history["ok"], history["failed"], history["cancelled"]]
    assert prune_jobs([job.pk for job in old]) == 3
    assert not Job.objects.filter(pk__in=[j.pk for j in old]).exists()
    assert verify().ok  # the jobs are gone, and the audit says so
    through = prunable_through()
    assert through > 1
    assert prune_entries(through) > 0
    report = verify()
    assert report.ok, report.first_problem
    assert report.base_seq == through
    # The metrics counted by pruned entries are carried by the checkpoint.
    scenario.succeed(scenario.start(history["pending"]))
    seal()
    assert verify().ok


def test_entries_of_a_job_that_still_exists_are_not_pruned(history):
    with pytest.raises(ValueError, match="cannot be pruned"):
        prune_entries(AuditChain.objects.get().head_seq)


def test_after_pruning_deleting_the_first_entry_left_is_found(history):
    prune_jobs([history["ok"].pk, history["failed"].pk])
    prune_entries(prunable_through())
    first = AuditEntry.objects.filter(seq__isnull=False).order_by("seq").first()
    sql(f"DELETE FROM {ENTRY_TABLE} WHERE id = %s", [first.pk])
    assert verify().chain_problem.kind == "deleted"


def test_a_forged_checkpoint_row_is_found(history):
    prune_jobs([history["ok"].pk])
    prune_entries(prunable_through())
    sql(f"UPDATE {CHAIN_TABLE} SET base_seq = base_seq + 1")
    assert not verify().ok


@pytest.mark.django_db(transaction=True)
def test_a_sealer_whose_head_moved_while_it_hashed_writes_nothing_and_tries_again(
    user, monkeypatch
):
    for _ in range(5):
        scenario.refuse(user)
    seal()  # the chain begins
    for _ in range(5):
        scenario.refuse(user)
    real_hash = chain.entry_hash
    interloper: list[int] = []

    def hash_while_another_sealer_seals(key, prev, row):
        if not interloper:
            interloper.append(0)
            result: list[int] = []

            def another_sealer() -> None:
                try:
                    result.append(seal().sealed)
                finally:
                    connections.close_all()

            other = threading.Thread(target=another_sealer)
            other.start()
            other.join()
            interloper[0] = result[0]
        return real_hash(key, prev, row)

    monkeypatch.setattr(chain, "entry_hash", hash_while_another_sealer_seals)
    lost = chain.seal()
    assert interloper == [5]  # the other sealer sealed the five first...
    assert lost.sealed == 0  # ...so this one's swap failed, and nothing was left to seal
    assert list(AuditEntry.objects.order_by("seq").values_list("seq", flat=True)) == list(
        range(1, 12)
    )
    assert verify().ok


def test_a_backstop_sealer_waits_ten_intervals_for_the_workers(db, user):
    scenario.refuse(user)
    seal()
    assert sealer._sealed_within(1.0)  # a worker sealed just now: web processes leave it
    AuditChain.objects.update(sealed_at=datetime(2020, 1, 1, tzinfo=UTC))
    assert not sealer._sealed_within(sealer.BACKSTOP_INTERVALS * 2.0)  # nobody keeps up
