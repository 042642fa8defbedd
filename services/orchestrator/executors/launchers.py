"""Executors as the controller sees them: what starts or stops an attempt besides the bus command.

``local``: nothing to do — the gpu_worker pool consumes ``TrainingScheduled`` from
``privtune.training.commands``. ``kubernetes``: the attempt is submitted as a Job or
PyTorchJob (see docs/kubernetes.md) when ``$PRIVTUNE_K8S_SETTINGS`` names a settings file;
its pods get client certificates from the platform CA (the PKI folder of the platform's
configuration, or ``$PRIVTUNE_PKI_DIR``).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from services.common.config import PlatformConfig
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


def configured_launchers(pools: dict[str, Pool], config: PlatformConfig | None = None) -> dict[str, object]:
    """The launchers this deployment configured (none on the embedded default).

    ``config``: the platform's, whose CA signs the Kubernetes pods' certificates; without it, the CA
    in ``$PRIVTUNE_PKI_DIR``.

    Raises:
        ValueError: Kubernetes is configured, but there is no platform CA to give its pods identities.
    """
    path = os.environ.get("PRIVTUNE_K8S_SETTINGS")
    if not path:
        return {}
    from services.common.auth.pki import ensure_local_pki
    from services.orchestrator.executors.kubernetes import KubernetesExecutor, KubernetesSettings

    pki_dir = config.pki_dir if config is not None else os.environ.get("PRIVTUNE_PKI_DIR")
    if not pki_dir:
        raise ValueError("PRIVTUNE_K8S_SETTINGS is set, but the platform CA that signs the training pods' client "
                         "certificates is unknown: set PRIVTUNE_PKI_DIR to the platform's PKI folder")
    settings = KubernetesSettings.model_validate(yaml.safe_load(Path(path).read_text()))
    executor = KubernetesExecutor.from_config(settings, os.environ.get("PRIVTUNE_KUBECONFIG"),
                                              pki=ensure_local_pki(Path(pki_dir)))
    return {"kubernetes": KubernetesLauncher(executor, pools)}
