"""The orchestrator's configuration: GPU pools, policy folder, liveness and retry timing.

Pools come from a YAML file (``$PRIVTUNE_POOLS``, default ``<data dir>/pools.yaml``);
without one, the embedded default is one dedicated local pool of CPU "devices".
Example (see deploy/pools.example.yaml)::

    pools:
      - name: a100-shared
        gpu_type: a100-80gb
        gpus: 16
        shared: true
        executor: kubernetes
        node_selector: {privtune.io/pool: a100-shared}
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.common.config import PlatformConfig
from services.common.errors import FailedPrecondition
from services.orchestrator.job_domain import RetryPolicy
from services.orchestrator.resources import Pool


class PoolFileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    gpu_type: str
    gpus: int = Field(ge=1)
    shared: bool = True
    executor: str = Field("local", pattern=r"^(local|kubernetes)$")
    tenants: list[str] = Field(default_factory=list)
    node_selector: dict[str, str] = Field(default_factory=dict)
    max_gpus_per_node: int = Field(8, ge=1)


class PoolFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pools: list[PoolFileEntry]


def default_pools() -> dict[str, Pool]:
    """One machine: a dedicated local pool with one device slot (the local worker runs one job at a time)."""
    return {"local": Pool(name="local", gpu_type="cpu", gpus=1, shared=False, executor="local")}


def load_pools(path: Path) -> dict[str, Pool]:
    """Pools declared in ``path``.

    Raises:
        FailedPrecondition: the file is not valid YAML or has an unknown key / bad value (named).
    """
    try:
        raw: Any = yaml.safe_load(path.read_text())
        parsed = PoolFile.model_validate(raw)
    except yaml.YAMLError as exc:
        raise FailedPrecondition(f"pool file {path} is not valid YAML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise FailedPrecondition(f"pool file {path} is invalid: {problems}") from None
    pools = {p.name: Pool(name=p.name, gpu_type=p.gpu_type, gpus=p.gpus, shared=p.shared, executor=p.executor,
                          tenants=tuple(p.tenants), node_selector=dict(p.node_selector),
                          max_gpus_per_node=p.max_gpus_per_node) for p in parsed.pools}
    if len(pools) != len(parsed.pools):
        raise FailedPrecondition(f"pool file {path} names a pool twice")
    return pools


@dataclass(frozen=True)
class OrchestratorSettings:
    pools: Mapping[str, Pool] = field(default_factory=default_pools)
    policies_dir: Path = Path("policies")
    models_dir: Path = Path("models")
    storage_uri: str = ""
    retry: RetryPolicy = RetryPolicy()
    lost_after_ms: int = 60_000            # RUNNING without a heartbeat for this long: the worker is gone
    start_timeout_ms: int = 600_000        # SCHEDULED and no worker picked it up for this long: requeue
    tick_seconds: float = 0.5
    default_pool: str = "local"
    pools_sha256: str = ""
    create_batch: int = 0                  # creates written in one transaction at most; 0: the store's default

    @classmethod
    def from_config(cls, config: PlatformConfig, **overrides: Any) -> "OrchestratorSettings":
        pools_file = Path(os.environ.get("PRIVTUNE_POOLS", config.data_dir / "pools.yaml"))
        pools, sha = default_pools(), ""
        if pools_file.exists():
            pools, sha = load_pools(pools_file), hashlib.sha256(pools_file.read_bytes()).hexdigest()
        values: dict[str, Any] = dict(
            pools=pools, pools_sha256=sha, models_dir=config.models_dir, storage_uri=config.storage_uri,
            policies_dir=Path(os.environ.get("PRIVTUNE_POLICIES", config.data_dir / "policies")),
            lost_after_ms=int(float(os.environ.get("PRIVTUNE_WORKER_LOST_AFTER_S", "60")) * 1000),
            start_timeout_ms=int(float(os.environ.get("PRIVTUNE_START_TIMEOUT_S", "600")) * 1000),
            default_pool=os.environ.get("PRIVTUNE_DEFAULT_POOL", next(iter(pools))),
            create_batch=_create_batch(os.environ.get("PRIVTUNE_CREATE_BATCH", "0")),
        )
        values.update(overrides)
        return cls(**values)


def _create_batch(value: str) -> int:
    """``PRIVTUNE_CREATE_BATCH``: creates written in one transaction at most (1: each on its own; 0: the
    store's default, see application.CREATE_BATCH)."""
    try:
        batch = int(value)
    except ValueError:
        batch = -1
    if not 0 <= batch <= 1024:
        raise ValueError(f"PRIVTUNE_CREATE_BATCH={value!r}: expected a whole number from 0 (the store's default) "
                         "to 1024; 1 writes each create on its own")
    return batch
