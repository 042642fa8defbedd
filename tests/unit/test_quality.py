from __future__ import annotations

import pydantic
import pytest

from services.curation.quality import (REASONS, QualityConfig, QualityFilter, alpha_word_fraction,
                                       detect_language, duplicate_line_scores, duplicate_ngram_scores, ngram_words,
                                       symbol_to_word_ratio, tokens, toxicity_score)

pytestmark = pytest.mark.unit

CLEAN = """The finance team closed the quarter on time. Revenue grew in every region, led by strong
renewals in the enterprise segment and a steady pipeline of new customers.

Operating costs stayed flat because the infrastructure migration finished early and the support
organisation reduced its backlog. Next quarter we will focus on onboarding, pricing experiments and a
review of vendor contracts, and we will report the results at the board meeting in March."""

GERMAN = ("Das Finanzteam hat das Quartal pünktlich abgeschlossen. Der Umsatz wuchs in jeder Region, angeführt "
          "von starken Verlängerungen im Unternehmenssegment und einer stetigen Pipeline neuer Kunden. Die "
          "Betriebskosten blieben stabil, weil die Migration der Infrastruktur früh abgeschlossen wurde und die "
          "Support-Organisation ihren Rückstand reduzierte.")


@pytest.fixture(scope="module")
def quality() -> QualityFilter:
    return QualityFilter(QualityConfig())


def test_clean_text_is_kept_with_every_score(quality: QualityFilter) -> None:
    verdict = quality.check(CLEAN)
    assert verdict.keep and verdict.reason == "" and verdict.language == "en"
    assert verdict.scores["tokens"] == len(CLEAN.split())
    assert {"symbol_to_word_ratio", "alpha_word_fraction", "duplicate_line_fraction", "top_2gram_char_fraction",
            "duplicate_10gram_char_fraction", "language_confidence", "toxicity"} <= verdict.scores.keys()


@pytest.mark.parametrize(("text", "config", "reason"), [
    ("Too short to learn from.", QualityConfig(), "too_short"),
    (CLEAN, QualityConfig(max_tokens=40), "too_long"),
    (CLEAN + "\n" + "\n".join(f"### Section {i}" for i in range(12)), QualityConfig(), "symbol_ratio"),
    (CLEAN + " ..." * 10, QualityConfig(), "symbol_ratio"),
    (CLEAN + " " + " ".join(["1234", "5678", "-", "99.0"] * 10), QualityConfig(), "alpha_fraction"),
    (CLEAN + "\n" + "\n".join(["Click here to subscribe to our newsletter"] * 6), QualityConfig(),
     "repetition_lines"),
    (CLEAN + " " + " ".join(["buy cheap watches"] * 20), QualityConfig(), "repetition_ngrams"),
    (CLEAN + " Renewals grew in every region led by strong renewals in the enterprise segment and a steady "
     "pipeline. Renewals grew in every region led by strong renewals in the enterprise segment and a steady "
     "pipeline.", QualityConfig(), "repetition_ngrams"),
    (GERMAN, QualityConfig(min_tokens=20), "language"),
    (CLEAN + " You are a fucking idiot and I will kill you.", QualityConfig(), "toxicity"),
])
def test_each_rule_fires_with_its_reason(text: str, config: QualityConfig, reason: str) -> None:
    verdict = QualityFilter(config).check(text)
    assert (verdict.keep, verdict.reason) == (False, reason), verdict.scores
    assert verdict.reason in REASONS


def test_thresholds_are_configurable() -> None:
    lenient = QualityConfig(min_tokens=1, languages=["de", "en"])
    assert QualityFilter(lenient).check(GERMAN).keep
    any_language = QualityFilter(QualityConfig(min_tokens=20, languages=[])).check(GERMAN)
    assert any_language.keep and any_language.language == "" and "language_confidence" not in any_language.scores
    toxic = CLEAN + " This damn report."
    assert QualityFilter(QualityConfig()).check(toxic).keep
    assert QualityFilter(QualityConfig(max_toxicity_score=0.01)).check(toxic).reason == "toxicity"
    with pytest.raises(pydantic.ValidationError, match="n-gram sizes"):
        QualityConfig(max_duplicate_ngram_fraction={1: 0.5})


def test_tokens_are_words_and_cjk_characters() -> None:
    assert tokens("Hello,  world!\n2024") == ["Hello,", "world!", "2024"]
    assert tokens("東京は晴れ ok") == ["東", "京", "は", "晴", "れ", "ok"]


def test_gopher_scores_on_hand_computed_inputs() -> None:
    assert symbol_to_word_ratio("### a b # c d … e... f", 8) == pytest.approx(2 / 8)
    assert alpha_word_fraction(["abc", "123", "a1", "--"]) == 0.5
    lines = duplicate_line_scores("aa\nbb\naa\n\ncc")
    assert lines["duplicate_line_fraction"] == pytest.approx(2 / 4)        # both copies of "aa" count
    assert lines["duplicate_line_char_fraction"] == pytest.approx(4 / 8)
    assert ngram_words(["Buy", "now!", "BUY", "NOW!", "--"]) == ["buy", "now", "buy", "now"]
    words = "ab cd ab cd ab xy".split()
    scores = duplicate_ngram_scores(words, [2, 5])
    assert scores["top_2gram_char_fraction"] == pytest.approx(2 * 4 / 12)  # "ab cd" twice, 4 chars each
    assert scores["duplicate_5gram_char_fraction"] == 0.0
    repeated = "a b c d e f a b c d e g".split()
    # "a b c d e" occurs twice: 10 of 12 word characters are covered
    assert duplicate_ngram_scores(repeated, [5])["duplicate_5gram_char_fraction"] == pytest.approx(10 / 12)
    assert duplicate_ngram_scores(["solo"], [2, 5]) == {"top_2gram_char_fraction": 0.0,
                                                        "duplicate_5gram_char_fraction": 0.0}


@pytest.mark.parametrize(("text", "language"), [
    (CLEAN, "en"),
    (GERMAN, "de"),
    ("Le rapport trimestriel montre que les revenus ont augmenté dans toutes les régions du pays.", "fr"),
    ("El informe trimestral muestra que los ingresos crecieron en todas las regiones del país.", "es"),
    ("四半期報告書によると、すべての地域で売上が増加しました。", "ja"),
])
def test_detect_language(text: str, language: str) -> None:
    detected, confidence = detect_language(text)
    assert detected == language
    assert 0.9 <= confidence <= 1.0


def test_low_confidence_language_is_dropped() -> None:
    verdict = QualityFilter(QualityConfig(min_tokens=1, min_alpha_word_fraction=0.0)).check("1234 5678")
    assert verdict.reason == "language" and verdict.scores["language_confidence"] < 0.65


@pytest.mark.parametrize("text", [
    CLEAN,
    "Run kill -9 on the stuck worker, then restart the master and slave replicas.",
    "The patient reported pain; urine and semen samples were taken and the testes examined.",
    "We will find you a better plan and screw the new bracket onto the frame.",
    "Skip this step.",
    "",
])
def test_clean_and_clinical_text_is_not_toxic(text: str) -> None:
    assert toxicity_score(text) < 0.2


@pytest.mark.parametrize("text", [
    "You are a fucking idiot.",
    "shut up you moron",
    "I will kill you.",
    "I know where you live",
    "This is sh1t, total bullsh!t",
    "fuuuuck off",
    "f*ck you",
])
def test_toxic_text_scores_above_the_default_threshold(text: str) -> None:
    assert toxicity_score(text) > QualityConfig().max_toxicity_score


def test_toxicity_is_a_density_so_one_swear_word_in_a_long_text_stays_low() -> None:
    assert toxicity_score("damn") < 0.5
    long_text = CLEAN + " The damn printer jammed again."
    assert 0.0 < toxicity_score(long_text) < 0.2
    assert toxicity_score(long_text + " I will kill you.") >= 0.75   # a threat anywhere is severe
