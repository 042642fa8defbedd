"""A seeded corpus with known near-duplicates, shaped like an enterprise mail and document export.

Real corpora cannot leave the tenant and have no labels, so dedupe defaults are chosen on a
synthetic corpus whose truth is known by construction:

* **duplicate clusters** — a base document and copies of it: *exact* copies (identical
  text), and *edited* copies, each made by one edit of :mod:`tests.generators.dedupe_edits`
  (forward/reply prefix, signature, confidentiality footer, typos, sentence swaps,
  case/whitespace, number words) at one strength (light, middle, heavy), or by 2-3 of them
  at once (``mixed``);
* **hard negatives** — families of documents filled into one shared template (form
  letters, ticket boilerplate) with different facts: one run of 10-40% of the words in
  every sentence and the names differ, and in half of the families every number too.
  Each is its own truth cluster;
* **singles** — unrelated documents.

Any document may carry its company's signature and confidentiality notice, the same text
on unrelated documents (``boilerplate_fraction``), so a deduper that does not see past
boilerplate loses precision, not only recall.  Body text is drawn from a synthetic
Zipf-distributed vocabulary with English number phrases mixed in, so no real text is
needed; generation streams (only the shuffled slot plan is held in memory).
:func:`pairwise_scores` compares predicted clusters with the truth over all document
pairs; :func:`scores_by_edit` gives recall and precision per edit.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from typing import Iterable, Iterator, Mapping

from services.curation.dedupe import DedupeConfig, Deduper, normalise_text, shingle_hashes
from tests.generators.dedupe_edits import (DRAFT_EDITS, EDIT_KINDS, STRENGTHS, TEXT_EDITS, Draft, Number, Piece,
                                           footer, greeting_and_closing, random_number, render, signature)

_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "an", "el", "or", "um", "ve", "da", "ki", "su",
              "ber", "ton", "gal", "mar", "ex", "in", "is", "at", "re", "pro", "con", "de", "li", "fa", "zu", "qua")
_VOCABULARY_SIZE = 20_000
_COMPANY_BOILERPLATE = 3      # distinct company signature + notice pairs shared across one corpus
ALL_EDITS = tuple((kind, strength) for kind in EDIT_KINDS for strength in STRENGTHS)


@dataclass(frozen=True)
class PlantedDoc:
    """One generated document; documents sharing ``cluster`` are duplicates by construction.

    ``role`` is ``single``, ``base``, ``exact`` or ``near`` (members of a duplicate cluster),
    or ``template`` (a hard negative).  ``edit`` names what made a ``near`` copy from its
    base (``"typos:middle"``, ``"mixed"``); it is empty otherwise.
    """

    doc_id: str
    text: str
    cluster: str
    role: str
    edit: str = ""


@dataclass(frozen=True)
class PairwiseScores:
    """Pairwise precision and recall of predicted clusters against the truth."""

    precision: float
    recall: float
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int


@dataclass(frozen=True)
class EditScores:
    """How one edit fared: recall over (base, edited copy) pairs, precision over predicted pairs touching a copy."""

    edit: str
    pairs: int
    found: int
    predicted_pairs: int
    correct_pairs: int

    @property
    def recall(self) -> float:
        return self.found / self.pairs if self.pairs else 1.0

    @property
    def precision(self) -> float:
        return self.correct_pairs / self.predicted_pairs if self.predicted_pairs else 1.0


@dataclass(frozen=True)
class CorpusShape:
    """How the planted corpus is made up."""

    duplicate_fraction: float = 0.3          # share of documents inside duplicate clusters
    template_fraction: float = 0.2           # share of documents that are hard negatives
    cluster_size: tuple[int, int] = (2, 5)   # base + copies, inclusive bounds
    exact_member_fraction: float = 0.1       # copies that are byte-identical
    mixed_fraction: float = 0.15             # edited copies made by 2-3 edits at once (light or middle)
    edits: tuple[tuple[str, str], ...] = ALL_EDITS   # (kind, strength) drawn for the other edited copies
    email_fraction: float = 0.6              # documents written as e-mails (greeting and own closing)
    boilerplate_fraction: float = 0.25       # documents carrying their company's signature and notice
    fill_fraction: tuple[float, float] = (0.1, 0.4)   # share of words that differ within a template family
    words: tuple[int, int] = (50, 250)       # body length in words, inclusive bounds


def generate_corpus(n_docs: int, seed: int = 0, shape: CorpusShape = CorpusShape()) -> Iterator[PlantedDoc]:
    """Yield ``n_docs`` planted documents in a seeded, shuffled order.

    The same ``(n_docs, seed, shape)`` always yields the same documents in the same order.
    Cluster members arrive in random order, so an edited copy often comes before its base.
    """
    plan_rng = random.Random(f"plan:{seed}")
    slots = _plan_slots(n_docs, plan_rng, shape)
    plan_rng.shuffle(slots)
    vocabulary = _vocabulary(random.Random(f"vocab:{seed}"))
    weights = _zipf_cumulative_weights(len(vocabulary))
    boilerplate = [_company_boilerplate(random.Random(f"company:{seed}:{i}")) for i in range(_COMPANY_BOILERPLATE)]
    for index, (role, group, member) in enumerate(slots):
        doc_id = f"doc-{index:07d}"
        if role == "template":
            text = _template_member(group, member, seed, vocabulary, weights, shape, boilerplate)
            yield PlantedDoc(doc_id, text, f"t{group}.{member}", role)
            continue
        base_rng = random.Random(f"base:{seed}:{group}")
        draft = _random_draft(base_rng, vocabulary, weights, shape)
        company = boilerplate[base_rng.randrange(len(boilerplate))] if base_rng.random() < shape.boilerplate_fraction \
            else None
        if role in ("single", "base", "exact"):
            text = _with_boilerplate(render(draft), company)
            yield PlantedDoc(doc_id, text, f"s{group}" if role == "single" else f"c{group}", role)
            continue
        rng = random.Random(f"edit:{seed}:{group}:{member}")
        edits = _draw_edits(rng, shape)
        yield PlantedDoc(doc_id, apply_edits(draft, company, edits, rng), f"c{group}", role,
                         "mixed" if len(edits) > 1 else f"{edits[0][0]}:{edits[0][1]}")


def apply_edits(draft: Draft, company: tuple[str, str] | None, edits: list[tuple[str, str]],
                rng: random.Random) -> str:
    """Render ``draft`` with its company boilerplate, applying ``edits`` in the order mail would."""
    for kind, strength in edits:
        if kind in DRAFT_EDITS:
            draft = DRAFT_EDITS[kind](draft, strength, rng)
    text = _with_boilerplate(render(draft), company)
    for kind in TEXT_EDITS:          # signature, footer, forward, then case/whitespace over all of it
        for edit_kind, strength in edits:
            if edit_kind == kind:
                text = TEXT_EDITS[kind](text, strength, rng)
    return text


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


def scores_by_edit(docs: Iterable[PlantedDoc], predicted: Mapping[str, str]) -> dict[str, EditScores]:
    """Per edit label: was each edited copy put with its base, and were its predicted partners right?

    Recall counts (base, copy) pairs.  Precision counts every predicted pair that contains a
    copy with this edit, correct when both share a truth cluster.  ``"negatives"`` scores
    hard negatives and singles the same way (recall is trivially 1.0 there).
    """
    docs = list(docs)
    cluster_of = {doc.doc_id: doc.cluster for doc in docs}
    label = {doc.doc_id: doc.edit or ("negatives" if doc.role in ("template", "single") else "") for doc in docs}
    base = {doc.cluster: doc.doc_id for doc in docs if doc.role == "base"}
    pairs: Counter[str] = Counter()
    found: Counter[str] = Counter()
    for doc in docs:
        if doc.edit and doc.cluster in base:
            pairs[doc.edit] += 1
            found[doc.edit] += predicted[doc.doc_id] == predicted[base[doc.cluster]]
    members: dict[str, list[str]] = defaultdict(list)
    for doc_id, representative in predicted.items():
        members[representative].append(doc_id)
    predicted_pairs: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    for group in members.values():
        for left, right in itertools.combinations(group, 2):
            for name in {label[left], label[right]} - {""}:
                predicted_pairs[name] += 1
                correct[name] += cluster_of[left] == cluster_of[right]
    names = sorted(set(pairs) | set(predicted_pairs) | {"negatives"})
    return {name: EditScores(name, pairs[name], found[name], predicted_pairs[name], correct[name]) for name in names}


def run_deduper(docs: Iterable[PlantedDoc], config: DedupeConfig) -> dict[str, str]:
    """Predicted cluster (kept representative's id) of every document, from a fresh :class:`Deduper`."""
    deduper = Deduper(config)
    return {doc.doc_id: deduper.check(doc.doc_id, doc.text).of or doc.doc_id for doc in docs}


def evaluate(docs: Iterable[PlantedDoc], config: DedupeConfig) -> PairwiseScores:
    """Run a fresh :class:`Deduper` over ``docs`` and score its clusters against the truth."""
    docs = list(docs)
    return pairwise_scores({doc.doc_id: doc.cluster for doc in docs}, run_deduper(docs, config))


def shingle_jaccard(left: str, right: str, config: DedupeConfig = DedupeConfig()) -> float:
    """Exact Jaccard similarity of two texts' shingle sets, as the deduper normalises and shingles them."""
    a, b = (set(shingle_hashes(normalise_text(text), config.shingle_size, config.shingle_unit).tolist())
            for text in (left, right))
    return len(a & b) / len(a | b) if a or b else 1.0


def _pairs(sizes: Iterable[int]) -> int:
    return sum(n * (n - 1) // 2 for n in sizes)


def _draw_edits(rng: random.Random, shape: CorpusShape) -> list[tuple[str, str]]:
    if rng.random() < shape.mixed_fraction:
        kinds = rng.sample(EDIT_KINDS, rng.randint(2, 3))
        return [(kind, rng.choice(("light", "middle"))) for kind in kinds]
    return [rng.choice(shape.edits)]


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


def _random_draft(rng: random.Random, vocabulary: list[str], weights: list[float], shape: CorpusShape) -> Draft:
    """Sentences of 6-18 words; about a third (at least one) carry a number phrase.  E-mails get a greeting and closing."""
    remaining = rng.randint(*shape.words)
    sentences: list[tuple[Piece, ...]] = []
    while remaining > 0:
        length = min(remaining, rng.randint(6, 18))
        words: list[Piece] = list(rng.choices(vocabulary, cum_weights=weights, k=length))
        if rng.random() < 0.35:
            words.insert(rng.randrange(1, len(words) + 1), random_number(rng))
        sentences.append(tuple(words))
        remaining -= length
    if not any(isinstance(piece, Number) for sentence in sentences for piece in sentence):
        at = rng.randrange(len(sentences))                 # every document states at least one number
        sentences[at] = (*sentences[at], random_number(rng))
    greeting, closing = greeting_and_closing(rng) if rng.random() < shape.email_fraction else ("", "")
    return Draft(greeting, tuple(sentences), closing, layout=rng.randrange(2**32))


def _company_boilerplate(rng: random.Random) -> tuple[str, str]:
    """One company's signature block and notice: the same text on every document that carries it."""
    return signature("", "middle", rng).strip(), footer("", "middle", rng).strip()


def _with_boilerplate(text: str, company: tuple[str, str] | None) -> str:
    return text if company is None else f"{text}\n\n{company[0]}\n\n{company[1]}"


def _template_member(group: int, member: int, seed: int, vocabulary: list[str], weights: list[float],
                     shape: CorpusShape, boilerplate: list[tuple[str, str]]) -> str:
    """Fill the family's template with this member's facts (a hard negative).

    Slots are one run of word positions per template sentence (the same for the whole family); each
    member fills them with its own words and its own greeting and closing names, and renders
    with the family's layout, as a form letter does.  In half of the families every number
    differs too; in the other half the numbers are the template's, so only words tell the
    members apart.
    """
    template_rng = random.Random(f"template:{seed}:{group}")
    template = _random_draft(template_rng, vocabulary, weights, shape)
    fill = template_rng.uniform(*shape.fill_fraction)
    slots = [_slot_run(len(sentence), fill, template_rng) for sentence in template.sentences]
    company = boilerplate[template_rng.randrange(len(boilerplate))] \
        if template_rng.random() < shape.boilerplate_fraction else None
    rng = random.Random(f"fill:{seed}:{group}:{member}")
    new_numbers = template_rng.random() < 0.5          # else the facts that differ are words only (names, products)
    sentences = tuple(
        tuple(_fill_slot(piece, rng, vocabulary, weights)
              if (is_slot and not isinstance(piece, Number)) or (new_numbers and isinstance(piece, Number)) else piece
              for piece, is_slot in zip(sentence, sentence_slots))
        for sentence, sentence_slots in zip(template.sentences, slots))
    greeting, closing = greeting_and_closing(rng) if template.greeting else ("", "")
    draft = replace(template, sentences=sentences, greeting=greeting, closing=closing)
    return _with_boilerplate(render(draft), company)


def _slot_run(length: int, fill: float, rng: random.Random) -> list[bool]:
    """One contiguous field per sentence covering about ``fill`` of its words (a form letter's blank)."""
    run = min(length, max(1, round(rng.uniform(0.5, 1.5) * fill * length)))
    start = rng.randrange(length - run + 1)
    return [start <= i < start + run for i in range(length)]


def _fill_slot(piece: Piece, rng: random.Random, vocabulary: list[str], weights: list[float]) -> Piece:
    if isinstance(piece, Number):
        new = random_number(rng)
        return replace(piece, value=new.value if piece.kind == new.kind else piece.value + rng.randint(1, 9))
    return rng.choices(vocabulary, cum_weights=weights)[0]
