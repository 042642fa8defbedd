"""Planted-cluster evaluation for the deduper: a seeded corpus with known duplicates.

Real enterprise corpora cannot leave the tenant and have no labels, so the dedupe
threshold is chosen on a synthetic corpus whose truth is known by construction:

* **duplicate clusters** — a base document plus members that are either *exact*
  copies after normalisation (different casing, punctuation, line breaks) or *near*
  copies: word swaps, substitutions, insertions, deletions and an optional appended
  boilerplate footer, applied one at a time until the 5-gram shingle Jaccard with the
  base would drop below a target drawn from ``similarity`` (default 0.85-0.98, i.e.
  above the 0.8 threshold by more than the MinHash estimate's noise);
* **hard negatives** — families of documents filled into one shared template (the
  way tickets or form letters look alike) with different content, each its own
  truth cluster, with shingle Jaccard to the family's first member kept below
  ``max_negative_similarity``;
* **singles** — unrelated documents.

Everything is drawn from a synthetic Zipf-distributed vocabulary, so no real text is
needed, and generation streams: only the shuffled slot plan (a few ints per document)
is held in memory, which lets the benchmark generate 100K+ documents cheaply.
:func:`pairwise_scores` then compares predicted clusters with the truth over all
document pairs, computed from a contingency table rather than by enumerating pairs.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

from services.curation.dedupe import DedupeConfig, Deduper, normalise_text, shingle_hashes

_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "an", "el", "or", "um", "ve", "da", "ki", "su",
              "ber", "ton", "gal", "mar", "ex", "in", "is", "at", "re", "pro", "con", "de", "li", "fa", "zu", "qua")
_FOOTERS = (
    "Sent from my mobile device please excuse any typos",
    "This message and any attachments are confidential and intended solely for the addressee",
    "Kind regards the customer support team",
    "Please consider the environment before printing this email",
)
_VOCABULARY_SIZE = 20_000


@dataclass(frozen=True)
class PlantedDoc:
    """One generated document; documents sharing ``cluster`` are duplicates by construction.

    ``role`` is ``single``, ``base``, ``exact`` or ``near`` (members of a duplicate
    cluster), or ``template`` (a hard negative).
    """

    doc_id: str
    text: str
    cluster: str
    role: str


@dataclass(frozen=True)
class PairwiseScores:
    """Pairwise precision and recall of predicted clusters against the truth."""

    precision: float
    recall: float
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int


@dataclass(frozen=True)
class CorpusShape:
    """How the planted corpus is made up; the defaults mirror a deduplication-heavy dataset."""

    duplicate_fraction: float = 0.3          # share of documents inside duplicate clusters
    template_fraction: float = 0.2           # share of documents that are hard negatives
    cluster_size: tuple[int, int] = (2, 6)   # base + members, inclusive bounds
    exact_member_fraction: float = 0.25      # members that are exact copies after normalisation
    footer_fraction: float = 0.3             # near members that also get a boilerplate footer
    similarity: tuple[float, float] = (0.85, 0.98)  # target shingle Jaccard of near members to the base
    max_negative_similarity: float = 0.7     # cap on shingle Jaccard within a template family
    words: tuple[int, int] = (50, 250)       # document length in words, inclusive bounds


def generate_corpus(n_docs: int, seed: int = 0, shape: CorpusShape = CorpusShape(),
                    shingle_size: int = 5) -> Iterator[PlantedDoc]:
    """Yield ``n_docs`` planted documents in a seeded, shuffled order.

    The same ``(n_docs, seed, shape, shingle_size)`` always yields the same documents
    in the same order.  Cluster members arrive in random order, so a near member
    often comes before its base, as in a real corpus.
    """
    plan_rng = random.Random(f"plan:{seed}")
    slots = _plan_slots(n_docs, plan_rng, shape)
    plan_rng.shuffle(slots)
    vocabulary = _vocabulary(random.Random(f"vocab:{seed}"))
    weights = _zipf_cumulative_weights(len(vocabulary))
    for index, (role, group, member) in enumerate(slots):
        rng = random.Random(f"doc:{seed}:{group}:{member}")
        if role == "template":
            words = _template_member(group, member, seed, vocabulary, weights, shape, shingle_size)
            cluster = f"t{group}.{member}"
        elif role == "single":
            words = _random_words(random.Random(f"base:{seed}:{group}"), vocabulary, weights, shape)
            cluster = f"s{group}"
        else:
            base = _random_words(random.Random(f"base:{seed}:{group}"), vocabulary, weights, shape)
            words = _near_member(base, rng, vocabulary, weights, shape, shingle_size) if role == "near" else base
            cluster = f"c{group}"
        yield PlantedDoc(doc_id=f"doc-{index:07d}", text=_render(words, rng), cluster=cluster, role=role)


def pairwise_scores(truth: Mapping[str, str], predicted: Mapping[str, str]) -> PairwiseScores:
    """Precision and recall over unordered document pairs.

    A pair is *true* when both documents share a truth cluster and *predicted* when
    they share a predicted cluster; correct pairs are both.  Counted as
    ``sum(n choose 2)`` over the cells of the truth x predicted contingency table, so
    the cost is linear in the number of documents.  With no pairs at all, the score
    is 1.0 (nothing to find, nothing wrongly merged).
    """
    if truth.keys() != predicted.keys():
        raise ValueError("truth and predicted must label the same document ids; "
                         f"{len(truth.keys() ^ predicted.keys())} ids appear in only one of them")
    true_pairs = _pairs(Counter(truth.values()).values())
    predicted_pairs = _pairs(Counter(predicted.values()).values())
    correct = _pairs(Counter((truth[doc], predicted[doc]) for doc in truth).values())
    return PairwiseScores(precision=correct / predicted_pairs if predicted_pairs else 1.0,
                          recall=correct / true_pairs if true_pairs else 1.0,
                          true_pairs=true_pairs, predicted_pairs=predicted_pairs, correct_pairs=correct)


def evaluate(docs: Iterable[PlantedDoc], config: DedupeConfig) -> PairwiseScores:
    """Run a fresh :class:`Deduper` over ``docs`` and score its clusters against the truth."""
    deduper = Deduper(config)
    truth: dict[str, str] = {}
    predicted: dict[str, str] = {}
    for doc in docs:
        verdict = deduper.check(doc.doc_id, doc.text)
        truth[doc.doc_id] = doc.cluster
        predicted[doc.doc_id] = verdict.of or doc.doc_id
    return pairwise_scores(truth, predicted)


def shingle_jaccard(left: list[str], right: list[str], shingle_size: int = 5) -> float:
    """Exact Jaccard similarity of two word lists' shingle sets, as the deduper shingles them."""
    return _jaccard(_shingle_set(left, shingle_size), _shingle_set(right, shingle_size))


def _shingle_set(words: list[str], shingle_size: int) -> set[int]:
    return set(shingle_hashes(normalise_text(" ".join(words)), shingle_size).tolist())


def _jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _pairs(sizes: Iterable[int]) -> int:
    return sum(n * (n - 1) // 2 for n in sizes)


def _plan_slots(n_docs: int, rng: random.Random, shape: CorpusShape) -> list[tuple[str, int, int]]:
    """(role, group, member) per document: cluster and family sizes drawn up front."""
    slots: list[tuple[str, int, int]] = []
    group = 0
    budgets = (("cluster", round(n_docs * shape.duplicate_fraction)),
               ("template", round(n_docs * shape.template_fraction)))
    for kind, budget in budgets:
        while budget >= 2:
            size = min(rng.randint(*shape.cluster_size), budget)
            for member in range(size):
                if kind == "template":
                    role = "template"
                elif member == 0:
                    role = "base"
                else:
                    role = "exact" if rng.random() < shape.exact_member_fraction else "near"
                slots.append((role, group, member))
            budget -= size
            group += 1
    while len(slots) < n_docs:
        slots.append(("single", group, 0))
        group += 1
    return slots[:n_docs]


def _vocabulary(rng: random.Random) -> list[str]:
    """Distinct pseudo-words of 1-4 syllables; order is the Zipf rank."""
    words: dict[str, None] = {}
    while len(words) < _VOCABULARY_SIZE:
        words["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4)))] = None
    return list(words)


def _zipf_cumulative_weights(size: int) -> list[float]:
    total = 0.0
    cumulative = []
    for rank in range(1, size + 1):
        total += 1.0 / rank
        cumulative.append(total)
    return cumulative


def _random_words(rng: random.Random, vocabulary: list[str], weights: list[float], shape: CorpusShape,
                  count: int | None = None) -> list[str]:
    n = rng.randint(*shape.words) if count is None else count
    return rng.choices(vocabulary, cum_weights=weights, k=n)


def _near_member(base: list[str], rng: random.Random, vocabulary: list[str], weights: list[float],
                 shape: CorpusShape, shingle_size: int) -> list[str]:
    """Edit ``base`` one random operation at a time while its Jaccard stays >= a drawn target."""
    target = rng.uniform(*shape.similarity)
    base_shingles = _shingle_set(base, shingle_size)
    words = list(base)
    if rng.random() < shape.footer_fraction:
        footer = words + rng.choice(_FOOTERS).split()
        if _jaccard(base_shingles, _shingle_set(footer, shingle_size)) >= target:
            words = footer
    for _ in range(len(base)):
        candidate = _edit(words, rng, vocabulary, weights)
        if _jaccard(base_shingles, _shingle_set(candidate, shingle_size)) < target:
            break
        words = candidate
    return words


def _edit(words: list[str], rng: random.Random, vocabulary: list[str], weights: list[float]) -> list[str]:
    """One word swap, substitution, insertion or deletion."""
    out = list(words)
    i = rng.randrange(len(out) - 1)
    op = rng.choice(("swap", "substitute", "insert", "delete"))
    if op == "swap":
        out[i], out[i + 1] = out[i + 1], out[i]
    elif op == "substitute":
        out[i] = rng.choices(vocabulary, cum_weights=weights)[0]
    elif op == "insert":
        out.insert(i, rng.choices(vocabulary, cum_weights=weights)[0])
    else:
        del out[i]
    return out


def _template_member(group: int, member: int, seed: int, vocabulary: list[str], weights: list[float],
                     shape: CorpusShape, shingle_size: int) -> list[str]:
    """Fill the family's template with this member's own words (a hard negative).

    The template is a fixed word sequence cut into segments; every member keeps the
    segments and fills the gaps between them with fresh words.  If a member comes out
    too close to the family's first member, its gaps are widened until it does not.
    """
    template_rng = random.Random(f"template:{seed}:{group}")
    template = _random_words(template_rng, vocabulary, weights, shape)
    cuts = sorted(template_rng.sample(range(1, len(template)), 4))
    segments = [template[a:b] for a, b in zip([0, *cuts], [*cuts, len(template)])]
    fill_fraction = template_rng.uniform(0.05, 0.4)
    first = _fill(segments, 0, 0, seed, group, vocabulary, weights, fill_fraction)
    if member == 0:
        return first
    for widen in range(10):
        words = _fill(segments, member, widen, seed, group, vocabulary, weights, fill_fraction * (1.25 ** widen))
        if shingle_jaccard(first, words, shingle_size) < shape.max_negative_similarity:
            return words
    return words


def _fill(segments: list[list[str]], member: int, attempt: int, seed: int, group: int,
          vocabulary: list[str], weights: list[float], fill_fraction: float) -> list[str]:
    rng = random.Random(f"fill:{seed}:{group}:{member}:{attempt}")
    gap = max(1, round(fill_fraction * sum(map(len, segments)) / len(segments)))
    words: list[str] = []
    for segment in segments:
        words += segment + rng.choices(vocabulary, cum_weights=weights, k=gap)
    return words


def _render(words: list[str], rng: random.Random) -> str:
    """Sentences, capitals, commas and paragraphs that normalisation removes again."""
    out: list[str] = []
    position = 0
    sentences = 0
    while position < len(words):
        length = rng.randint(6, 18)
        sentence = words[position:position + length]
        position += length
        sentence[0] = sentence[0].capitalize() if rng.random() < 0.9 else sentence[0].upper()
        if len(sentence) > 6 and rng.random() < 0.4:
            sentence[3] += ","
        sentences += 1
        separator = "\n\n" if sentences % rng.randint(3, 6) == 0 else rng.choice((" ", " ", "  ", "\n"))
        out.append(" ".join(sentence) + rng.choice((".", ".", ".", "!", "?", ";")) + separator)
    return "".join(out).strip()
