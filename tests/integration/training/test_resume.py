"""Crash and preemption: SIGKILL anywhere, SIGTERM, and the artifact stays bit-identical."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from gpu_worker import checkpoint as ckpt
from tests.training_fixtures import completed, events_of, make_dataset, make_models, run_to_end, start_job_process, tiny_spec

pytestmark = pytest.mark.integration

# Long enough that the job is still running when the test reads the event it kills at.
STEPS = dict(max_steps=120, checkpoint_every=4, keep_last_checkpoints=2, micro_batch_size=16)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str, str]:
    """Models, storage, dataset and the sha256 of an uninterrupted run (one per module)."""
    root = tmp_path_factory.mktemp("resume")
    models = make_models(root / "models")
    storage_root = f"file://{root}/tenants"
    uri = make_dataset(storage_root)
    rc, events = run_to_end(tiny_spec(uri, job_id="reference", **STEPS), models, storage_root, root / "reference")
    assert rc == 0
    return models, storage_root, uri, completed(events)["artifact_sha256"]


# ("checkpoint", 0): right after the first checkpoint that reached tenant storage. Uploads
# run behind training, so which step that is depends on timing; retention is off here so
# that no checkpoint is retired before its upload (retention does not change the artifact).
@pytest.mark.parametrize("kill_after", [("progress", 6), ("checkpoint", 0)])
def test_sigkill_then_resume_gives_the_uninterrupted_artifact(setup: tuple[Path, str, str, str],
                                                              kill_after: tuple[str, int], tmp_path: Path) -> None:
    models, storage_root, uri, reference_sha = setup
    kind, step = kill_after
    # one job id per case: the storage is shared, and a job resumes from its uploaded checkpoints
    spec = tiny_spec(uri, job_id=f"crashy-{kind}-{step}", **(STEPS | {"keep_last_checkpoints": 1000}))
    process = start_job_process(spec, models, storage_root, tmp_path)
    for event in events_of(process):
        if event["kind"] == kind and step in (0, event["step"]):
            process.send_signal(signal.SIGKILL)
            break
    assert process.wait(timeout=60) == -signal.SIGKILL
    rc, events = run_to_end(spec, models, storage_root, tmp_path)
    started = next(e for e in events if e["kind"] == "started")
    assert started["resumed_from_checkpoint_id"], "the rerun must resume, not start over"
    first_step = next(e["step"] for e in events if e["kind"] == "progress")
    assert first_step == int(started["resumed_from_checkpoint_id"].split("-")[1]) + 1
    assert rc == 0 and completed(events)["artifact_sha256"] == reference_sha


def test_sigterm_checkpoints_before_exiting_and_the_job_resumes(setup: tuple[Path, str, str, str],
                                                                 tmp_path: Path) -> None:
    models, storage_root, uri, reference_sha = setup
    spec = tiny_spec(uri, job_id="preempted", **STEPS)
    process = start_job_process(spec, models, storage_root, tmp_path)
    seen = []
    for event in events_of(process):
        seen.append(event)
        if event["kind"] == "progress" and event["step"] == 5:
            process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 3
    kinds = [e["kind"] for e in seen]
    assert kinds[-2:] == ["checkpoint", "preempted"]
    saved = ckpt.latest_valid(tmp_path / "checkpoints")
    assert saved is not None and saved.step == seen[-2]["step"] >= 5
    assert seen[-2]["uri"].startswith("file://")  # uploaded to tenant storage before exit
    rc, events = run_to_end(spec, models, storage_root, tmp_path)
    assert rc == 0 and next(e for e in events if e["kind"] == "started")["resumed_from_checkpoint_id"]
    assert completed(events)["artifact_sha256"] == reference_sha


def test_a_job_resumes_on_another_machine_from_the_uploaded_checkpoint(setup: tuple[Path, str, str, str],
                                                                      tmp_path: Path) -> None:
    import shutil

    models, storage_root, uri, reference_sha = setup
    spec = tiny_spec(uri, job_id="moved", **(STEPS | {"keep_last_checkpoints": 1000}))
    process = start_job_process(spec, models, storage_root, tmp_path / "machine-a")
    uploaded = 0
    for event in events_of(process):
        if event["kind"] == "checkpoint":
            uploaded = event["step"]
            process.send_signal(signal.SIGKILL)
            break
    assert process.wait(timeout=60) == -signal.SIGKILL
    shutil.rmtree(tmp_path / "machine-a")  # the first machine and its disk are gone
    rc, events = run_to_end(spec, models, storage_root, tmp_path / "machine-b")
    started = next(e for e in events if e["kind"] == "started")
    assert int(started["resumed_from_checkpoint_id"].split("-")[1]) >= uploaded > 0
    assert rc == 0 and completed(events)["artifact_sha256"] == reference_sha
