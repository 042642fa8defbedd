"""Document quality filters: length, symbols, repetition, language and toxicity.

Every rule has a configurable threshold and a machine-readable reason code, so a
curation report can say how many documents each rule dropped (never which text).
Rules run cheapest first and stop at the first failure; ``QualityVerdict.scores``
holds every score computed up to and including the failing rule.

The length, symbol, alphabetic-word and repetition rules follow the MassiveText
quality filters of the Gopher paper: J. W. Rae et al., "Scaling Language Models:
Methods, Analysis & Insights from Training Gopher", arXiv:2112.11446 (2021),
appendix A.1.1 ("quality filtering") and A.1.2 with Table A1 ("repetition
removal").  Defaults are the paper's values.  The paper's other rules (mean word
length, stop words, bullet and ellipsis lines) are tuned for English web pages and
misfire on enterprise text such as tables, logs and tickets, so they are left out.

Tokens are *words*: maximal runs of non-space characters, except that each CJK
ideograph or kana counts as one token because those scripts do not put spaces
between words.  They are not model tokens (a base model's tokenizer gives roughly
1.3 tokens per English word); words are the unit the paper's thresholds are in.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pydantic

from services.common.toxicity import toxicity_score  # noqa: F401 - re-exported: part of the quality API

REASONS = ("too_short", "too_long", "symbol_ratio", "alpha_fraction", "repetition_lines",
           "repetition_ngrams", "language", "toxicity")

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
_HASH_RUN = re.compile(r"#+")
_ELLIPSIS = re.compile(r"\.{3,}|\u2026")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_LANGUAGE_SAMPLE_CHARS = 5000   # langid's cost is linear in length; the first 5K chars decide the language
_MIX = np.uint64(0x9E3779B97F4A7C15)
_WORD_PUNCTUATION = string.punctuation + "\u2026\u201c\u201d\u2018\u2019\u00ab\u00bb\u00bf\u00a1"

# Table A1 of Rae et al. (2021): n <= 4 bounds the most frequent n-gram, n >= 5 all duplicate n-grams.
GOPHER_NGRAM_LIMITS: dict[int, float] = {2: 0.20, 3: 0.18, 4: 0.16, 5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12,
                                         9: 0.11, 10: 0.10}


class QualityConfig(pydantic.BaseModel):
    """Thresholds for :class:`QualityFilter`; defaults are Gopher's unless noted."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    min_tokens: int = pydantic.Field(50, ge=0)             # Gopher: 50 words; lower it for chat turns
    max_tokens: int = pydantic.Field(100_000, ge=1)        # Gopher: 100,000 words
    # Gopher's repetition rules were calibrated on web pages; on a 20-word answer one repeated
    # phrase is already "20% duplicate". They apply from this many words on.
    min_tokens_for_repetition: int = pydantic.Field(50, ge=0)
    max_symbol_to_word_ratio: float = 0.1                  # '#' runs or ellipses per word (each counted alone)
    min_alpha_word_fraction: float = 0.8                   # words with at least one alphabetic character
    max_duplicate_line_fraction: float = 0.30              # lines that occur more than once
    max_duplicate_line_char_fraction: float = 0.20         # characters in such lines
    max_duplicate_paragraph_fraction: float = 0.30         # paragraphs that occur more than once
    max_duplicate_paragraph_char_fraction: float = 0.20    # characters in such paragraphs
    # n -> bound: for n in 2..4 the character fraction of the most frequent n-gram, for
    # n in 5..10 the character fraction covered by n-grams that occur more than once.
    max_duplicate_ngram_fraction: dict[int, float] = pydantic.Field(
        default_factory=lambda: dict(GOPHER_NGRAM_LIMITS))
    languages: list[str] = pydantic.Field(default_factory=lambda: ["en"])  # ISO 639-1 codes kept; [] keeps any

    @pydantic.field_validator("languages")
    @classmethod
    def _iso_639_1(cls, languages: list[str]) -> list[str]:
        bad = [code for code in languages if len(code) != 2 or not code.isascii() or not code.islower()
               or not code.isalpha()]
        if bad:
            raise ValueError(f"languages are ISO 639-1 codes, two lower-case letters like 'en' or 'de'; "
                             f"not {', '.join(repr(code[:8]) for code in bad[:3])}")
        return languages
    min_language_confidence: float = pydantic.Field(0.65, ge=0.0, le=1.0)  # langid probability of the top language
    max_toxicity_score: float = pydantic.Field(0.5, ge=0.0, le=1.0)        # see services.common.toxicity

    @pydantic.field_validator("max_duplicate_ngram_fraction")
    @classmethod
    def _ngram_sizes(cls, limits: dict[int, float]) -> dict[int, float]:
        if any(n < 2 for n in limits):
            raise ValueError(f"n-gram sizes must be >= 2, got {sorted(limits)}")
        return limits


@dataclass(frozen=True)
class QualityVerdict:
    """Keep or drop, why (one of :data:`REASONS`, ``""`` when kept), and the scores seen.

    ``language`` is the detected ISO 639-1 code when the language rule ran.
    """

    keep: bool
    reason: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    language: str = ""


class QualityFilter:
    """Apply the configured rules to one text at a time (stateless, thread-safe)."""

    def __init__(self, config: QualityConfig) -> None:
        self.config = config

    def check(self, text: str) -> QualityVerdict:
        config = self.config
        scores: dict[str, float] = {}
        words = tokens(text)
        scores["tokens"] = float(len(words))
        if len(words) < config.min_tokens:
            return QualityVerdict(False, "too_short", scores)
        if len(words) > config.max_tokens:
            return QualityVerdict(False, "too_long", scores)

        scores["symbol_to_word_ratio"] = symbol_to_word_ratio(text, len(words))
        if scores["symbol_to_word_ratio"] > config.max_symbol_to_word_ratio:
            return QualityVerdict(False, "symbol_ratio", scores)

        scores["alpha_word_fraction"] = alpha_word_fraction(words)
        if scores["alpha_word_fraction"] < config.min_alpha_word_fraction:
            return QualityVerdict(False, "alpha_fraction", scores)

        long_enough = len(words) >= config.min_tokens_for_repetition
        line_scores = duplicate_line_scores(text)
        scores.update(line_scores)
        if long_enough and (line_scores["duplicate_line_fraction"] > config.max_duplicate_line_fraction
                or line_scores["duplicate_line_char_fraction"] > config.max_duplicate_line_char_fraction
                or line_scores["duplicate_paragraph_fraction"] > config.max_duplicate_paragraph_fraction
                or line_scores["duplicate_paragraph_char_fraction"]
                > config.max_duplicate_paragraph_char_fraction):
            return QualityVerdict(False, "repetition_lines", scores)

        ngram_scores = duplicate_ngram_scores(ngram_words(words), sorted(config.max_duplicate_ngram_fraction))
        scores.update(ngram_scores)
        if long_enough and any(ngram_scores[_ngram_key(n)] > limit
                               for n, limit in config.max_duplicate_ngram_fraction.items()):
            return QualityVerdict(False, "repetition_ngrams", scores)

        language = ""
        if config.languages:
            language, confidence = detect_language(text)
            scores["language_confidence"] = confidence
            if language not in config.languages or confidence < config.min_language_confidence:
                return QualityVerdict(False, "language", scores, language)

        scores["toxicity"] = toxicity_score(text)
        if scores["toxicity"] > config.max_toxicity_score:
            return QualityVerdict(False, "toxicity", scores, language)
        return QualityVerdict(True, "", scores, language)


def tokens(text: str) -> list[str]:
    """Whitespace-separated words, with every CJK ideograph or kana a token of its own."""
    return _TOKEN.findall(text)


def symbol_to_word_ratio(text: str, word_count: int) -> float:
    """Gopher's symbol-to-word ratio: the larger of hash symbols and ellipses per word.

    A run of ``#`` counts once, so a Markdown heading (``### Title``) is one symbol, not
    three: enterprise documents are Markdown-heavy, web pages were not.  ``...`` (or
    longer) and ``…`` each count as one ellipsis.
    """
    if word_count == 0:
        return 0.0
    hashes = len(_HASH_RUN.findall(text))
    ellipses = len(_ELLIPSIS.findall(text))
    return max(hashes, ellipses) / word_count


def alpha_word_fraction(words: list[str]) -> float:
    """Fraction of words containing at least one alphabetic character (Gopher: >= 80%)."""
    if not words:
        return 0.0
    return sum(1 for word in words if any(ch.isalpha() for ch in word)) / len(words)


def duplicate_line_scores(text: str) -> dict[str, float]:
    """Gopher's line and paragraph repetition: fraction of items, and of their characters,
    that occur more than once in the document.

    Every occurrence of a repeated item counts (the paper's "fraction of lines that are
    duplicates"; datatrove counts only the second and later copies, which is laxer).
    Blank lines are ignored; lines and paragraphs are compared after stripping.
    """
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    paragraphs = [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]
    line_fraction, line_chars = _duplicate_fractions(lines)
    paragraph_fraction, paragraph_chars = _duplicate_fractions(paragraphs)
    return {"duplicate_line_fraction": line_fraction, "duplicate_line_char_fraction": line_chars,
            "duplicate_paragraph_fraction": paragraph_fraction,
            "duplicate_paragraph_char_fraction": paragraph_chars}


def _duplicate_fractions(items: list[str]) -> tuple[float, float]:
    if not items:
        return 0.0, 0.0
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    repeated = [item for item in items if counts[item] > 1]
    total_chars = sum(map(len, items))
    return len(repeated) / len(items), sum(map(len, repeated)) / total_chars if total_chars else 0.0


def ngram_words(words: list[str]) -> list[str]:
    """Words as the n-gram rules compare them: casefolded, surrounding punctuation stripped.

    Without this, ``password,`` and ``password`` differ and "Buy now! BUY NOW!"
    is not a repetition; tokens that are only punctuation are dropped.
    """
    stripped = (word.strip(_WORD_PUNCTUATION).casefold() for word in words)
    return [word for word in stripped if word]


def duplicate_ngram_scores(words: list[str], sizes: list[int]) -> dict[str, float]:
    """Gopher's n-gram repetition scores, as character fractions of all word characters.

    ``words`` should come from :func:`ngram_words`.  For n <= 4: characters in the
    most frequent n-gram times its count (0 unless it occurs at least twice; among
    equally frequent n-grams the longest), e.g. ``top_2gram_char_fraction``.  For n >= 5: characters
    of words covered by any n-gram that occurs more than once, each word counted once
    however many such n-grams overlap it, e.g. ``duplicate_5gram_char_fraction``.
    Whitespace is not counted.  N-grams are compared by a 64-bit hash of word ids,
    vectorised in numpy, so a 100K-word document costs milliseconds.
    """
    vocabulary: dict[str, int] = {}
    ids = np.fromiter((vocabulary.setdefault(word, len(vocabulary)) for word in words),
                      dtype=np.uint64, count=len(words))
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    total = int(lengths.sum())
    prefix = np.concatenate(([0], np.cumsum(lengths)))
    mixed = (ids + np.uint64(1)) * _MIX
    scores: dict[str, float] = {}
    for n in sizes:
        starts = len(words) - n + 1
        if starts < 2 or total == 0:
            scores[_ngram_key(n)] = 0.0
            continue
        hashes = np.zeros(starts, dtype=np.uint64)
        for offset in range(n):
            hashes = (hashes ^ mixed[offset:offset + starts]) * _MIX
        _, first, inverse, counts = np.unique(hashes, return_index=True, return_inverse=True, return_counts=True)
        span_chars = prefix[n:n + starts] - prefix[:starts]
        if n <= 4:
            top = counts.max()
            chars = span_chars[first[counts == top]].max() * top if top > 1 else 0
            scores[_ngram_key(n)] = min(1.0, float(chars) / total)
        else:
            repeated_starts = counts[inverse] > 1
            coverage = np.zeros(len(words) + 1, dtype=np.int64)
            np.add.at(coverage, np.flatnonzero(repeated_starts), 1)
            np.add.at(coverage, np.flatnonzero(repeated_starts) + n, -1)
            covered = np.cumsum(coverage[:-1]) > 0
            scores[_ngram_key(n)] = float(lengths[covered].sum()) / total
    return scores


def _ngram_key(n: int) -> str:
    return f"top_{n}gram_char_fraction" if n <= 4 else f"duplicate_{n}gram_char_fraction"


@lru_cache(maxsize=1)
def _language_identifier() -> Any:   # langid ships no type hints
    """langid.py's bundled model (97 languages), with normalised probabilities; ~3 s to load, once."""
    from langid.langid import LanguageIdentifier, model

    class SparseLanguageIdentifier(LanguageIdentifier):  # type: ignore[misc]
        """langid with the class scores summed over the document's features only.

        langid multiplies the whole feature vector (7,480 counts, nearly all zero) by the
        7,480 x 97 weight matrix, a BLAS call that spins up numpy's thread pool for every
        document: ~4 ms per document once the PII workers keep the other cores busy, and
        more CPU than the quality filter's other checks together. Summing the rows of the
        document's few hundred features gives the same scores (up to float rounding) in
        a fraction of the time, on one thread.
        """

        def nb_classprobs(self, fv: Any) -> Any:
            present = np.flatnonzero(fv)
            return fv[present].astype(np.float64) @ self.nb_ptc[present] + self.nb_pc

    return SparseLanguageIdentifier.from_modelstring(model, norm_probs=True)


def detect_language(text: str) -> tuple[str, float]:
    """ISO 639-1 code of the most likely language and its probability in [0, 1].

    Uses langid.py (Lui & Baldwin 2012), unrestricted, so a document in a language
    that is not allowed is recognised as such rather than forced onto the nearest
    allowed one.  Only the first 5,000 characters are read.  On very short or
    letter-free text the probability is low and unreliable (``"1234"`` -> en, 0.17),
    which the confidence threshold turns into a ``language`` drop.
    """
    language, probability = _language_identifier().classify(text[:_LANGUAGE_SAMPLE_CHARS])
    return str(language), float(probability)
