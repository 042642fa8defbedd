"""Dataset aggregate: pure decisions on frozen state, no I/O.

``decide(state, command) -> events`` refuses or accepts a command;
``evolve(state, event) -> state`` folds one event into the state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Mapping

from privtune.v1 import events_pb2
from services.common.errors import AlreadyExists, InvalidArgument
from services.common.limits import quote

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_LABELS = 32


@dataclass(frozen=True)
class RegisterDataset:
    """Command: register raw files already scanned inside the tenant's storage."""

    tenant_id: str
    dataset_id: str
    name: str
    storage_uri: str
    format_hint: int
    classification: int
    checksum_sha256: str
    file_count: int
    total_bytes: int
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetState:
    dataset_id: str = ""
    tenant_id: str = ""
    name: str = ""
    storage_uri: str = ""
    format_hint: int = 0
    classification: int = 0
    checksum_sha256: str = ""
    file_count: int = 0
    total_bytes: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at_ms: int = 0
    created_by: str = ""
    version: int = 0

    @property
    def exists(self) -> bool:
        return self.version > 0


def validate_registration(cmd: RegisterDataset) -> None:
    """Raise InvalidArgument naming the first field that is wrong and how to fix it."""
    if not NAME_RE.match(cmd.name):
        raise InvalidArgument(
            f"dataset name {quote(cmd.name)} is invalid: use 1-128 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit", field="name"
        )
    if cmd.classification not in events_pb2.DataClassification.values() or cmd.classification == 0:
        raise InvalidArgument(
            "classification is required: one of PUBLIC, INTERNAL, CONFIDENTIAL, RESTRICTED "
            "(DATA_CLASSIFICATION_*)", field="classification"
        )
    if cmd.format_hint not in events_pb2.DatasetFormat.values():
        raise InvalidArgument(f"format_hint {cmd.format_hint} is not a DatasetFormat value", field="format_hint")
    if len(cmd.labels) > MAX_LABELS:
        raise InvalidArgument(f"{len(cmd.labels)} labels given, at most {MAX_LABELS} are allowed", field="labels",
                              reason="TOO_MANY_ENTRIES", metadata={"max_entries": str(MAX_LABELS)})
    for key, value in cmd.labels.items():
        if not NAME_RE.match(key) or len(value) > 256:
            raise InvalidArgument(f"label {quote(key)}: keys like dataset names, values at most 256 characters",
                                  field=f"labels[{quote(key)}]")


def decide_register(state: DatasetState, cmd: RegisterDataset) -> list[events_pb2.DatasetRegistered]:
    """Accept a registration once; a second one for the same id is refused."""
    if state.exists:
        raise AlreadyExists(f"dataset {cmd.dataset_id} is already registered")
    validate_registration(cmd)
    return [
        events_pb2.DatasetRegistered(
            dataset_id=cmd.dataset_id, name=cmd.name, storage_uri=cmd.storage_uri, format_hint=cmd.format_hint,
            classification=cmd.classification, checksum_sha256=cmd.checksum_sha256, file_count=cmd.file_count,
            total_bytes=cmd.total_bytes, labels=dict(cmd.labels),
        )
    ]


def evolve(state: DatasetState, env: events_pb2.EventEnvelope) -> DatasetState:
    """Fold one stored event into the dataset's state."""
    kind = env.WhichOneof("payload")
    if kind == "dataset_registered":
        e = env.dataset_registered
        return DatasetState(
            dataset_id=e.dataset_id, tenant_id=env.tenant_id, name=e.name, storage_uri=e.storage_uri,
            format_hint=e.format_hint, classification=e.classification, checksum_sha256=e.checksum_sha256,
            file_count=e.file_count, total_bytes=e.total_bytes, labels=dict(e.labels),
            created_at_ms=env.time.ToMilliseconds(), created_by=env.actor, version=env.aggregate_version,
        )
    return replace(state, version=env.aggregate_version)
