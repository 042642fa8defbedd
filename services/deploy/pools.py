"""Bring up a serving pool for a registered model version: fetch its artifact from the tenant's storage,
verify it (and the base model) against the sha256 the registry recorded, start a serving process and
load the adapter into it.

An ``adapter`` version runs its base model from the model store with the adapter loaded at runtime
(served under the name ``<endpoint>--v<n>``); a ``full`` or ``merged`` version runs its own weights.
Every step's failure is a ``PoolFailed`` with a stable code and a message a person can act on;
whatever was started is stopped again, so a failed bring-up leaves no process behind.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from services.common.artifacts import ArtifactMismatch, ModelMismatch, fetch_artifact, verify_base_model
from services.common.errors import PrivtuneError
from services.common.storage import open_tenant_storage
from services.deploy.backends import AdapterMismatch, BackendError, ServingBackend, TransformersBackend, VllmBackend
from services.deploy.catalog import DeployableVersion

log = logging.getLogger(__name__)


class PoolFailed(Exception):
    """A pool could not be brought up; ``code`` is stable (artifact_mismatch, base_model_mismatch, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class RunningPool:
    name: str                       # "blue" | "green"
    model: str                      # what the gateway asks the server for
    model_version_id: str
    deployment_id: str
    backend: ServingBackend
    stopped: threading.Event = field(default_factory=threading.Event)

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.backend.base_url,)

    def stop(self) -> None:
        if not self.stopped.is_set():
            self.stopped.set()
            self.backend.stop()


def served_name(endpoint: str, model_version_id: str) -> str:
    """The adapter's name in the serving process: the endpoint and the version number, no tenant data."""
    number = model_version_id.rsplit("/v", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"{endpoint}--v{number}")[:120]


class PoolLauncher:
    """``engine``: "transformers" or "vllm"; pools' logs and staged adapters go under ``work_dir``."""

    def __init__(self, storage_root: str, models_dir: Path, work_dir: Path, engine: str = "transformers",
                 start_timeout: float = 600.0) -> None:
        self.storage_root = storage_root
        self.models_dir = models_dir
        self.work_dir = work_dir
        self.engine = engine
        self.start_timeout = start_timeout

    def launch(self, tenant_id: str, version: DeployableVersion, *, pool: str, endpoint: str,
               deployment_id: str) -> RunningPool:
        """A started, healthy pool serving ``version``. Raises PoolFailed."""
        artifact = self._fetch(tenant_id, version)
        base_folder = self._base(version)
        name = served_name(endpoint, version.model_version_id)
        folder = self.work_dir / tenant_id / deployment_id
        if version.kind == "adapter":
            backend = self._backend(base_folder, version.base_model_id, folder / f"{pool}.log")
        else:  # full or merged weights: the artifact is the model
            model_dir = artifact / "merged" if (artifact / "merged" / "config.json").is_file() else artifact
            backend = self._backend(model_dir, name, folder / f"{pool}.log")
        try:
            backend.start(timeout=self.start_timeout)
            if version.kind == "adapter":
                backend.load_adapter(name, artifact, version.artifact_sha256)
        except AdapterMismatch as exc:
            backend.stop()
            raise PoolFailed("artifact_mismatch", f"the adapter was refused: {exc}") from None
        except BackendError as exc:  # its log tail (paths, tracebacks) goes to this service's log, not the event
            backend.stop()
            log.error("deployment %s: the %s server of pool %s did not come up: %s", deployment_id, self.engine, pool,
                      exc)
            raise PoolFailed("pool_start_failed", f"the {self.engine} server of pool {pool} did not come up or "
                                                  "refused the adapter; the deploy service's log has its output") \
                from None
        except BaseException:
            backend.stop()
            raise
        return RunningPool(pool, name, version.model_version_id, deployment_id, backend)

    def _fetch(self, tenant_id: str, version: DeployableVersion) -> Path:
        storage = open_tenant_storage(self.storage_root, tenant_id)
        try:
            return fetch_artifact(storage, version.artifact_uri, version.artifact_sha256, self.work_dir / "artifacts")
        except ArtifactMismatch as exc:
            raise PoolFailed("artifact_mismatch", str(exc)) from None
        except PrivtuneError as exc:
            raise PoolFailed("artifact_unavailable", str(exc)) from None

    def _base(self, version: DeployableVersion) -> Path:
        try:
            verify_base_model(self.models_dir, version.base_model_id, version.base_model_sha256 or None)
        except ModelMismatch as exc:
            raise PoolFailed("base_model_mismatch", str(exc)) from None
        except PrivtuneError as exc:
            raise PoolFailed("base_model_unavailable", str(exc)) from None
        return self.models_dir / version.base_model_id

    def _backend(self, model_dir: Path, served: str, log_path: Path) -> ServingBackend:
        if self.engine == "vllm":
            return VllmBackend(model_dir, served, log_path)
        return TransformersBackend(model_dir, served, log_path)
