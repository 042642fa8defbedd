"""A curation job's scratch space: ``<data dir>/work/<tenant>/curation/<job_id>/<attempt>/``.

A job streams its shards to local files before it hashes and uploads them, so these
files hold curated text. They stay in the platform's data folder, inside the same trust
boundary as its keys and embedded stores (folders mode 0700), and never in the system
temp folder, which outlives the job and is shared with everything else on the machine.
They do not go into tenant storage either: there they would be objects of the tenant (a
dataset registered on the tenant's whole folder would ingest them), and an ``s3://`` root
has no local folder to stream to.

Each attempt at a job works in a folder of its own and holds an ``flock`` on
``<attempt>.lock`` beside it while it runs. An attempt removes its folder when it ends,
succeeded or failed; a ``kill -9`` cannot, but the kernel drops its lock, so the next
attempt at the job (the redelivered request) removes every unlocked attempt's leftovers
before it starts. An attempt still running in another process keeps its lock and its files. A worker also
removes dead attempts' leftovers of every job when it starts, for jobs redelivered elsewhere.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from services.common.errors import InvalidArgument
from services.common.identity import is_tenant_id

log = logging.getLogger(__name__)
_JOB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_LOCK = ".lock"


def job_work_dir(work_root: Path, tenant_id: str, job_id: str) -> Path:
    """``<work_root>/<tenant_id>/curation/<job_id>``, for ids that are single safe path segments.

    Raises:
        InvalidArgument: the tenant or job id could name another folder.
    """
    if not is_tenant_id(tenant_id) or not _JOB_ID_RE.fullmatch(job_id):
        raise InvalidArgument(f"cannot make a work folder for tenant {tenant_id!r}, job {job_id!r}: "
                              "ids must be letters, digits, '-' or '_'")
    return work_root / tenant_id / "curation" / job_id


def _make_private_dirs(path: Path) -> None:
    """Create ``path`` and any missing parents, each new folder mode 0700."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass


def remove_dead_attempts(job_dir: Path) -> int:
    """Remove the folders of attempts at this job whose process is gone; returns how many.

    An attempt's lock is held for as long as its process lives, so a lock this call can
    take belongs to an attempt that ended without cleaning up (killed, or its cleanup failed).
    """
    if not job_dir.is_dir():
        return 0
    removed = 0
    for lock_path in sorted(job_dir.glob(f"*{_LOCK}")):
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except FileNotFoundError:
            continue  # its attempt just removed it
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live attempt (another process) owns it
            shutil.rmtree(job_dir / lock_path.name[:-len(_LOCK)], ignore_errors=True)
            lock_path.unlink(missing_ok=True)
            removed += 1
        finally:
            os.close(fd)
    if removed:
        log.info("removed %d abandoned attempt folder(s) of %s", removed, job_dir.name)
    try:
        job_dir.rmdir()  # only when nothing is left
    except OSError:
        pass
    return removed


def remove_abandoned_work(work_root: Path) -> int:
    """Remove dead attempts' folders of every curation job under ``work_root`` (at worker start).

    The redelivered job cleans up after its killed attempt, but the redelivery may reach a
    worker on another machine; this removes what a worker killed on this one left behind.
    """
    return sum(remove_dead_attempts(job_dir) for job_dir in sorted(work_root.glob("*/curation/*"))
               if job_dir.is_dir())


@contextmanager
def attempt_work_dir(work_root: Path, tenant_id: str, job_id: str) -> Iterator[Path]:
    """A new, empty, private folder for one attempt at a job, removed when the block ends.

    Leftovers of earlier attempts that died are removed first.
    """
    job_dir = job_work_dir(work_root, tenant_id, job_id)
    _make_private_dirs(job_dir)
    attempt = uuid.uuid4().hex
    # lock a file under a temporary name first, so no sweeper ever sees this attempt's lock unlocked
    pending = job_dir / f".{attempt}.pending"
    fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    folder = job_dir / attempt
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        lock_path = job_dir / f"{attempt}{_LOCK}"
        os.rename(pending, lock_path)
        remove_dead_attempts(job_dir)
        folder.mkdir(mode=0o700)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            lock_path.unlink(missing_ok=True)
    finally:
        os.close(fd)
        pending.unlink(missing_ok=True)
        try:
            job_dir.rmdir()
        except OSError:
            pass
