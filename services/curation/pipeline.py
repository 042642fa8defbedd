"""The curation pipeline: raw objects -> documents -> filters -> examples -> dataset version.

Stages run cheapest first (quality, then dedupe, then PII, the slowest), each drop
counted with its reason in the report. Memory stays bounded: documents stream
through, shards stream to disk, dedupe keeps signatures only.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from services.common.storage import RejectedEntry, TenantStorage, list_entries
from services.curation import general_mix
from services.curation.canaries import CANARIES_FILE, insertion_positions, make_canaries
from services.curation.config import CurationConfig
from services.curation.dedupe import Deduper
from services.curation.documents import Document, Quarantined
from services.curation.parsers import parse_object, rejected_object
from services.common.pii import PiiConfig
from services.common.pii.pool import PiiPool, Treated
from services.curation.quality import QualityFilter
from services.curation.recipes import build_examples, no_example_reason
from services.curation.report import CurationReport, render_html
from services.curation.snapshot import ShardWriter, WrittenVersion, build_manifest, write_version
from services.curation.split import is_holdout

log = logging.getLogger(__name__)
_NOT_REDACTED = frozenset({"role", "author_role", "ticket_id", "language", "symbol", "created_at", "id"})
_PII_BATCH = 64      # documents per batch sent to a PII worker
_TEXT_KINDS = frozenset({"text", "code"})  # kinds whose recipes read Document.text


@dataclass(frozen=True)
class CurationOutcome:
    version: WrittenVersion
    report: dict[str, object]


def _strings(value: object, key: str = "") -> Iterator[str]:
    """Every redactable string inside a document's fields, in a stable order."""
    if isinstance(value, str):
        if key not in _NOT_REDACTED:
            yield value
    elif isinstance(value, Mapping):
        for k in sorted(value):
            yield from _strings(value[k], str(k))
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item, key)


def _replace_strings(value: object, replacements: Iterator[str], key: str = "") -> object:
    if isinstance(value, str):
        return next(replacements) if key not in _NOT_REDACTED else value
    if isinstance(value, Mapping):
        return {k: _replace_strings(value[k], replacements, str(k)) for k in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_replace_strings(item, replacements, key) for item in value]
    return value


_LONE_SURROGATE = ("the record holds a \\uD800-\\uDFFF escape that is half of a character (a UTF-16 surrogate "
                   "without its pair), which no later stage can encode; fix the exporter or remove the record")


def _encodable(text: str, fields: Mapping[str, object]) -> bool:
    """Whether every string of a document is valid Unicode (JSON can carry lone surrogates: ``"\\ud800"``).

    The check is the encoding the shard writer will do: text, then fields (keys included) as JSON.
    """
    try:
        text.encode("utf-8")
        json.dumps(fields, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Curator:
    """One curation job's stages, configured once."""

    def __init__(self, config: CurationConfig, salt: str, pii_workers: int | None = None) -> None:
        """Check the configuration; ``pii_workers`` defaults to ``PRIVTUNE_PII_WORKERS`` or one per core."""
        self.config = config
        self.salt = salt
        pii_config: PiiConfig = config.pii.model_copy(update={"salt": config.pii.salt or salt})
        self.pii = PiiPool(pii_config, pii_workers) if config.redact_pii else None
        self.quality = QualityFilter(config.quality)
        self.deduper = Deduper(config.dedupe)
        self.report = CurationReport()

    def _filter(self, docs: Iterable[Document | Quarantined]) -> Iterator[Document]:
        """Quarantine, quality and dedupe, each drop listed in the report by location and reason."""
        for item in docs:
            if isinstance(item, Quarantined):
                self.report.quarantine(item)
                continue
            self.report.documents += 1
            if not _encodable(item.text, item.fields):
                self.report.quarantine(Quarantined(item.provenance, "bad_encoding", _LONE_SURROGATE))
                continue
            verdict = self.quality.check(item.text)
            if not verdict.keep:
                self.report.drop_for_quality(item.provenance, verdict.reason)
                continue
            doc_id = item.doc_id
            dup = self.deduper.check(doc_id, item.text, prose=item.kind != "code")
            if dup.duplicate:
                self.report.drop_as_duplicate(item.provenance, dup.kind, dup.of)
                continue
            self.report.keep_unique(doc_id, item.provenance)
            yield item

    def _redact(self, docs: Iterable[Document]) -> Iterator[Document]:
        """PII treatment in the worker pool, batch by batch, while this process keeps reading input."""
        assert self.pii is not None
        pending: collections.deque[tuple[list[Document], list[tuple[int, int]]]] = collections.deque()

        def batches() -> Iterator[list[str]]:
            stream = iter(docs)
            while batch := list(itertools.islice(stream, _PII_BATCH)):
                texts: list[str] = []
                spans: list[tuple[int, int]] = []
                for doc in batch:
                    start = len(texts)
                    if doc.kind in _TEXT_KINDS:
                        texts.append(doc.text)
                    texts.extend(_strings(doc.fields))
                    spans.append((start, len(texts)))
                pending.append((batch, spans))
                yield texts

        for results in self.pii.redact_batches(batches()):
            batch_docs, spans = pending.popleft()
            yield from self._apply_batch(batch_docs, spans, results)

    def _apply_batch(self, docs: list[Document], spans: list[tuple[int, int]], results: list[Treated]
                     ) -> Iterator[Document]:
        for doc, (lo, hi) in zip(docs, spans):
            mine = results[lo:hi]
            for r in mine:
                for entity, n in r.found.items():
                    self.report.pii_found[entity] += n
            if any(r.dropped for r in mine):
                self.report.drop_for_pii(doc.provenance)
                continue
            redacted = iter(r.text or "" for r in mine)
            # Structured records are rebuilt from their fields by the recipes, so only the fields
            # are scanned (once); their plain-text rendering is not kept past this point.
            text = next(redacted) if doc.kind in _TEXT_KINDS else ""
            fields = _replace_strings(doc.fields, redacted)
            yield replace(doc, text=text, fields=fields)  # type: ignore[arg-type]

    def _plant_canaries(self, writer: ShardWriter, train_records: int
                        ) -> tuple[dict[str, object], dict[str, bytes], int]:
        """Insert the canary copies into the complete train split, at seeded positions (see canaries.py).

        They go in after dedupe and PII treatment, which must neither merge nor alter them,
        and never into the holdout. Returns the manifest entry, the file to write
        (``canaries.json``) and the number of copies; all empty when canaries are off.
        """
        settings = self.config.canaries
        if not settings.enabled:
            return {}, {}, 0
        planted = make_canaries(settings, self.salt)  # keyed: not derivable from the config on the bus
        copies = planted.training_examples(self.config.output_format)
        writer.insert("train", list(zip(insertion_positions(train_records, len(copies), settings.seed), copies)))
        body = planted.to_json()
        self.report.canaries = {"count": settings.count, "repeats": settings.repeats, "inserted": len(copies),
                                "candidates": settings.candidates}
        entry = {"name": CANARIES_FILE, "sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body),
                 "count": settings.count, "repeats": settings.repeats, "candidates": settings.candidates}
        return {"canaries": entry}, {CANARIES_FILE: body}, len(copies)

    def run(self, storage: TenantStorage, prefix: str, dataset_id: str, source_checksum: str,
            progress: Callable[[int], None] | None = None, *, work_dir: Path) -> CurationOutcome:
        """Curate ``storage.list(prefix)`` into a dataset version; local files go under ``work_dir``.

        ``work_dir`` is the job's private scratch folder (see work_area.py); the shards are
        streamed to ``work_dir/shards/`` and removed before this returns or raises.
        """
        cfg = self.config
        writer = ShardWriter(cfg.shard_size, work_dir / "shards")
        try:
            single = bool(prefix) and not prefix.endswith("/")   # one object's key, not a folder

            def documents() -> Iterator[Document | Quarantined]:
                for obj in list_entries(storage, prefix):
                    if single and obj.key != prefix:
                        continue  # a single-object dataset "a.txt" must not pick up "a.txt.bak" (as ingest's scan)
                    if isinstance(obj, RejectedEntry):  # a symlink or pipe: never opened, but reported
                        yield rejected_object(obj, prefix)
                        continue
                    self.report.objects += 1
                    self.report.bytes += obj.size
                    yield from parse_object(storage, obj.key, config=cfg.parser, root=prefix)
                    if progress:
                        progress(obj.size)

            kept = self._filter(documents())
            for doc in (self._redact(kept) if self.pii else kept):
                made = 0
                for example in build_examples(doc, cfg.recipe, cfg.output_format):
                    made += 1
                    split = "holdout" if is_holdout(example, cfg.holdout_fraction, cfg.seed) else "train"
                    writer.add(split, example)
                    setattr(self.report, split, getattr(self.report, split) + 1)
                    self.report.count_length(len(json.dumps(example, ensure_ascii=False).split()))
                    self.report.examples_by_kind[doc.kind] += 1
                if not made:
                    self.report.no_example_for(doc.provenance, doc.kind, no_example_reason(doc, cfg.recipe))
            extra = general_mix.mix_count(self.report.train, cfg.general_mix_ratio)
            for example in general_mix.general_examples(extra, cfg.output_format, cfg.seed):
                writer.add("train", example)
            self.report.general_mix = extra
            files, extra_files, planted = self._plant_canaries(writer, self.report.train + extra)
            clusters = self.deduper.clusters
            self.report.dedupe_clusters = len(clusters)
            self.report.largest_clusters = sorted((len(v) + 1 for v in clusters.values()), reverse=True)[:10]
            shards = writer.finish()
            counts = {"train": self.report.train + extra + planted, "holdout": self.report.holdout,
                      "general_mix": extra,
                      "documents": self.report.documents,
                      "quarantined": sum(self.report.quarantined_by_code.values())}
            manifest = build_manifest(dataset_id, source_checksum, cfg.canonical_json(), cfg.sha256(), cfg.recipe,
                                      cfg.output_format, shards, counts, files)
            report = self.report.to_dict()
            report_json = json.dumps(report, indent=2, sort_keys=True).encode()
            report_html = render_html(report, f"Curation report: dataset {dataset_id}").encode()
            version = write_version(storage, dataset_id, manifest, shards, report_json, report_html, extra_files)
            return CurationOutcome(version=version, report=report)
        finally:
            writer.cleanup()
