"""Content hashes for files and folders (artifacts, checkpoints, base models)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def folder_files(folder: Path, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder``, sorted by path."""
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in exclude}


def manifest_sha256(files: dict[str, str]) -> str:
    """Hash of a ``{path: sha256}`` listing: the identity of a folder's contents."""
    body = json.dumps(dict(sorted(files.items())), separators=(",", ":")).encode()
    return hashlib.sha256(body).hexdigest()
