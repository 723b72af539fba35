"""Storing a job's artifacts, recording them with the job, reading and deleting them.

Files go through Django's storage API, to the storage ``STORAGES["artifacts"]``
(``FileSystemStorage`` under ``MEDIA_ROOT`` unless configured otherwise; S3 through
django-storages, docs/configuration.md). A storage is no part of a database
transaction, so the order is: save the files (before the outcome's transaction),
record their rows and audit entry in that transaction, and delete the files again
when the outcome was not recorded as this run's. Stored names are made here, never
from the plugin's names.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.files import File
from django.core.files.storage import Storage, storages

from execution.artifacts.models import JobArtifact
from execution.audit.events import AuditEvent
from plugins.artifacts import name_problem
from plugins.runtime.isolation.artifacts import ReceivedArtifact, close_all

if TYPE_CHECKING:
    from execution.models import Job

logger = logging.getLogger(__name__)

STORAGE_ALIAS = "artifacts"
FOLDER = "job-artifacts"


class ArtifactStorageFailed(Exception):
    """The artifacts storage refused a file; nothing of the execution's files is left there."""


class LeaseLost(Exception):
    """The job's lease could not be renewed (it is no longer this run's): nothing is stored."""


@dataclass(frozen=True)
class StoredArtifact:
    """A file saved to the storage, not yet recorded on its job."""

    name: str
    content_type: str
    size: int
    sha256: str
    storage_path: str

    def audited(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "content_type": self.content_type,
            "size": self.size,
            "sha256": self.sha256,
        }


def artifact_storage() -> Storage:
    return storages[STORAGE_ALIAS]


def store_artifacts(
    job: Job, artifacts: Sequence[ReceivedArtifact], *, lease_s: float | None = None
) -> list[StoredArtifact]:
    """Save each of a run's artifacts to the storage, and close them.

    ``lease_s``: before each file, the job's lease is renewed for that long, so that
    saving (up to 16 large files, after the plugin's time limit was spent) never
    outlasts it. Raises ArtifactStorageFailed if the storage fails, LeaseLost if the
    job is no longer this run's, after deleting what it saved.
    """
    storage = artifact_storage()
    folder = f"{FOLDER}/{job.pk}/{uuid.uuid4().hex}"  # one per run: a retry never collides
    stored: list[StoredArtifact] = []
    try:
        for index, artifact in enumerate(artifacts):
            if lease_s is not None and not job.renew_lease(lease_s):
                raise LeaseLost(f"Job {job.pk} is no longer this run's")
            path = storage.save(f"{folder}/{index}", File(artifact.file))
            stored.append(
                StoredArtifact(
                    artifact.name, artifact.content_type, artifact.size, artifact.sha256, path
                )
            )
    except LeaseLost:
        delete_files(item.storage_path for item in stored)
        raise
    except Exception as exc:
        logger.exception("Storing the artifacts of job %s failed", job.pk)
        delete_files(item.storage_path for item in stored)
        raise ArtifactStorageFailed(f"{type(exc).__name__}: {exc}") from exc
    finally:
        close_all(artifacts)
    return stored


def record_artifacts(job: Job, stored: Sequence[StoredArtifact]) -> list[JobArtifact]:
    """Their rows and one ``job.artifacts_stored`` audit entry, in the caller's transaction."""
    rows = [
        JobArtifact(
            job_id=job.pk,
            name=item.name,
            content_type=item.content_type,
            size=item.size,
            sha256=item.sha256,
            storage_path=item.storage_path,
        )
        for item in stored
    ]
    if not rows:
        return rows
    JobArtifact.objects.bulk_create(rows)
    job._audit(
        AuditEvent.JOB_ARTIFACTS_STORED,
        details={"artifacts": [item.audited() for item in stored]},
    )
    return rows


def recorded_as_this_run(job: Job, stored: Sequence[StoredArtifact]) -> bool:
    """Whether the job's row took these files (a commit whose answer was lost included)."""
    return JobArtifact.objects.filter(job_id=job.pk, storage_path=stored[0].storage_path).exists()


def discard(stored: Sequence[StoredArtifact]) -> None:
    """Delete files saved for an outcome that was not recorded."""
    delete_files(item.storage_path for item in stored)


def delete_files(paths: Iterable[str]) -> None:
    """Delete these files from the storage; a file that will not go is logged, not raised."""
    storage = artifact_storage()
    for path in paths:
        try:
            storage.delete(path)
        except Exception:
            logger.exception("Deleting the artifact file %s failed", path)


def artifacts_of(job: Job) -> list[JobArtifact]:
    """The job's artifacts, in the order its plugin returned them."""
    known = getattr(job, "recorded_artifacts", None)  # set by the run that recorded them
    if known is not None:
        return list(known)
    return list(JobArtifact.objects.filter(job_id=job.pk).order_by("id"))


def get_artifact(job: Job, name: str) -> JobArtifact:
    """The job's artifact ``name``; raises JobArtifact.DoesNotExist.

    A name no artifact can have (NUL, a lone surrogate, too long: from a URL's ``%00``)
    names none, and is not sent to the database, which could not even compare it.
    """
    if name_problem(name) is not None:
        raise JobArtifact.DoesNotExist(f"No artifact of job {job.pk} can be named {name!r}")
    return JobArtifact.objects.get(job_id=job.pk, name=name)


def open_artifact(artifact: JobArtifact) -> File[Any]:
    """The artifact's file, open for reading (the caller closes it; FileResponse does)."""
    return artifact_storage().open(artifact.storage_path, "rb")
