"""Backend helpers without a server: the CPU's precision for vLLM, and adapter staging that never loads
bytes other than the registry's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.common.hashing import folder_files, manifest_sha256
from services.deploy.backends import AdapterMismatch, TransformersBackend, cpu_dtype

pytestmark = pytest.mark.unit


def test_bf16_only_where_the_cpu_computes_it() -> None:
    assert cpu_dtype("flags : fpu sse avx2 avx512f avx512_bf16") == "bfloat16"
    assert cpu_dtype("flags : fpu avx2 amx_bf16 amx_tile") == "bfloat16"
    assert cpu_dtype("flags : fpu sse avx2 fma") == "float32"
    assert cpu_dtype("") == "float32"


def _adapter(folder: Path, weight: bytes) -> str:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (folder / "adapter_model.safetensors").write_bytes(weight)
    return manifest_sha256(folder_files(folder))


def test_staging_copies_verifies_and_never_serves_other_bytes(tmp_path: Path) -> None:
    backend = TransformersBackend(tmp_path / "model", "base", tmp_path / "logs" / "server.log")
    sha = _adapter(tmp_path / "good", b"weights")
    staged = backend.stage(tmp_path / "good", sha)
    assert staged.parent == backend.staging and manifest_sha256(folder_files(staged)) == sha
    (tmp_path / "good" / "adapter_model.safetensors").write_bytes(b"changed after staging")
    with pytest.raises(AdapterMismatch):  # the source is checked every time, even with a good copy staged
        backend.stage(tmp_path / "good", sha)
    assert manifest_sha256(folder_files(staged)) == sha  # the staged copy is untouched
    with pytest.raises(AdapterMismatch):
        backend.stage(tmp_path / "missing", sha)
    with pytest.raises(AdapterMismatch):
        backend.stage(tmp_path / "good", "not-a-sha")
    assert [p.name for p in backend.staging.iterdir()] == [sha]  # no half-copied folders left behind
