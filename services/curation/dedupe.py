"""Exact and near-duplicate detection over a stream of documents.

Duplicates waste training compute, over-weight whatever was copied most, and raise
memorisation (and so extraction) risk for exactly the text that was repeated — in
an enterprise corpus that is usually boilerplate, signatures and forwarded threads.
The :class:`Deduper` sees each document once, in order, and keeps the first
occurrence of every duplicate cluster; later members are flagged with the id of
the kept *representative*.

Two stages, both on a normalised text (:func:`normalise_text`):

* **exact** — a 16-byte BLAKE2b digest of the normalised text, so copies that
  differ only in case, Unicode form, whitespace or punctuation are one document.
* **near** — MinHash signatures of word 5-gram shingles, candidate retrieval with
  datasketch's :class:`~datasketch.MinHashLSH`, then *verification*: a candidate is
  a duplicate only if the Jaccard similarity estimated from the two signatures is
  at least ``threshold``.  The LSH banding is deliberately tuned for recall (it
  lets through pairs well below the threshold) and verification restores
  precision; with datasketch's default weighting a 0.8 index finds only ~40% of
  pairs at exactly J=0.8 and ~69% at J=0.85.

Memory (measured in ``benchmarks/dedupe.py``, see ``docs/curation-filters.md``):
texts are never stored.  Per kept document the deduper holds one exact digest
(~0.1 KB), one 128 x uint32 signature (0.5 KB) and its LSH entries
(~0.34 KB per band; 14 bands at the defaults), 5.4-5.8 KB in all.  Duplicates
add only their digest and their id in :attr:`Deduper.clusters`.  The LSH index is
therefore the limit: ~5.5 GB per million unique documents in one process.
"""

from __future__ import annotations

import hashlib
import unicodedata
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

import numpy as np
import pydantic
from datasketch import LeanMinHash, MinHash, MinHashLSH

_SCHEME = "affine32"          # datasketch >= 2.0 default: uint32 values, bijective permutations
_MAX_HASH = np.uint32(0xFFFFFFFF)
_SHINGLE_CHUNK = 4096         # shingles per (chunk x num_perm) product: caps a huge document at 2 MiB
_SIGNATURE_BLOCK = 16384      # signatures per storage block: grows without copying old blocks
_ROLL = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier for the rolling shingle hash


class DedupeConfig(pydantic.BaseModel):
    """Dedupe settings; the defaults reach precision and recall >= 0.9 on planted clusters.

    ``shingle_size=5``: word 5-grams are the usual choice for near-duplicate web and
    document text (Broder 1997; Lee et al. 2022, "Deduplicating Training Data Makes
    Language Models Better").  Shorter shingles make unrelated documents on the same
    topic look alike; longer ones make a single edited word cost too much similarity.

    ``threshold=0.8``: a Jaccard similarity of 0.8 on 5-gram shingles is a light edit
    of the same text (a changed name, an added footer), while same-template documents
    with different content ("hard negatives") stay at 0.3-0.7.  On the planted corpus
    of :mod:`services.curation.dedupe_eval` it gives pairwise precision and recall
    above 0.9 (see ``docs/curation-filters.md`` for the measured values).

    ``false_negative_weight=0.9``: handed to datasketch's band optimiser as
    ``weights=(0.1, 0.9)``; at threshold 0.8 and 128 permutations it picks 14 bands of
    9 rows, which retrieves 87% of pairs at J=0.8 and 97.5% at J=0.85.  The
    optimiser's balanced default (9 x 13) misses 31% of pairs at J=0.85.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    exact: bool = True                    # flag copies whose normalised text is identical
    near: bool = True                     # flag copies whose shingle Jaccard is >= threshold
    shingle_size: int = pydantic.Field(5, ge=1, le=32)      # words per shingle
    num_perm: int = pydantic.Field(128, ge=16, le=1024)     # MinHash permutations; estimate std ~ sqrt(J(1-J)/num_perm)
    threshold: float = pydantic.Field(0.8, gt=0.0, le=1.0)  # estimated Jaccard needed to call a near duplicate
    false_negative_weight: float = pydantic.Field(0.9, ge=0.0, le=1.0)  # LSH banding bias toward recall
    seed: int = pydantic.Field(1, ge=0, le=2**32 - 1)  # MinHash permutation seed: same seed, same verdicts


@dataclass(frozen=True)
class DedupeVerdict:
    """What the deduper decided about one document.

    ``kind`` is ``""`` (unique, kept), ``"exact"`` or ``"near"``; ``of`` is the id of
    the kept representative of its cluster (``""`` when the document is unique).
    """

    duplicate: bool
    kind: str = ""
    of: str = ""


@dataclass(frozen=True)
class DedupeStats:
    """Counts for the curation report (never text)."""

    documents: int
    unique: int
    exact_duplicates: int
    near_duplicates: int
    lsh_bands: int
    lsh_rows_per_band: int


UNIQUE = DedupeVerdict(duplicate=False)


@lru_cache(maxsize=1)
def _punctuation_table() -> dict[int, None]:
    """``str.translate`` table deleting every Unicode punctuation (category P*) code point.

    Planes 2 and above hold only ideographs, tags and private use, so scanning the
    first two planes finds every punctuation code point at a tenth of the cost.
    """
    return {cp: None for cp in range(0x20000) if unicodedata.category(chr(cp))[0] == "P"}


def normalise_text(text: str) -> str:
    """Canonical form used for both exact digests and shingles.

    Steps, in order: Unicode NFKC (full-width, ligatures and compatibility forms fold
    to their plain equivalents), ``casefold`` (case-insensitive, including ß -> ss),
    delete Unicode punctuation (category P*: ``don't`` -> ``dont``, ``e-mail`` ->
    ``email``, also ``%`` and ``#``; symbols, category S*, such as ``$`` ``+`` ``=``
    are kept because they carry meaning),
    and collapse every run of whitespace to one ASCII space.  Deleting punctuation
    rather than replacing it with a space glues ``end.Start`` into one word; that
    costs a shingle or two, while replacing would split ``don't`` in two.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(text.translate(_punctuation_table()).split())


def exact_digest(normalised: str) -> bytes:
    """16-byte BLAKE2b digest of a normalised text: collision odds ~2^-64 at 2^32 documents."""
    return hashlib.blake2b(normalised.encode("utf-8"), digest_size=16).digest()


def shingle_hashes(normalised: str, size: int) -> np.ndarray:
    """32-bit hashes of the word ``size``-grams of a normalised text.

    Each word is hashed once with CRC-32 (C speed; any fixed hash works because
    datasketch pre-mixes inputs with the MurmurHash3 finalizer), then the n-grams are
    combined with a polynomial rolling hash in numpy and folded to 32 bits.  A text
    with fewer than ``size`` words is one shingle; an empty text has none.
    """
    words = normalised.encode("utf-8").split()
    if not words:
        return np.empty(0, dtype=np.uint32)
    word_hashes = np.fromiter(map(zlib.crc32, words), dtype=np.uint64, count=len(words))
    width = min(size, len(words))
    count = len(words) - width + 1
    combined = np.zeros(count, dtype=np.uint64)
    for offset in range(width):
        combined = combined * _ROLL + word_hashes[offset:offset + count]
    return ((combined >> np.uint64(32)) ^ combined).astype(np.uint32)


def _fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3 32-bit finalizer, exactly as datasketch's ``affine32`` scheme applies it."""
    values = values ^ (values >> np.uint32(16))
    values = values * np.uint32(0x85EBCA6B)
    values = values ^ (values >> np.uint32(13))
    values = values * np.uint32(0xC2B2AE35)
    return values ^ (values >> np.uint32(16))


class MinHasher:
    """Vectorised MinHash over pre-hashed shingles, bit-identical to datasketch.

    ``signature(h)`` equals ``MinHash(num_perm, seed, hashfunc=int).update_batch(h)``'s
    ``hashvalues`` (the unit tests check this), but skips datasketch's per-element
    Python call and processes shingles in bounded chunks.
    """

    def __init__(self, num_perm: int, seed: int) -> None:
        template = MinHash(num_perm=num_perm, seed=seed, scheme=_SCHEME)
        self.num_perm = num_perm
        self.seed = seed
        self._a = template.permutations[0].astype(np.uint32)
        self._b = template.permutations[1].astype(np.uint32)

    def signature(self, hashes: np.ndarray) -> np.ndarray:
        """``num_perm`` uint32 minima; all ``0xFFFFFFFF`` for an empty set."""
        signature = np.full(self.num_perm, _MAX_HASH, dtype=np.uint32)
        mixed = _fmix32(hashes.astype(np.uint32, copy=False))
        for start in range(0, len(mixed), _SHINGLE_CHUNK):
            column = mixed[start:start + _SHINGLE_CHUNK, None]
            np.minimum(signature, (column * self._a + self._b).min(axis=0), out=signature)
        return signature

    def lean(self, signature: np.ndarray) -> LeanMinHash:
        """Wrap a signature for datasketch's LSH without copying permutations."""
        return LeanMinHash(seed=self.seed, hashvalues=signature, scheme=_SCHEME)


class _SignatureStore:
    """Append-only signatures in fixed-size numpy blocks (no per-object overhead)."""

    def __init__(self, num_perm: int) -> None:
        self._num_perm = num_perm
        self._blocks: list[np.ndarray] = []
        self._size = 0

    def append(self, signature: np.ndarray) -> int:
        block, row = divmod(self._size, _SIGNATURE_BLOCK)
        if block == len(self._blocks):
            self._blocks.append(np.empty((_SIGNATURE_BLOCK, self._num_perm), dtype=np.uint32))
        self._blocks[block][row] = signature
        self._size += 1
        return self._size - 1

    def get(self, index: int) -> np.ndarray:
        block, row = divmod(index, _SIGNATURE_BLOCK)
        return self._blocks[block][row]


class Deduper:
    """Streaming deduper: call :meth:`check` once per document, in corpus order.

    The first document of every cluster is kept; later ones are flagged and point at
    it.  Clusters are stars around the kept representative: a new document is
    compared with representatives only, so a chain of small edits cannot drift from
    one document to an unrelated one, and duplicates cost no LSH memory.  Verdicts
    are deterministic for a given config and input order.
    """

    def __init__(self, config: DedupeConfig) -> None:
        self.config = config
        self._hasher = MinHasher(config.num_perm, config.seed)
        weights = (1.0 - config.false_negative_weight, config.false_negative_weight)
        self._lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm,
                               weights=weights)
        self._exact: dict[bytes, str] = {}       # digest -> representative id
        self._signatures = _SignatureStore(config.num_perm)
        self._representatives: list[str] = []    # LSH key (row) -> representative id
        self._clusters: dict[str, list[str]] = {}
        self._documents = 0
        self._exact_count = 0
        self._near_count = 0

    def check(self, doc_id: str, text: str) -> DedupeVerdict:
        """Classify ``text`` against everything seen so far, then remember it."""
        self._documents += 1
        normalised = normalise_text(text)
        digest = exact_digest(normalised) if self.config.exact else b""
        if digest:
            kept = self._exact.get(digest)
            if kept is not None:
                return self._flag(doc_id, "exact", kept)
        verdict = self._check_near(doc_id, normalised) if self.config.near else UNIQUE
        if digest:
            self._exact[digest] = verdict.of or doc_id
        if verdict.duplicate:
            return self._flag(doc_id, "near", verdict.of)
        return UNIQUE

    def _check_near(self, doc_id: str, normalised: str) -> DedupeVerdict:
        """Find the most similar verified representative; index the text if there is none."""
        hashes = shingle_hashes(normalised, self.config.shingle_size)
        if len(hashes) == 0:
            return UNIQUE
        signature = self._hasher.signature(hashes)
        lean = self._hasher.lean(signature)
        best_row, best_similarity = -1, -1.0
        for row in cast("list[int]", self._lsh.query(lean)):
            similarity = float(np.count_nonzero(self._signatures.get(row) == signature)) / len(signature)
            if similarity > best_similarity or (similarity == best_similarity and row < best_row):
                best_row, best_similarity = row, similarity
        if best_similarity >= self.config.threshold:
            return DedupeVerdict(duplicate=True, kind="near", of=self._representatives[best_row])
        row = self._signatures.append(signature)
        self._representatives.append(doc_id)
        self._lsh.insert(row, lean, check_duplication=False)
        return UNIQUE

    def _flag(self, doc_id: str, kind: str, kept: str) -> DedupeVerdict:
        if kind == "exact":
            self._exact_count += 1
        else:
            self._near_count += 1
        self._clusters.setdefault(kept, []).append(doc_id)
        return DedupeVerdict(duplicate=True, kind=kind, of=kept)

    @property
    def clusters(self) -> dict[str, list[str]]:
        """Representative id -> ids flagged as its duplicates, in arrival order (a copy)."""
        return {kept: list(members) for kept, members in self._clusters.items()}

    @property
    def stats(self) -> DedupeStats:
        duplicates = self._exact_count + self._near_count
        return DedupeStats(documents=self._documents, unique=self._documents - duplicates,
                           exact_duplicates=self._exact_count, near_duplicates=self._near_count,
                           lsh_bands=self._lsh.b, lsh_rows_per_band=self._lsh.r)

