"""Exact and near-duplicate detection over a stream of documents.

Duplicates waste training compute, over-weight whatever was copied most, and raise
memorisation (and so extraction) risk for exactly the text that was repeated — in
an enterprise corpus that is usually boilerplate, signatures and forwarded threads.
The :class:`Deduper` sees each document once, in order, and keeps the first
occurrence of every duplicate cluster; later members are flagged with the id of
the kept *representative*.

Two stages, both on a normalised text (:func:`normalise_text`: Unicode, case,
punctuation and whitespace folded, number words as digits, and the boilerplate that
copies of a message gain in mailboxes — forward/reply headers, quote marks,
signatures, confidentiality notices — removed):

* **exact** — a 16-byte BLAKE2b digest of the normalised text, so copies that
  differ only in case, Unicode form, whitespace, punctuation or boilerplate are one
  document.
* **near** — MinHash signatures of character 7-gram shingles (spaces removed),
  candidate retrieval with datasketch's :class:`~datasketch.MinHashLSH`, then
  *verification*: a candidate is a duplicate only if the Jaccard similarity estimated
  from the two signatures is at least ``threshold`` and the two texts share most of
  their numbers (the *facts check*).  The LSH banding is deliberately tuned for recall
  (it lets through pairs well below the threshold) and verification restores
  precision; with datasketch's default weighting a 0.8 index finds only ~40% of pairs
  at exactly J=0.8 and ~69% at J=0.85.

Memory (measured in ``benchmarks/dedupe.py``, see ``docs/curation-filters.md``):
texts are never stored.  Per kept document the deduper holds one exact digest
(~0.1 KB), one 128 x uint32 signature (0.5 KB), a 16 x uint32 sketch of its numbers
(64 bytes) and its LSH entries (~0.34 KB per band; 14 bands at the defaults),
5.5-5.9 KB in all.  Duplicates add only their digest and their id in
:attr:`Deduper.clusters`.  The LSH index is therefore the limit: ~5.5 GB per million
unique documents in one process.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, cast

import numpy as np
import pydantic
from datasketch import LeanMinHash, MinHash, MinHashLSH

from services.curation.boilerplate import strip_boilerplate
from services.curation.number_words import fold_number_words

_SCHEME = "affine32"          # datasketch >= 2.0 default: uint32 values, bijective permutations
_MAX_HASH = np.uint32(0xFFFFFFFF)
_SHINGLE_CHUNK = 4096         # shingles per (chunk x num_perm) product: caps a huge document at 2 MiB
_SIGNATURE_BLOCK = 16384      # signatures per storage block: grows without copying old blocks
_FACTS = 16                   # digit runs kept per document for the facts check (bottom-16 sketch)
_NO_FACT = np.uint32(0xFFFFFFFF)
_DIGIT_RUN = re.compile(r"\d+")
_ROLL = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier for the rolling shingle hash
_LINE_END_HYPHEN = re.compile(r"(?<=\w)-[ \t]*\r?\n[ \t]*(?=\w)")
_PERCENT = re.compile(r"%|\bper cent\b")


class DedupeConfig(pydantic.BaseModel):
    """Dedupe settings; the defaults are chosen on edited copies as enterprise exports hold them.

    Measured with ``benchmarks/dedupe_sweep.py`` on :mod:`tests.generators.dedupe_corpus`
    (forwarded copies, signatures, confidentiality notices, typos, swapped sentences,
    case/whitespace changes, number words, and same-template hard negatives); the sweep
    is published in ``docs/curation-filters.md``.

    ``strip_boilerplate=True``: forward/reply headers, signatures and notices are not the
    document; on a short message they are half its words (see
    :mod:`services.curation.boilerplate`).

    ``shingle_unit="char"``, ``shingle_size=7``: character 7-grams of the text with its
    spaces removed.  A typo or a swapped sentence costs a few 7-grams, where it costs up to
    five word 5-grams per edited word (word 5-grams found 29% of copies with 3% typos and
    25% of those with two swapped sentences at 0.8); a word split or glued differently
    costs nothing.  5-grams make same-template documents with different facts look alike;
    9- and 11-grams lose more swapped sentences at the same precision.

    ``threshold=0.8``: with 7-grams, the lowest threshold at which no same-template hard
    negative was merged on the sweep; every middle-strength edit kind keeps recall >= 0.98.

    ``min_fact_overlap=0.75``: a near duplicate must also share at least 3/4 of the
    number occurrences (digit runs: amounts, dates, ids, account and tier numbers) of the
    text that states fewer of them (:func:`fact_sketch`).  The edits that make copies never change
    numbers, while form letters and templated records differ exactly there: twenty
    support records that differ only in "tier 3"/"tier 4" and an e-mail address are at
    J=0.78-0.79 on character 7-grams, tickets that differ only in a card number and a
    phone extension at J=0.81-0.84, and without the check half of them are merged.  A text without numbers passes; 0 turns the check off.
    A copy that changes one of few numbers is therefore kept (see the docs).

    ``false_negative_weight=0.9``: handed to datasketch's band optimiser as
    ``weights=(0.1, 0.9)``; at threshold 0.8 and 128 permutations it picks 14 bands of
    9 rows, which retrieves 87% of pairs at J=0.8 and 97.5% at J=0.85.  The
    optimiser's balanced default (9 x 13) misses 31% of pairs at J=0.85.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    exact: bool = True                    # flag copies whose normalised text is identical
    near: bool = True                     # flag copies whose shingle Jaccard is >= threshold
    strip_boilerplate: bool = True        # drop forward/reply headers, signatures and notices before comparing
    shingle_unit: Literal["char", "word"] = "char"           # what a shingle is made of
    shingle_size: int = pydantic.Field(7, ge=1, le=32)      # units (characters or words) per shingle
    num_perm: int = pydantic.Field(128, ge=16, le=1024)     # MinHash permutations; estimate std ~ sqrt(J(1-J)/num_perm)
    threshold: float = pydantic.Field(0.8, gt=0.0, le=1.0)  # estimated Jaccard needed to call a near duplicate
    false_negative_weight: float = pydantic.Field(0.9, ge=0.0, le=1.0)  # LSH banding bias toward recall
    min_fact_overlap: float = pydantic.Field(0.75, ge=0.0, le=1.0)  # share of the numbers two near copies must share
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


def normalise_text(text: str, boilerplate: bool = True) -> str:
    """Canonical form used for both exact digests and shingles.

    Steps, in order: Unicode NFKC (full-width, ligatures and compatibility forms fold
    to their plain equivalents); :func:`~services.curation.boilerplate.strip_boilerplate`
    (forward/reply headers, quote markers, signatures, confidentiality notices: what
    copies of one message gain on their way through mailboxes); re-join words hyphenated
    at a line end (``docu-\\nment``, as PDF and mail exports wrap them); ``casefold``
    (case-insensitive, including ß -> ss); ``%`` and ``per cent`` -> ``percent``; delete
    Unicode punctuation (category P*: ``don't`` -> ``dont``, ``e-mail`` -> ``email``;
    symbols, category S*, such as ``$`` ``+`` ``=`` are kept because they carry meaning);
    collapse every run of whitespace to one ASCII space; and fold number words to digits
    (:func:`~services.curation.number_words.fold_number_words`: ``second`` -> ``2nd``,
    ``twenty-five`` -> ``25``).  Deleting punctuation rather than replacing it with a
    space glues ``end.Start`` into one word; character shingles ignore spaces, so that
    costs nothing there, while replacing would split ``don't`` in two.
    """
    text = unicodedata.normalize("NFKC", text)
    if boilerplate:
        text = strip_boilerplate(text)
    text = _LINE_END_HYPHEN.sub("", text).casefold()
    if "%" in text or "per cent" in text:
        text = _PERCENT.sub(" percent ", text)
    return " ".join(fold_number_words(text.translate(_punctuation_table()).split()))


def exact_digest(normalised: str) -> bytes:
    """16-byte BLAKE2b digest of a normalised text: collision odds ~2^-64 at 2^32 documents."""
    return hashlib.blake2b(normalised.encode("utf-8"), digest_size=16).digest()


def fact_sketch(normalised: str) -> np.ndarray:
    """Bottom-16 sketch of the *multiset* of digit runs of a text: sorted CRC-32s, at most 16.

    Digit runs of the text with its spaces removed (as the character shingles see it), so
    ``2022.Then``/``2022. Then`` and ``1 200``/``1,200`` state the same fact; number
    words were already folded to digits by :func:`normalise_text`.  Each
    occurrence is its own element (``1#0``, ``1#1``, ...), so "tier 1 ... 1st" is not a
    subset of "tier 2 ... 1st".
    """
    runs = _DIGIT_RUN.findall(normalised.replace(" ", ""))
    if not runs:
        return np.empty(0, dtype=np.uint32)
    seen: dict[str, int] = {}
    elements = []
    for run in runs:
        occurrence = seen.get(run, 0)
        seen[run] = occurrence + 1
        elements.append(zlib.crc32(f"{run}#{occurrence}".encode()) & 0x7FFFFFFF)
    return np.unique(np.array(elements, dtype=np.uint32))[:_FACTS]


_MAX_UNSHARED_FACTS = 1   # numbers one side states and the other does not, beyond which texts differ in fact


def facts_overlap(left: np.ndarray, right: np.ndarray) -> float:
    """Share of the smaller fact sketch found in the other; 1.0 when either text states no number, and
    0.0 when either states more than one number the other does not.

    A full sketch (16 elements) holds only the 16 smallest hashes, so both are compared
    below the smaller of their largest hashes, where each is complete.
    """
    if len(left) == 0 or len(right) == 0:
        return 1.0
    limit = min(left[-1] if len(left) == _FACTS else _NO_FACT, right[-1] if len(right) == _FACTS else _NO_FACT)
    left, right = left[left <= limit], right[right <= limit]
    smaller = min(len(left), len(right))
    if not smaller:
        return 1.0
    shared = len(np.intersect1d(left, right, assume_unique=True))
    if max(len(left), len(right)) - shared > _MAX_UNSHARED_FACTS:
        return 0.0   # a form letter: many fixed numbers shared, yet the account, fee and balance differ
    return shared / smaller


def shingle_hashes(normalised: str, size: int, unit: str = "word") -> np.ndarray:
    """32-bit hashes of the ``size``-grams of a normalised text, of words or of characters.

    ``unit="word"``: each word is hashed once with CRC-32 (C speed; any fixed hash works
    because datasketch pre-mixes inputs with the MurmurHash3 finalizer).
    ``unit="char"``: the code points of the text *with its spaces removed*, so a word
    split or glued differently (``e mail``/``email``, ``end. Start``) is the same text.
    Either way the n-grams are combined with a polynomial rolling hash in numpy and
    folded to 32 bits.  A text with fewer than ``size`` units is one shingle; an empty
    text has none.
    """
    if unit == "char":
        units = np.frombuffer(normalised.replace(" ", "").encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    else:
        words = normalised.encode("utf-8").split()
        units = np.fromiter(map(zlib.crc32, words), dtype=np.uint64, count=len(words))
    if len(units) == 0:
        return np.empty(0, dtype=np.uint32)
    width = min(size, len(units))
    count = len(units) - width + 1
    combined = np.zeros(count, dtype=np.uint64)
    for offset in range(width):
        combined = combined * _ROLL + units[offset:offset + count]
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
    """Append-only fixed-width uint32 rows in fixed-size numpy blocks (no per-object overhead)."""

    def __init__(self, num_perm: int) -> None:
        self._num_perm = num_perm      # row width
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
        self._facts = _SignatureStore(_FACTS)   # fact sketch per row, padded with 0xFFFFFFFF
        self._representatives: list[str] = []    # LSH key (row) -> representative id
        self._clusters: dict[str, list[str]] = {}
        self._documents = 0
        self._exact_count = 0
        self._near_count = 0

    def check(self, doc_id: str, text: str, prose: bool = True) -> DedupeVerdict:
        """Classify ``text`` against everything seen so far, then remember it.

        ``prose=False`` (source code) keeps every line: ``-- `` opens a comment there, not a signature.
        """
        self._documents += 1
        normalised = normalise_text(text, self.config.strip_boilerplate and prose)
        if not normalised:
            return UNIQUE   # nothing comparable (only symbols or whitespace): never a copy of another such text
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
        hashes = shingle_hashes(normalised, self.config.shingle_size, self.config.shingle_unit)
        if len(hashes) == 0:
            return UNIQUE
        signature = self._hasher.signature(hashes)
        lean = self._hasher.lean(signature)
        facts = fact_sketch(normalised) if self.config.min_fact_overlap > 0 else np.empty(0, dtype=np.uint32)
        best_row, best_similarity = -1, -1.0
        for row in cast("list[int]", self._lsh.query(lean)):
            similarity = float(np.count_nonzero(self._signatures.get(row) == signature)) / len(signature)
            if similarity < self.config.threshold or not self._same_facts(row, facts):
                continue
            if similarity > best_similarity or (similarity == best_similarity and row < best_row):
                best_row, best_similarity = row, similarity
        if best_row >= 0:
            return DedupeVerdict(duplicate=True, kind="near", of=self._representatives[best_row])
        row = self._signatures.append(signature)
        padded = np.full(_FACTS, _NO_FACT, dtype=np.uint32)
        padded[:len(facts)] = facts
        self._facts.append(padded)
        self._representatives.append(doc_id)
        self._lsh.insert(row, lean, check_duplication=False)
        return UNIQUE

    def _same_facts(self, row: int, facts: np.ndarray) -> bool:
        if self.config.min_fact_overlap == 0:
            return True
        stored = self._facts.get(row)
        return facts_overlap(stored[stored != _NO_FACT], facts) >= self.config.min_fact_overlap

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

