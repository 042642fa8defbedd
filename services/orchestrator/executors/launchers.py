"""Executors as the controller sees them: what starts or stops an attempt besides the bus command.

``local``: nothing to do — the gpu_worker pool consumes ``TrainingScheduled`` from
``privtune.training.commands``. ``kubernetes``: the attempt is submitted as a Job or
PyTorchJob (see docs/kubernetes.md) when ``$PRIVTUNE_K8S_SETTINGS`` names a settings file.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from services.common.training_spec import TrainingSpec
from services.orchestrator.job_domain import TrainingJobState
from services.orchestrator.resources import Pool
from services.orchestrator.scheduling import Place


class KubernetesLauncher:
    def __init__(self, executor: object, pools: dict[str, Pool]) -> None:
        self.executor = executor
        self.pools = pools

    def launch(self, state: TrainingJobState, placed: Place) -> None:
        spec = TrainingSpec.model_validate_json(state.request.config_json)
        pool = self.pools[placed.pool]
        self.executor.launch(state.job_id, state.tenant_id, spec, pool, pool.gpu_type,  # type: ignore[attr-defined]
                             state.request.dataset_uri, state.attempt + 1, priority=state.priority)

    def stop(self, state: TrainingJobState) -> None:
        self.executor.stop(state.job_id, state.tenant_id)  # type: ignore[attr-defined]


def configured_launchers(pools: dict[str, Pool]) -> dict[str, object]:
    """The launchers this deployment configured (none on the embedded default)."""
    path = os.environ.get("PRIVTUNE_K8S_SETTINGS")
    if not path:
        return {}
    from services.orchestrator.executors.kubernetes import KubernetesExecutor, KubernetesSettings

    settings = KubernetesSettings.model_validate(yaml.safe_load(Path(path).read_text()))
    executor = KubernetesExecutor.from_config(settings, os.environ.get("PRIVTUNE_KUBECONFIG"))
    return {"kubernetes": KubernetesLauncher(executor, pools)}
