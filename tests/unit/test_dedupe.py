from __future__ import annotations

import random

import numpy as np
import pytest
from datasketch import MinHash

from services.curation.dedupe import (DedupeConfig, Deduper, DedupeVerdict, MinHasher, exact_digest,
                                      normalise_text, shingle_hashes)
from services.curation.dedupe_eval import (CorpusShape, evaluate, generate_corpus, pairwise_scores,
                                           shingle_jaccard)

pytestmark = pytest.mark.unit

_WORDS = [f"w{i}" for i in range(3000)]


def _text(rng: random.Random, n: int = 120) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def test_normalisation_folds_unicode_case_punctuation_and_whitespace() -> None:
    assert normalise_text("  Ｈｅｌｌｏ,\tWORLD!\n\nDon’t  e-mail STRASSE… ") == "hello world dont email strasse"
    assert normalise_text("Straße") == normalise_text("STRASSE")
    assert normalise_text("price: $5 + tax (50%)") == "price $5 + tax 50"   # symbols (S*) stay, % is Po
    assert exact_digest(normalise_text("A b.")) == exact_digest(normalise_text("a   B"))
    assert len(exact_digest("")) == 16


def test_shingles_are_word_ngrams_and_short_texts_are_one_shingle() -> None:
    assert len(shingle_hashes("a b c d e f g", 5)) == 3
    assert len(shingle_hashes("a b", 5)) == 1
    assert len(shingle_hashes("", 5)) == 0
    assert shingle_hashes("a b c d e", 5)[0] != shingle_hashes("e d c b a", 5)[0]   # order matters


@pytest.mark.parametrize("shingles", [1, 300, 10_000])   # 10K crosses the chunking boundary
def test_signature_is_bit_identical_to_datasketch_update_batch(shingles: int) -> None:
    hashes = np.random.default_rng(shingles).integers(0, 2**32, shingles, dtype=np.uint64).astype(np.uint32)
    reference = MinHash(num_perm=128, seed=7, hashfunc=int)
    reference.update_batch(hashes)
    assert np.array_equal(MinHasher(128, 7).signature(hashes), reference.hashvalues)


def test_exact_duplicates_after_normalisation_point_at_the_first_occurrence() -> None:
    deduper = Deduper(DedupeConfig())
    text = "Quarterly results: revenue grew in all regions, costs were flat."
    assert deduper.check("a", text) == DedupeVerdict(duplicate=False)
    assert deduper.check("b", text.upper().replace(",", "")) == DedupeVerdict(True, "exact", "a")
    assert deduper.check("c", "  " + text.replace(" ", "\n") + " ") == DedupeVerdict(True, "exact", "a")
    assert deduper.clusters == {"a": ["b", "c"]}
    stats = deduper.stats
    assert (stats.documents, stats.unique, stats.exact_duplicates, stats.near_duplicates) == (3, 1, 2, 0)


def test_near_duplicates_are_found_and_distinct_documents_kept() -> None:
    rng = random.Random(3)
    base = _text(rng).split()
    edited = list(base)
    edited.insert(80, "inserted")
    deduper = Deduper(DedupeConfig())
    assert not deduper.check("base", " ".join(base)).duplicate
    assert shingle_jaccard(base, edited) >= 0.9
    assert deduper.check("edit", " ".join(edited)) == DedupeVerdict(True, "near", "base")
    for i in range(50):
        assert not deduper.check(f"other{i}", _text(rng)).duplicate
    assert deduper.clusters == {"base": ["edit"]}


def test_a_duplicate_of_a_duplicate_points_at_the_kept_representative() -> None:
    rng = random.Random(4)
    base = _text(rng).split()
    edited = base[:60] + ["x"] + base[60:]
    deduper = Deduper(DedupeConfig())
    deduper.check("kept", " ".join(base))
    assert deduper.check("near", " ".join(edited)).of == "kept"
    assert deduper.check("copy-of-near", " ".join(edited).upper()) == DedupeVerdict(True, "exact", "kept")


def test_stages_can_be_switched_off() -> None:
    text = _text(random.Random(5))
    near_only = Deduper(DedupeConfig(exact=False))
    near_only.check("a", text)
    assert near_only.check("b", text) == DedupeVerdict(True, "near", "a")
    exact_only = Deduper(DedupeConfig(near=False))
    exact_only.check("a", text)
    assert not exact_only.check("b", text + " one more sentence here").duplicate


def test_empty_texts_are_exact_duplicates_of_each_other_and_never_near_duplicates() -> None:
    deduper = Deduper(DedupeConfig())
    deduper.check("a", "")
    assert deduper.check("b", " ...\n") == DedupeVerdict(True, "exact", "a")
    near_only = Deduper(DedupeConfig(exact=False))
    near_only.check("a", "")
    assert not near_only.check("b", "").duplicate


def test_same_input_gives_same_verdicts() -> None:
    docs = list(generate_corpus(400, seed=11))
    runs = []
    for _ in range(2):
        deduper = Deduper(DedupeConfig())
        runs.append([deduper.check(doc.doc_id, doc.text) for doc in docs])
    assert runs[0] == runs[1]
    assert any(v.kind == "near" for v in runs[0]) and any(v.kind == "exact" for v in runs[0])


def test_generator_is_seeded_and_plants_what_it_says() -> None:
    first = list(generate_corpus(300, seed=2))
    assert first == list(generate_corpus(300, seed=2))
    assert first != list(generate_corpus(300, seed=3))
    bases = {doc.cluster: doc for doc in first if doc.role == "base"}
    shape = CorpusShape()
    near = [doc for doc in first if doc.role == "near" and doc.cluster in bases]
    assert near
    for doc in near:
        similarity = shingle_jaccard(bases[doc.cluster].text.split(), doc.text.split())
        assert shape.similarity[0] <= similarity <= 1.0
    for doc in (d for d in first if d.role == "exact" and d.cluster in bases):
        assert normalise_text(doc.text) == normalise_text(bases[doc.cluster].text)


def test_pairwise_scores_count_pairs_from_the_contingency_table() -> None:
    truth = {"a": "1", "b": "1", "c": "1", "d": "2", "e": "3"}
    predicted = {"a": "a", "b": "a", "c": "c", "d": "a", "e": "e"}
    scores = pairwise_scores(truth, predicted)
    # true pairs ab ac bc; predicted ab ad bd; correct ab
    assert (scores.true_pairs, scores.predicted_pairs, scores.correct_pairs) == (3, 3, 1)
    assert scores.precision == pytest.approx(1 / 3) and scores.recall == pytest.approx(1 / 3)
    assert pairwise_scores({"a": "1"}, {"a": "a"}).precision == 1.0
    with pytest.raises(ValueError, match="only one of them"):
        pairwise_scores({"a": "1"}, {"b": "b"})


def test_default_threshold_has_precision_and_recall_of_at_least_090_on_planted_clusters() -> None:
    scores = evaluate(generate_corpus(2000, seed=0), DedupeConfig())
    assert scores.true_pairs > 500
    assert scores.precision >= 0.9, scores
    assert scores.recall >= 0.9, scores
