"""Divergence: a relative jump that is also a real one in absolute terms."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_worker.trainer import Trainer, TrainingError
from services.common.training_spec import TrainingSpec

pytestmark = pytest.mark.unit


def _trainer(tmp_path: Path, losses: list[float]) -> Trainer:
    spec = TrainingSpec(job_id="j", tenant_id="t", base_model="m", dataset_uri="file:///d", divergence_factor=3.0)
    trainer = Trainer(spec, tmp_path, None, "d", tmp_path)  # type: ignore[arg-type]  (no I/O here)
    trainer.state.losses = losses
    return trainer


def test_a_converged_run_is_not_failed_for_noise_near_zero(tmp_path: Path) -> None:
    _trainer(tmp_path, [0.002] * 10)._check_divergence(11, 0.0097)  # 4.9x the median, +0.008 nats


def test_a_real_jump_fails_with_the_remedy(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="lower learning_rate") as info:
        _trainer(tmp_path, [1.2] * 10)._check_divergence(11, 4.0)
    assert info.value.code == "loss_diverged"
    with pytest.raises(TrainingError, match="became nan"):
        _trainer(tmp_path, [1.2] * 10)._check_divergence(11, float("nan"))
