"""Where the platform keeps its state: one data folder by default, any backend by URI."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field


class PlatformConfig(BaseModel):
    """Backends by URI. Every field can be set with an environment variable (in brackets)."""

    data_dir: Path = Field(description="folder for the embedded defaults [PRIVTUNE_DATA_DIR]")
    bus_uri: str = Field(description="event bus: sqlite:///... or kafka://host:9092 [PRIVTUNE_BUS]")
    store_uri: str = Field(description="metadata store: sqlite:///... or postgresql+psycopg://... [PRIVTUNE_STORE]")
    storage_root: Path = Field(description="tenant storage root; tenant T lives in <root>/T/ [PRIVTUNE_STORAGE]")
    grpc_address: str = Field(description="gRPC listen address [PRIVTUNE_GRPC]")

    @classmethod
    def from_env(cls, data_dir: Path | str | None = None, **overrides: object) -> "PlatformConfig":
        """Defaults under ``data_dir`` (or $PRIVTUNE_DATA_DIR, or ./var), then env vars, then overrides."""
        base = Path(data_dir or os.environ.get("PRIVTUNE_DATA_DIR", "var")).absolute()
        values: dict[str, object] = {
            "data_dir": base,
            "bus_uri": os.environ.get("PRIVTUNE_BUS", f"sqlite:///{base}/events.db"),
            "store_uri": os.environ.get("PRIVTUNE_STORE", f"sqlite:///{base}/privtune.db"),
            "storage_root": Path(os.environ.get("PRIVTUNE_STORAGE", base / "tenants")),
            "grpc_address": os.environ.get("PRIVTUNE_GRPC", "127.0.0.1:50051"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
