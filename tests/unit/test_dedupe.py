from __future__ import annotations

import random

import numpy as np
import pytest
from datasketch import MinHash

from services.curation.dedupe import (DedupeConfig, Deduper, DedupeVerdict, MinHasher, exact_digest,
                                      normalise_text, shingle_hashes)
from tests.generators.dedupe_corpus import (CorpusShape, evaluate, generate_corpus, pairwise_scores,
                                            run_deduper, scores_by_edit, shingle_jaccard)
from tests.generators.dedupe_edits import EDIT_KINDS, STRENGTHS

pytestmark = pytest.mark.unit

_WORDS = [f"w{i}" for i in range(3000)]


def _text(rng: random.Random, n: int = 120) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def test_normalisation_folds_unicode_case_punctuation_and_whitespace() -> None:
    assert normalise_text("  Ｈｅｌｌｏ,\tWORLD!\n\nDon’t  e-mail STRASSE… ") == "hello world dont email strasse"
    assert normalise_text("Straße") == normalise_text("STRASSE")
    assert normalise_text("price: $5 + tax (50%)") == "price $5 + tax 50 percent"   # symbols (S*) stay
    assert normalise_text("the Second quarter, twenty-five per cent") == "the 2nd quarter 25 percent"
    assert normalise_text("a docu-\nment") == "a document"
    assert exact_digest(normalise_text("A b.")) == exact_digest(normalise_text("a   B"))
    assert len(exact_digest("")) == 16


def test_shingles_are_word_ngrams_and_short_texts_are_one_shingle() -> None:
    assert len(shingle_hashes("a b c d e f g", 5)) == 3
    assert len(shingle_hashes("a b", 5)) == 1
    assert len(shingle_hashes("", 5)) == 0
    assert shingle_hashes("a b c d e", 5)[0] != shingle_hashes("e d c b a", 5)[0]   # order matters


def test_character_shingles_ignore_where_the_spaces_are() -> None:
    assert len(shingle_hashes("abc defg", 3, "char")) == 5     # abc bcd cde def efg
    assert np.array_equal(shingle_hashes("e mail end start", 4, "char"), shingle_hashes("email endstart", 4, "char"))
    assert len(shingle_hashes("ab", 9, "char")) == 1
    assert len(shingle_hashes(" ", 9, "char")) == 0


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
    assert shingle_jaccard(" ".join(base), " ".join(edited)) >= 0.9
    assert deduper.check("edit", " ".join(edited)) == DedupeVerdict(True, "near", "base")
    for i in range(50):
        assert not deduper.check(f"other{i}", _text(rng)).duplicate
    assert deduper.clusters == {"base": ["edit"]}


def test_a_forwarded_copy_with_signature_and_notice_is_an_exact_duplicate() -> None:
    body = "Hi Ana,\n\nThe second quarter figures are attached. Revenue grew in all regions.\n\nThanks,\nWei"
    forwarded = ("FYI, see below.\n\n---------- Forwarded message ---------\nFrom: Wei Zhang <w.zhang@example.com>\n"
                 "Date: Mon, Jan 3, 2022 at 9:14 AM\nSubject: Q2\nTo: Ana <ana@example.com>\n\n"
                 + body.replace("second", "2nd")
                 + "\nWei Zhang | Senior Analyst\nT +44 20 7946 0018\n\nThis message is confidential and intended "
                   "solely for the addressee.\n\nSent from my iPhone")
    deduper = Deduper(DedupeConfig())
    deduper.check("original", body)
    assert deduper.check("forwarded", forwarded.replace("FYI, see below.\n\n", "")) == \
        DedupeVerdict(True, "exact", "original")


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


def test_texts_with_nothing_comparable_are_never_duplicates() -> None:
    """Empty or symbol-only texts share the empty normal form; that is no evidence of a copy (the quality
    filter drops them on their own merits)."""
    deduper = Deduper(DedupeConfig())
    deduper.check("a", "")
    assert deduper.check("b", " ...\n") == DedupeVerdict(False, "", "")
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


def test_generator_is_seeded_and_plants_every_edit_kind_and_strength() -> None:
    first = list(generate_corpus(1500, seed=2))
    assert first == list(generate_corpus(1500, seed=2))
    assert first[:50] != list(generate_corpus(1500, seed=3))[:50]
    edits = {doc.edit for doc in first if doc.role == "near"}
    assert edits == {f"{kind}:{strength}" for kind in EDIT_KINDS for strength in STRENGTHS} | {"mixed"}
    bases = {doc.cluster: doc for doc in first if doc.role == "base"}
    for doc in (d for d in first if d.role == "exact" and d.cluster in bases):
        assert doc.text == bases[doc.cluster].text
    for doc in (d for d in first if d.role == "near" and d.cluster in bases):
        assert doc.text != bases[doc.cluster].text, doc.edit


def test_hard_negatives_share_a_template_but_stay_below_the_threshold() -> None:
    families: dict[str, list[str]] = {}
    for doc in generate_corpus(600, seed=4):
        if doc.role == "template":
            families.setdefault(doc.cluster.split(".")[0], []).append(doc.text)
    similarities = [shingle_jaccard(texts[0], other) for texts in families.values() for other in texts[1:]]
    assert len(similarities) > 30
    assert 0.25 < sorted(similarities)[len(similarities) // 2] < DedupeConfig().threshold


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


@pytest.mark.parametrize("kind", EDIT_KINDS)
def test_defaults_find_90_percent_of_middle_strength_copies_at_99_percent_precision(kind: str) -> None:
    shape = CorpusShape(edits=((kind, "middle"),), mixed_fraction=0.0, exact_member_fraction=0.0,
                        duplicate_fraction=0.4)
    scores = evaluate(generate_corpus(300, seed=5, shape=shape), DedupeConfig())
    assert scores.true_pairs > 80
    assert scores.recall >= 0.9, scores
    assert scores.precision >= 0.99, scores


def test_defaults_on_the_full_mix_of_edits_strengths_and_negatives() -> None:
    docs = list(generate_corpus(1200, seed=0))
    predicted = run_deduper(docs, DedupeConfig())
    scores = pairwise_scores({doc.doc_id: doc.cluster for doc in docs}, predicted)
    assert scores.true_pairs > 400
    assert scores.precision >= 0.99 and scores.recall >= 0.9, scores
    by_edit = scores_by_edit(docs, predicted)
    assert by_edit["negatives"].correct_pairs == by_edit["negatives"].predicted_pairs == 0
    assert min(by_edit[f"{kind}:light"].recall for kind in EDIT_KINDS) >= 0.9
