"""A curation job's local work folder: private, per attempt, removed at the end and after a crash."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from services.common.errors import InvalidArgument
from services.curation.work_area import attempt_work_dir, job_work_dir, remove_abandoned_work, remove_dead_attempts

pytestmark = pytest.mark.unit


def test_an_attempt_works_in_a_private_folder_that_is_removed_when_it_ends(tmp_path: Path) -> None:
    work = tmp_path / "work"
    with attempt_work_dir(work, "acme", "cj-1") as folder:
        assert folder.parent == job_work_dir(work, "acme", "cj-1") == work / "acme" / "curation" / "cj-1"
        (folder / "shard.jsonl").write_text("curated text")
        for level in (work, work / "acme", work / "acme" / "curation", folder.parent, folder):
            assert level.stat().st_mode & 0o777 == 0o700, level
    assert not (work / "acme" / "curation" / "cj-1").exists()
    with pytest.raises(RuntimeError):
        with attempt_work_dir(work, "acme", "cj-1") as folder:
            (folder / "shard.jsonl").write_text("curated text")
            raise RuntimeError("the job failed")
    assert not (work / "acme" / "curation" / "cj-1").exists()


def _abandoned_attempt(job_dir: Path, name: str) -> Path:
    """What a killed attempt leaves: its folder and its (no longer locked) lock file."""
    (job_dir / name).mkdir(parents=True)
    (job_dir / name / "train-00000.jsonl").write_text("curated text")
    (job_dir / f"{name}.lock").touch()
    return job_dir / name


def test_the_next_attempt_removes_dead_attempts_but_not_live_ones(tmp_path: Path) -> None:
    work = tmp_path / "work"
    job_dir = job_work_dir(work, "acme", "cj-2")
    dead = _abandoned_attempt(job_dir, "dead")
    live = _abandoned_attempt(job_dir, "live")
    fd = os.open(job_dir / "live.lock", os.O_RDWR)  # another process still runs this attempt
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with attempt_work_dir(work, "acme", "cj-2") as folder:
            assert not dead.exists() and not (job_dir / "dead.lock").exists()
            assert live.exists() and folder.exists()
        assert live.exists() and sorted(p.name for p in job_dir.iterdir()) == ["live", "live.lock"]
    finally:
        os.close(fd)
    assert remove_dead_attempts(job_dir) == 1 and not job_dir.exists()


def test_a_worker_start_removes_every_dead_attempt_under_the_work_folder(tmp_path: Path) -> None:
    work = tmp_path / "work"
    for tenant, job in (("acme", "cj-a"), ("acme", "cj-b"), ("globex", "cj-c")):
        _abandoned_attempt(job_work_dir(work, tenant, job), "old")
    assert remove_abandoned_work(work) == 3
    assert [p for p in work.rglob("*") if p.is_file()] == []
    assert remove_abandoned_work(tmp_path / "missing") == 0


@pytest.mark.parametrize("tenant, job", [("../acme", "cj-1"), ("acme", "../cj-1"), ("acme", "cj/1"), ("acme", ""),
                                         ("acme", ".."), ("ACME", "cj-1")])
def test_ids_that_could_name_another_folder_are_refused(tmp_path: Path, tenant: str, job: str) -> None:
    with pytest.raises(InvalidArgument):
        job_work_dir(tmp_path, tenant, job)
