"""Write an immutable, content-addressed dataset version: shards + manifest in tenant storage.

Shards are streamed to local files in the job's work folder (see work_area.py: inside
the platform's data folder, never the system temp folder) while examples are produced,
hashed, then uploaded under
``datasets/<dataset_id>/versions/<version_id>/``. The version id is the sha256 of the
canonical manifest, which holds no time or job id: the same inputs, config and
library versions always give the same id, and an existing version is never rewritten.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import BinaryIO, Iterator

from services.common.storage import TenantStorage

MANIFEST_SCHEMA = "privtune.dataset_version/1"
_LIBRARIES = ("privtune", "presidio-analyzer", "presidio-anonymizer", "spacy", "datasketch", "langid", "pypdf",
              "beautifulsoup4", "lxml")


def library_versions() -> dict[str, str]:
    out = {}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


@dataclass
class _Shard:
    name: str
    split: str
    path: Path
    handle: BinaryIO
    records: int = 0
    digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    size: int = 0


class ShardWriter:
    """Streams examples into JSONL shards per split in ``folder``, rolling every ``shard_size`` records.

    ``folder`` (created, mode 0700) must be the job's own: ``cleanup()`` removes it.
    """

    def __init__(self, shard_size: int, folder: Path) -> None:
        self.shard_size = shard_size
        self.folder = folder
        folder.mkdir(mode=0o700)
        self._open: dict[str, _Shard] = {}
        self.closed: list[_Shard] = []

    def add(self, split: str, example: dict[str, object]) -> None:
        line = (json.dumps(example, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        self._add_line(split, line)

    def _add_line(self, split: str, line: bytes) -> None:
        shard = self._open.get(split)
        if shard is None or shard.records >= self.shard_size:
            if shard is not None:
                self._close(shard)
            index = sum(1 for s in self.closed if s.split == split)
            name = f"{split}-{index:05d}.jsonl"
            path = self.folder / name
            shard = self._open[split] = _Shard(name, split, path, open(path, "wb"))
        shard.handle.write(line)
        shard.digest.update(line)
        shard.size += len(line)
        shard.records += 1

    def _close(self, shard: _Shard) -> None:
        shard.handle.close()
        self.closed.append(shard)
        del self._open[shard.split]

    def insert(self, split: str, placed: list[tuple[int, dict[str, object]]]) -> None:
        """Put each ``(position, example)`` at that index of ``split``'s final order (positions sorted, distinct).

        The split's shards written so far are streamed again, one line at a time, into new
        shards of the same names with the examples in their places (memory stays bounded).
        Call it once the split is complete, before ``finish()``.
        """
        if split in self._open:
            self._close(self._open[split])
        old = sorted((s for s in self.closed if s.split == split), key=lambda s: s.name)
        self.closed = [s for s in self.closed if s.split != split]
        for shard in old:
            shard.path = shard.path.rename(shard.path.with_name(shard.name + ".before"))
        pending = iter(placed)
        nxt = next(pending, None)
        index = 0
        for shard in old:
            with open(shard.path, "rb") as fh:
                for line in fh:
                    while nxt is not None and nxt[0] == index:
                        self.add(split, nxt[1])
                        index += 1
                        nxt = next(pending, None)
                    self._add_line(split, line)
                    index += 1
            shard.path.unlink()
        while nxt is not None:
            self.add(split, nxt[1])
            nxt = next(pending, None)

    def finish(self) -> list[_Shard]:
        for shard in list(self._open.values()):
            self._close(shard)
        return sorted(self.closed, key=lambda s: s.name)

    def cleanup(self) -> None:
        for shard in list(self._open.values()):
            self._close(shard)
        shutil.rmtree(self.folder, ignore_errors=True)


def _chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(size):
            yield chunk


@dataclass(frozen=True)
class WrittenVersion:
    version_id: str
    manifest_key: str
    manifest_sha256: str
    report_key: str
    manifest: dict[str, object]


def build_manifest(dataset_id: str, source_checksum: str, config_json: str, config_sha256: str, recipe: str,
                   output_format: str, shards: list[_Shard], counts: dict[str, int],
                   files: dict[str, object] | None = None) -> dict[str, object]:
    """The version's manifest; ``files`` adds entries for other files of the version (``canaries``).

    Entries are added only when given, so a version without them has the manifest (and id) it
    always had.
    """
    return {
        "schema": MANIFEST_SCHEMA,
        "dataset_id": dataset_id,
        "source_checksum_sha256": source_checksum,
        "recipe": recipe,
        "output_format": output_format,
        "config_sha256": config_sha256,
        "config": json.loads(config_json),
        "library_versions": library_versions(),
        "shards": [{"name": s.name, "split": s.split, "records": s.records, "bytes": s.size,
                    "sha256": s.digest.hexdigest()} for s in shards],
        "counts": counts,
        **(files or {}),
    }


def canonical(manifest: dict[str, object]) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def write_version(storage: TenantStorage, dataset_id: str, manifest: dict[str, object], shards: list[_Shard],
                  report_json: bytes, report_html: bytes, extra: dict[str, bytes] | None = None) -> WrittenVersion:
    """Upload shards, ``extra`` files (name -> bytes, listed in the manifest), report and manifest.

    The manifest goes last, so a present manifest means a complete version.
    """
    body = canonical(manifest)
    manifest_sha = hashlib.sha256(body).hexdigest()
    version_id = f"dv-{manifest_sha[:32]}"
    base = f"datasets/{dataset_id}/versions/{version_id}"
    manifest_key = f"{base}/manifest.json"
    if not storage.exists(manifest_key):
        for shard in shards:
            written = storage.write(f"{base}/{shard.name}", _chunks(shard.path))
            if written != shard.digest.hexdigest():
                raise OSError(f"shard {shard.name} changed on upload (sha256 {written} != {shard.digest.hexdigest()})")
        for name, data in (extra or {}).items():
            if storage.write(f"{base}/{name}", data) != hashlib.sha256(data).hexdigest():
                raise OSError(f"{name} changed on upload")
        storage.write(f"{base}/report.json", report_json)
        storage.write(f"{base}/report.html", report_html)
        storage.write(manifest_key, body)
    return WrittenVersion(version_id, manifest_key, manifest_sha, f"{base}/report.json", manifest)
