"""Where the platform keeps its state: one data folder by default, any backend by URI."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field, PrivateAttr


class PlatformConfig(BaseModel):
    """Backends by URI. Every field can be set with an environment variable (in brackets)."""

    data_dir: Path = Field(description="folder for the embedded defaults [PRIVTUNE_DATA_DIR]")
    bus_uri: str = Field(description="event bus: sqlite:///... or kafka://host:9092 [PRIVTUNE_BUS]")
    store_uri: str = Field(description="metadata store: sqlite:///... or postgresql+psycopg://... [PRIVTUNE_STORE]")
    storage_root: str = Field(
        description="tenant storage root, a folder or file:// or s3://bucket/prefix URI; tenant T lives in <root>/T/ "
                    "[PRIVTUNE_STORAGE]")
    grpc_address: str = Field(description="gRPC listen address [PRIVTUNE_GRPC]")
    orchestrator_address: str = Field(
        "", description="gRPC address (host:port) of the orchestrator, where training workers claim attempts "
                        "[PRIVTUNE_ORCHESTRATOR]; empty: this process's own gRPC server")
    curation_address: str = Field(
        "", description="gRPC address (host:port) of the curation service, where curation workers claim jobs "
                        "[PRIVTUNE_CURATION]; empty: this process's own gRPC server")
    _serving_port: int = PrivateAttr(default=0)

    @classmethod
    def from_env(cls, data_dir: Path | str | None = None, **overrides: object) -> "PlatformConfig":
        """Defaults under ``data_dir`` (or $PRIVTUNE_DATA_DIR, or ./var), then env vars, then overrides."""
        base = Path(data_dir or os.environ.get("PRIVTUNE_DATA_DIR", "var")).absolute()
        values: dict[str, object] = {
            "data_dir": base,
            "bus_uri": os.environ.get("PRIVTUNE_BUS", f"sqlite:///{base}/events.db"),
            "store_uri": os.environ.get("PRIVTUNE_STORE", f"sqlite:///{base}/privtune.db"),
            "storage_root": os.environ.get("PRIVTUNE_STORAGE", str(base / "tenants")),
            "grpc_address": os.environ.get("PRIVTUNE_GRPC", "127.0.0.1:50051"),
            "orchestrator_address": os.environ.get("PRIVTUNE_ORCHESTRATOR", ""),
            "curation_address": os.environ.get("PRIVTUNE_CURATION", ""),
        }
        values.update({k: (str(v) if k == "storage_root" else v) for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def bind_serving_port(self, port: int) -> None:
        """Record the port this process's gRPC server got (``grpc_address`` may ask for port 0)."""
        self._serving_port = port

    @property
    def own_target(self) -> str:
        """This process's own gRPC server, as a client reaches it."""
        host, _, port = self.grpc_address.rpartition(":")
        host = "127.0.0.1" if host in ("", "0.0.0.0", "[::]") else host
        return f"{host}:{self._serving_port or port}"

    @property
    def orchestrator_target(self) -> str:
        """Where training workers claim attempts: ``orchestrator_address``, else this process's server."""
        return self.orchestrator_address or self.own_target

    @property
    def curation_target(self) -> str:
        """Where curation workers claim jobs: ``curation_address``, else this process's server."""
        return self.curation_address or self.own_target

    @property
    def models_dir(self) -> Path:
        """The base-model store (open weights, shared by tenants) [PRIVTUNE_MODELS]."""
        return Path(os.environ.get("PRIVTUNE_MODELS", self.data_dir / "models"))

    @property
    def work_dir(self) -> Path:
        """Scratch space of training jobs (local checkpoints), per tenant and job."""
        return self.data_dir / "work"

    @property
    def storage_uri(self) -> str:
        """The storage root as a URI (a plain folder becomes ``file:///abs/path``)."""
        return self.storage_root if "://" in self.storage_root else f"file://{Path(self.storage_root).absolute()}"

    @property
    def storage_path(self) -> Path:
        """The storage root folder, for the embedded default (``file://`` roots only)."""
        uri = self.storage_uri
        if not uri.startswith("file://"):
            raise ValueError(f"storage root {uri} is not a local folder")
        return Path(uri[len("file://"):])
