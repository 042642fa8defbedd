"""Model bytes a service is about to use, checked against the sha256 the training run recorded.

Base models come from the model store (``<models_root>/<model_id>/``, see
:mod:`services.common.model_store`); trained artifacts come from the tenant's storage and are
copied into a local cache folder named by their sha256 and verified (the folder hash the
gpu_worker records: ``manifest_sha256(folder_files(folder))``) before anything loads them.
Eval (candidates) and deploy (serving pools) use the same checks. Messages never name local paths.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.hashing import folder_files, manifest_sha256
from services.common.limits import quote
from services.common.model_store import MANIFEST, is_stored, read_manifest
from services.common.storage import TenantStorage

MAX_ARTIFACT_BYTES = 32 << 30   # refuse to copy more than this from tenant storage (a full 7B fp32 model fits)
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ModelMismatch(FailedPrecondition):
    """A model's content is not the one the eval was asked to use (wrong or changed base model)."""

    default_reason = "MODEL_MISMATCH"


class ArtifactMismatch(ModelMismatch):
    """A candidate artifact's files do not hash to the sha256 recorded when it was trained."""

    default_reason = "ARTIFACT_MISMATCH"


def verify_base_model(models_root: Path, model_id: str, expected_sha256: str | None = None, *,
                      check_files: bool = True) -> str:
    """Check that ``model_id`` is stored, intact, and (when given) the expected one; returns its sha256.

    ``check_files`` re-hashes every file against the manifest (about a second per GB):
    done when a model is loaded, skipped when a loaded copy is reused.

    Raises:
        NotFound: no such model in the store.
        ModelMismatch: its manifest's sha256 differs from ``expected_sha256`` (the base was
            re-imported since training), or its files no longer match the manifest.
    """
    if not is_stored(models_root, model_id):
        raise NotFound(f"base model {quote(model_id)} is not in the model store; import it into this "
                       "service's model store (`privtune models import`)",
                       reason="BASE_MODEL_NOT_FOUND")
    manifest = read_manifest(models_root, model_id)
    recorded = str(manifest.get("sha256", ""))
    if expected_sha256 and recorded != expected_sha256:
        raise ModelMismatch(f"base model {quote(model_id)} in the model store has sha256 {recorded[:16]}..., "
                            f"but the model was trained on {expected_sha256[:16]}...; import the exact base "
                            "model it was trained on",
                            reason="BASE_MODEL_MISMATCH")
    if not check_files:
        return recorded
    actual = folder_files(models_root / model_id, exclude=(MANIFEST,))
    if actual != manifest.get("files") or manifest_sha256(actual) != recorded:
        changed = sorted({name for name, _ in set(actual.items()) ^ set(dict(manifest.get("files", {})).items())})
        raise ModelMismatch(f"base model {quote(model_id)} does not match its recorded hashes (changed: "
                            f"{', '.join(quote(n, 48) for n in changed[:5]) or 'listing'}); re-import it",
                            reason="BASE_MODEL_CORRUPT")
    return recorded


def fetch_artifact(storage: TenantStorage, artifact_uri: str, expected_sha256: str, cache_root: Path, *,
                   max_bytes: int = MAX_ARTIFACT_BYTES) -> Path:
    """Copy the artifact at ``artifact_uri`` into ``cache_root/<tenant key>/<sha256>/``, verify it, return that folder.

    The cache is kept per tenant storage (``<tenant key>`` hashes its root URI): a tenant
    naming another tenant's artifact sha256 never gets that tenant's cached copy. A
    folder already in the cache is re-verified, not trusted. The copy is staged beside
    the cache entry and renamed into place only once it hashes right.

    Raises:
        InvalidArgument: ``expected_sha256`` is not a sha256 hex digest.
        PermissionDenied: ``artifact_uri`` is outside this tenant's storage.
        NotFound: nothing is stored under ``artifact_uri``.
        FailedPrecondition: the artifact is larger than ``max_bytes``.
        ArtifactMismatch: the files hash to something other than ``expected_sha256``.
    """
    if not _SHA256.fullmatch(expected_sha256 or ""):
        raise InvalidArgument(f"artifact_sha256 {quote(expected_sha256)} is not a sha256 hex digest (64 lowercase "
                              "hex characters); pass the sha256 the training run recorded", reason="BAD_ARTIFACT_SHA")
    cache_root = cache_root / storage_key(storage)
    dest = cache_root / expected_sha256
    if dest.is_dir():
        try:
            check_artifact(dest, expected_sha256)
            return dest
        except ArtifactMismatch:   # a damaged local copy is not the tenant's fault: fetch it again
            shutil.rmtree(dest, ignore_errors=True)
    prefix = storage.key_for(artifact_uri).rstrip("/") + "/"
    objects = list(storage.list(prefix))
    if not objects:
        raise NotFound(f"no artifact files for artifact {expected_sha256[:16]}... at its URI in the tenant's "
                       "storage; check the model version's artifact URI", reason="ARTIFACT_NOT_FOUND")
    total = sum(o.size for o in objects)
    if total > max_bytes:
        raise FailedPrecondition(f"artifact {expected_sha256[:16]}... holds {total:,} bytes, more than this "
                                 f"service accepts ({max_bytes:,}); use an adapter artifact instead",
                                 reason="ARTIFACT_TOO_LARGE")
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{expected_sha256[:12]}-", dir=cache_root))
    try:
        for obj in objects:
            target = staging.joinpath(*obj.key[len(prefix):].split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            with storage.open(obj.key) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
        check_artifact(staging, expected_sha256)
        try:
            os.rename(staging, dest)
        except OSError:
            if not dest.is_dir():
                raise
            # another process cached it first; fall through to clean up our copy
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def storage_key(storage: TenantStorage) -> str:
    """A short, path-safe name for one tenant's storage (its root URI hashed)."""
    return hashlib.sha256(storage.uri.encode()).hexdigest()[:16]


def check_artifact(folder: Path, expected_sha256: str) -> None:
    """Refuse a copy whose files do not hash to ``expected_sha256`` (messages never name local paths)."""
    actual = manifest_sha256(folder_files(folder))
    if actual != expected_sha256:
        raise ArtifactMismatch(f"the artifact's files hash to {actual[:16]}..., not the recorded "
                               f"{expected_sha256[:16]}...; it was changed or only partly uploaded after training: "
                               "re-run the training job or register the artifact again")
