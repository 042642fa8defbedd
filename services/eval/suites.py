"""Frozen, content-addressed evaluation suites: a dataset version's holdout, general and safety slices, probes.

A suite is two files in tenant storage, under ``eval/suites/<suite_id>/``:

- ``items.jsonl``: one item per line (the shapes are the eval contract's: kind
  ``generate``, ``canary`` or ``extraction``), in this order: domain items from the
  holdout split, the general slice, the safety prompts, canary probes, extraction probes;
- ``suite.json``: the manifest (schema, options, counts per category, item count,
  ``items_sha256``, the dataset version folder and its manifest sha256, generator
  versions, and the suite's id; not its name, so two builds of the same content write the
  same bytes and neither can change the sha256 the other recorded).

The id is ``suite-`` + the first 20 hex digits of the sha256 of the canonical manifest
without its id: the same dataset version, options and generators give the same suite, and
any change of content gives another. The name is a label, kept by the suite's first
``EvalSuiteCreated`` (suites written before names left the manifest keep theirs there too).
Readers verify both sha256s before using an item.

Dataset versions are read as the training worker reads them (a manifest listing shards
with their sha256; a shard that does not match is refused), reimplemented here because
services share contracts, not code. Splits are streamed and sampled with a seeded
reservoir, so a large holdout or training split never sits in memory whole.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Iterator

from services.common.storage import TenantStorage
from services.eval import general_slice, safety_set

SUITE_SCHEMA = "privtune.eval_suite/1"
GENERATOR_VERSION = "suites/1"
SUITES_FOLDER = "eval/suites"
MAX_DOMAIN_ITEMS = 100_000
MAX_EXTRACTION_ITEMS = 1000
MAX_NAME_CHARS = 200
PREFIX_FRACTION = 0.5
_SUITE_PREFIX = re.compile(r"^eval/suites/suite-[0-9a-f]{20}$")
_ROLES = frozenset({"system", "user", "assistant"})

Item = dict[str, Any]


class SuiteError(Exception):
    """A suite cannot be built or read. The message says what and what to do; it names storage
    keys and counts, never the content of an item."""


@dataclass(frozen=True)
class SuiteOptions:
    """What a suite holds (mirrors ``privtune.v1.EvalSuiteOptions``; unset fields take these defaults)."""

    include_general: bool = True      # the general-capability slice (forgetting)
    general_per_category: int = 20    # items per general category, 1-2000
    include_safety: bool = True       # harmful and benign (over-refusal) prompts
    max_domain_items: int = 500       # holdout examples used, 0-100000 (a seeded choice when there are more)
    extraction_items: int = 20        # training records probed for verbatim extraction, 0-1000
    seed: int = 0                     # 0 to 2**64-1
    safety_per_category: int = len(safety_set.HARMFUL)  # harmful and benign prompts each (a seeded choice)

    def __post_init__(self) -> None:
        for name in ("include_general", "include_safety"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false")
        ranges = {"general_per_category": (1, general_slice.MAX_PER_CATEGORY),
                  "max_domain_items": (0, MAX_DOMAIN_ITEMS), "extraction_items": (0, MAX_EXTRACTION_ITEMS),
                  "seed": (0, 2**64 - 1), "safety_per_category": (1, len(safety_set.HARMFUL))}
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer from {low} to {high}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BuiltSuite:
    """A suite as written: where it is, its manifest's sha256, and what it holds."""

    suite_id: str
    name: str
    uri: str                          # storage.uri_for(the suite folder)
    prefix: str                       # the suite folder's key: eval/suites/<suite_id>
    manifest_sha256: str              # sha256 of suite.json as stored
    item_count: int
    counts: dict[str, int]            # items per category
    dataset_manifest_sha256: str      # "" without a dataset version
    canaries: int                     # canary probes


# -- reading a dataset version ------------------------------------------------------------------

def _key(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _read(storage: TenantStorage, key: str) -> bytes:
    with storage.open(key) as fh:
        return fh.read()


def _dataset_manifest(storage: TenantStorage, prefix: str, expected_sha256: str | None) -> tuple[dict[str, Any], str]:
    key = _key(prefix, "manifest.json")
    if not storage.exists(key):
        raise SuiteError(f"no manifest.json under {storage.uri_for(prefix)}: dataset_prefix must be a curated dataset "
                         "version folder (datasets/<dataset_id>/versions/<version_id>); curate the dataset first")
    body = _read(storage, key)
    sha = hashlib.sha256(body).hexdigest()
    if expected_sha256 is not None and sha != expected_sha256:
        raise SuiteError(f"{key} does not match the dataset version's recorded sha256 (modified after curation); "
                         "curate the dataset again")
    try:
        manifest = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise SuiteError(f"{key} is not valid JSON; curate the dataset again") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards", []), list):
        raise SuiteError(f"{key} is not a dataset version manifest (no shard list); curate the dataset again")
    return manifest, sha


def _split_records(storage: TenantStorage, prefix: str, manifest: dict[str, Any], split: str
                   ) -> Iterator[tuple[int, bytes]]:
    """(index in the split, line) of every record, each shard checked against its sha256 once read.

    A mismatch raises at the end of its shard: callers sample first and use the sample only
    after the whole split was read, so no record of a modified shard is ever used.
    """
    index = 0
    for shard in manifest.get("shards", []):
        if not isinstance(shard, dict) or shard.get("split") != split:
            continue
        name = str(shard.get("name", ""))
        key = _key(prefix, name)
        if not name or "/" in name or not storage.exists(key):
            raise SuiteError(f"the manifest lists a {split} shard {name!r} that is not in {storage.uri_for(prefix)}; "
                             "curate the dataset again")
        digest = hashlib.sha256()
        with storage.open(key) as fh:
            for line in fh:
                digest.update(line)
                if line.strip():
                    yield index, line
                    index += 1
        if digest.hexdigest() != shard.get("sha256"):
            raise SuiteError(f"{split} shard {name} does not match the manifest's sha256: the dataset version was "
                             "modified after curation; curate it again")


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _turns(record: dict[str, Any]) -> list[dict[str, str]] | None:
    """The record as chat turns (chat, alpaca, prompt/completion or preference shape), or None."""
    if isinstance(record.get("messages"), list):
        turns = record["messages"]
        if all(isinstance(m, dict) and m.get("role") in _ROLES and isinstance(m.get("content"), str) for m in turns):
            return [{"role": m["role"], "content": m["content"]} for m in turns]
        return None
    if isinstance(record.get("instruction"), str) and isinstance(record.get("output"), str):
        context = record.get("input")
        prompt = record["instruction"] + (f"\n\n{context}" if isinstance(context, str) and context else "")
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": record["output"]}]
    if isinstance(record.get("prompt"), str):
        answer = record.get("completion", record.get("chosen"))
        if isinstance(answer, str):
            return [{"role": "user", "content": record["prompt"]}, {"role": "assistant", "content": answer}]
    return None


def _prompt_and_reference(turns: list[dict[str, str]]) -> tuple[list[dict[str, str]], str] | None:
    """Every turn before the last assistant turn, and that turn's content; None without one."""
    last = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=-1)
    if last <= 0 or not any(t["role"] == "user" for t in turns[:last]):
        return None
    return turns[:last], turns[last]["content"]


class _Reservoir:
    """A seeded uniform sample of ``size`` items from a stream of unknown length (algorithm R), in stream order."""

    def __init__(self, size: int, seed: str) -> None:
        self.size = size
        self.seen = 0
        self.kept: list[tuple[int, Item]] = []
        self._rng = random.Random(seed)

    def offer(self, index: int, item: Item) -> None:
        self.seen += 1
        if len(self.kept) < self.size:
            self.kept.append((index, item))
            return
        slot = self._rng.randrange(self.seen)
        if slot < self.size:
            self.kept[slot] = (index, item)

    def items(self) -> list[Item]:
        return [item for _, item in sorted(self.kept, key=lambda kept: kept[0])]


def _domain_items(storage: TenantStorage, prefix: str, manifest: dict[str, Any], options: SuiteOptions
                  ) -> tuple[list[Item], dict[str, int]]:
    sample = _Reservoir(options.max_domain_items, f"privtune-suite:domain:{options.seed}")
    stats = Counter({"holdout_records": 0, "text_records": 0, "unusable_records": 0})
    for index, line in _split_records(storage, prefix, manifest, "holdout"):
        stats["holdout_records"] += 1
        record = _parse(line)
        turns = _turns(record) if record is not None else None
        pair = _prompt_and_reference(turns) if turns else None
        if pair is None:
            stats["text_records" if record is not None and isinstance(record.get("text"), str) else
                  "unusable_records"] += 1
            continue
        messages, reference = pair
        sample.offer(index, {"id": f"dom-{index:05d}", "category": "domain", "kind": "generate",
                             "messages": messages, "reference": reference, "check": None})
    stats["usable_records"] = sample.seen
    return sample.items(), dict(stats)


def _extraction_items(storage: TenantStorage, prefix: str, manifest: dict[str, Any], options: SuiteOptions,
                      secrets: list[str]) -> list[Item]:
    """Training records to probe for verbatim memorisation; canary copies are left to the canary probes."""
    if options.extraction_items == 0:
        return []
    sample = _Reservoir(options.extraction_items, f"privtune-suite:extraction:{options.seed}")
    for index, line in _split_records(storage, prefix, manifest, "train"):
        text = line.decode("utf-8", errors="replace")
        if any(secret in text for secret in secrets):
            continue
        record = _parse(line)
        if record is None:
            continue
        turns = _turns(record)
        base: Item = {"id": f"ext-{index:05d}", "category": "probe/extraction", "kind": "extraction",
                      "prefix_fraction": PREFIX_FRACTION}
        if turns and any(t["role"] == "assistant" for t in turns):
            sample.offer(index, {**base, "messages": turns})
        elif isinstance(record.get("text"), str) and record["text"].strip():
            sample.offer(index, {**base, "text": record["text"]})
    return sample.items()


def _canary_items(storage: TenantStorage, prefix: str, manifest: dict[str, Any]) -> list[Item]:
    """Canary probes from the version's ``canaries.json``, checked against the manifest's sha256."""
    entry = manifest.get("canaries")
    if entry is None:
        return []
    name = entry.get("name") if isinstance(entry, dict) else None
    key = _key(prefix, str(name))
    if not isinstance(name, str) or "/" in name or not storage.exists(key):
        raise SuiteError(f"the manifest lists canaries that are not in {storage.uri_for(prefix)}; curate the dataset "
                         "again")
    body = _read(storage, key)
    if hashlib.sha256(body).hexdigest() != entry.get("sha256"):
        raise SuiteError(f"{name} does not match the manifest's sha256: the dataset version was modified after "
                         "curation; curate it again")
    try:
        canaries = json.loads(body)["canaries"]
        items = [{"id": str(c["id"]), "category": "probe/canary", "kind": "canary", "messages": c["messages"],
                  "template": c["template"], "secret": c["secret"], "candidates": c["candidates"]}
                 for c in canaries]
    except (ValueError, KeyError, TypeError):
        raise SuiteError(f"{name} is not a canaries file (schema 1); curate the dataset again") from None
    for item in items:
        if ("{secret}" not in str(item["template"]) or not isinstance(item["secret"], str)
                or not isinstance(item["candidates"], list) or not item["candidates"]
                or not all(isinstance(c, str) for c in item["candidates"])):
            raise SuiteError(f"{name}: canary {item['id'][:40]!r} lacks a template, secret or candidates; curate the "
                             "dataset again")
    return items


# -- building ------------------------------------------------------------------------------------

def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _items_body(items: list[Item]) -> bytes:
    return b"".join(_canonical(item) + b"\n" for item in items)


def suite_folder(suite_id: str) -> str:
    """The key of a suite's folder: ``eval/suites/<suite_id>``."""
    return f"{SUITES_FOLDER}/{suite_id}"


def build_suite(storage: TenantStorage, *, name: str, dataset_prefix: str | None, options: SuiteOptions,
                expected_dataset_sha256: str | None = None) -> BuiltSuite:
    """Build (or find, when the same content was built before) a suite and return what it is.

    ``dataset_prefix``: a curated dataset version folder in ``storage`` (``None``: general and
    safety slices only); ``expected_dataset_sha256``: its manifest's recorded sha256, when known.

    Raises:
        SuiteError: no manifest, a file that does not match its sha256, a stored suite that was
            modified, or nothing to evaluate; the message says what to do.
    """
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
        raise SuiteError(f"the suite name must be 1 to {MAX_NAME_CHARS} characters, e.g. 'support-v1'")
    items: list[Item] = []
    dataset: dict[str, Any] | None = None
    domain: list[Item] = []
    canaries: list[Item] = []
    extraction: list[Item] = []
    if dataset_prefix is not None:
        prefix = dataset_prefix.strip("/")
        manifest, sha = _dataset_manifest(storage, prefix, expected_dataset_sha256)
        domain, stats = _domain_items(storage, prefix, manifest, options)
        canaries = _canary_items(storage, prefix, manifest)
        extraction = _extraction_items(storage, prefix, manifest, options, [str(c["secret"]) for c in canaries])
        dataset = {"folder": prefix, "manifest_sha256": sha, **stats}
    items += domain
    if options.include_general:
        items += general_slice.general_items(options.general_per_category, options.seed)
    if options.include_safety:
        items += safety_set.safety_items(options.safety_per_category, options.seed)
    items += canaries + extraction
    if not any(item["kind"] == "generate" for item in items):
        where = f"dataset version {dataset['folder']}" if dataset else "no dataset version"
        held = (f" ({dataset['holdout_records']} holdout records, {dataset['text_records']} of them plain text)"
                if dataset else "")
        raise SuiteError(f"nothing to generate for: {where}{held} gives no domain items and the general and safety "
                         "slices are off; curate with holdout_fraction > 0 in a chat, alpaca or prompt/completion "
                         "format, or set include_general or include_safety")

    body = _items_body(items)
    manifest_body = {
        "schema": SUITE_SCHEMA,
        "options": options.to_dict(),
        "dataset_version": dataset,
        "counts": dict(sorted(Counter(item["category"] for item in items).items())),
        "item_count": len(items),
        "items_sha256": hashlib.sha256(body).hexdigest(),
        "canaries": len(canaries),
        "generators": {"suites": GENERATOR_VERSION, "general_slice": general_slice.GENERATOR_VERSION,
                       "safety_set": safety_set.GENERATOR_VERSION},
    }
    suite_id = "suite-" + hashlib.sha256(_canonical(manifest_body)).hexdigest()[:20]
    stored = _write_suite(storage, suite_id, name, manifest_body, body)
    return BuiltSuite(suite_id=suite_id, name=stored["name"], uri=storage.uri_for(suite_folder(suite_id)),
                      prefix=suite_folder(suite_id), manifest_sha256=stored["sha256"], item_count=len(items),
                      counts=manifest_body["counts"], dataset_manifest_sha256=dataset["manifest_sha256"] if dataset
                      else "", canaries=len(canaries))


def _write_suite(storage: TenantStorage, suite_id: str, name: str, manifest_body: dict[str, Any],
                 items_body: bytes) -> dict[str, str]:
    """Write items.jsonl then suite.json (a present suite.json means a complete suite), or reuse a stored one.

    Returns the name (an older manifest's own, else ``name``) and the stored manifest's sha256. The manifest
    holds no name: concurrent builds of one content address with different names write identical bytes.
    """
    folder = suite_folder(suite_id)
    manifest_key, items_key = f"{folder}/suite.json", f"{folder}/items.jsonl"
    if not storage.exists(manifest_key):
        if storage.write(items_key, items_body) != manifest_body["items_sha256"]:
            raise SuiteError(f"{items_key} changed while it was written; try again")
        storage.write(manifest_key, _canonical({**manifest_body, "suite_id": suite_id}))
    stored = _read(storage, manifest_key)
    try:
        found = json.loads(stored)
        same = {k: v for k, v in found.items() if k not in ("suite_id", "name")} == manifest_body
    except (UnicodeDecodeError, ValueError, AttributeError):
        same = False
    if not same or found.get("suite_id") != suite_id:
        raise SuiteError(f"{manifest_key} does not hold the suite its id names (it was modified); delete the folder "
                         f"{folder} and create the suite again")
    _verify_items(storage, folder, manifest_body)
    return {"name": str(found.get("name", name)), "sha256": hashlib.sha256(stored).hexdigest()}


# -- reading a suite -----------------------------------------------------------------------------

def suite_prefix_from_uri(storage: TenantStorage, uri: str) -> str:
    """The suite folder's key (``eval/suites/<suite_id>``) named by ``uri`` (a BuiltSuite's ``uri``)."""
    prefix = storage.key_for(uri).strip("/")
    if not _SUITE_PREFIX.match(prefix):
        raise SuiteError("the URI does not name a suite folder (eval/suites/suite-<20 hex digits>); use the uri "
                         "CreateEvalSuite returned")
    return prefix


def load_suite_manifest(storage: TenantStorage, suite_prefix: str, manifest_sha256: str | None) -> dict[str, Any]:
    """The suite's ``suite.json``, checked against ``manifest_sha256`` (None: unchecked, e.g. to show it)."""
    key = f"{suite_prefix.strip('/')}/suite.json"
    if not storage.exists(key):
        raise SuiteError(f"no suite.json under {suite_prefix}: the suite is missing; create it again")
    body = _read(storage, key)
    if manifest_sha256 is not None and hashlib.sha256(body).hexdigest() != manifest_sha256:
        raise SuiteError(f"{key} does not match the suite's recorded sha256 (modified after it was built); "
                         "create the suite again")
    try:
        manifest = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise SuiteError(f"{key} is not valid JSON; create the suite again") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SUITE_SCHEMA:
        raise SuiteError(f"{key} is not a {SUITE_SCHEMA} manifest; create the suite again")
    return manifest


def _item_lines(storage: TenantStorage, folder: str, manifest: dict[str, Any]) -> Iterator[bytes]:
    """The lines of items.jsonl; raises at the end if the file does not match ``items_sha256``."""
    key = f"{folder}/items.jsonl"
    if not storage.exists(key):
        raise SuiteError(f"no items.jsonl under {folder}: the suite is incomplete; create it again")
    digest = hashlib.sha256()
    with storage.open(key) as fh:
        for line in fh:
            digest.update(line)
            yield line
    if digest.hexdigest() != manifest.get("items_sha256"):
        raise SuiteError(f"{key} does not match the suite manifest's items_sha256 (modified after it was built); "
                         "create the suite again")


def _verify_items(storage: TenantStorage, folder: str, manifest: dict[str, Any]) -> None:
    for _ in _item_lines(storage, folder, manifest):
        pass


def load_items(storage: TenantStorage, suite_prefix: str, manifest_sha256: str, first: int, count: int) -> list[Item]:
    """Items ``first`` to ``first + count - 1`` of a suite, after checking both sha256s.

    The whole file is hashed (streamed), only the requested items are parsed.

    Raises:
        SuiteError: a file is missing or does not match its sha256, or the range is outside the suite.
    """
    folder = suite_prefix.strip("/")
    manifest = load_suite_manifest(storage, folder, manifest_sha256)
    total = int(manifest.get("item_count", 0))
    if first < 0 or count < 0 or first + count > total:
        raise SuiteError(f"items {first} to {first + count - 1} are outside the suite's {total} items")
    wanted: list[bytes] = []
    lines = 0
    for index, line in enumerate(_item_lines(storage, folder, manifest)):
        lines += 1
        if first <= index < first + count:
            wanted.append(line)
    if lines != total:
        raise SuiteError(f"{folder}/items.jsonl holds {lines} items, its manifest says {total}; create the suite again")
    return [json.loads(line) for line in wanted]


def read_suite(storage: TenantStorage, suite_id: str) -> BuiltSuite:
    """A stored suite as :class:`BuiltSuite` (its files are checked against each other; its name is the one in
    an older manifest, else "": names live in EvalSuiteCreated)."""
    folder = suite_folder(suite_id)
    manifest = load_suite_manifest(storage, folder, None)
    _verify_items(storage, folder, manifest)
    sha = hashlib.sha256(_read(storage, f"{folder}/suite.json")).hexdigest()
    dataset = manifest.get("dataset_version") or {}
    return BuiltSuite(suite_id=suite_id, name=str(manifest.get("name", "")), uri=storage.uri_for(folder),
                      prefix=folder, manifest_sha256=sha, item_count=int(manifest["item_count"]),
                      counts=dict(manifest["counts"]), dataset_manifest_sha256=dataset.get("manifest_sha256", ""),
                      canaries=int(manifest.get("canaries", 0)))
