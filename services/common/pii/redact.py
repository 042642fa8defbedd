"""Find PII with Presidio and replace (surrogates, placeholders), tag or drop it; never logs record text."""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import regex
from presidio_analyzer import AnalyzerEngine, RecognizerResult
from presidio_anonymizer import AnonymizerEngine, OperatorConfig
from presidio_anonymizer.entities import RecognizerResult as AnonymizerSpan

from services.common.pii.config import PiiConfig
from services.common.pii.engine import LANGUAGE, analyzer_engine
from services.common.pii.name_lexicon import name_lexicon
from services.common.pii.name_recognizers import NameShapedSpacyRecognizer, may_hold_ner_name
from services.common.pii.pseudonyms import pseudonym
from services.common.pii.surrogates import surrogate

_SURROGATE_CACHE = 8192   # values per entity type and redactor
BATCH_SIZE = 64   # records per spaCy ``nlp.pipe`` batch in the *_many methods


@dataclass(frozen=True)
class Detection:
    """One PII span found in a text: where and what, never the value itself."""

    entity: str
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class PiiResult:
    """The outcome for one record."""

    text: str | None                  # rewritten text; None when the record is dropped
    found: dict[str, int] = field(default_factory=dict)   # entity type -> spans found
    dropped: bool = False


def resolve_overlaps(detections: Iterable[Detection]) -> list[Detection]:
    """Merge overlapping detections into one span each, labelled by the strongest of them.

    Different recognizers can claim overlapping text (a name inside an e-mail address, a
    phone number inside a card number). Replacing both would garble the output, and
    keeping only the best-scoring one could leave the rest of a longer span readable.
    So each group of overlapping detections becomes their union, with the entity type
    and score of the member with the highest score (ties: the longest, then the first).
    """
    groups: list[list[Detection]] = []
    group_end = -1
    for d in sorted(detections, key=lambda d: (d.start, -d.end)):
        if groups and d.start < group_end:
            groups[-1].append(d)
        else:
            groups.append([d])
        group_end = max(group_end, d.end)
    return [_merge(group) for group in groups]


def _merge(group: list[Detection]) -> Detection:
    best = min(group, key=lambda d: (-d.score, -(d.end - d.start), d.start))
    return Detection(best.entity, min(d.start for d in group), max(d.end for d in group), best.score)


_MENTION_ENTITIES = frozenset({"PERSON", "EMAIL_ADDRESS"})
_MAX_MENTION_WORDS = 32        # distinct words looked for per text
_NAME_PART = regex.compile(r"[\p{L}\p{M}][\p{L}\p{M}'’\-]{2,}")


def other_mentions(text: str, detections: list[Detection]) -> list[Detection]:
    """Further mentions of detected names and addresses in the same text, where no recognizer fired.

    "Maria called ... and Maria again": the second "Maria" has no cue, so only the first is
    found, and the record would keep the name next to its surrogate. Each detected name
    (and each of its words of 3+ letters that is not a common word) and each detected
    address is looked for again, whole-word and case-insensitively, and every mention is
    treated like the first.
    """
    lexicon = name_lexicon()
    wanted: dict[str, Detection] = {}
    for d in detections:
        if d.entity not in _MENTION_ENTITIES:
            continue
        value = text[d.start:d.end]
        wanted.setdefault(value.casefold(), d)
        if d.entity == "PERSON":
            for part in _NAME_PART.findall(value):
                if not lexicon.is_common(part):
                    wanted.setdefault(part.casefold(), d)
    if not wanted:
        return []
    words = sorted(wanted, key=len, reverse=True)[:_MAX_MENTION_WORDS]
    pattern = regex.compile(r"(?<![\w@.\-])(?:" + "|".join(regex.escape(w) for w in words) + r")(?![\w@\-])",
                            regex.IGNORECASE)
    mentions = []
    for match in pattern.finditer(text):
        source = wanted.get(match.group().casefold())
        if source is not None:
            mentions.append(Detection(source.entity, match.start(), match.end(), source.score))
    return mentions


def _tag(entity: str, value: str) -> str:
    return f"<{entity}>{value}</{entity}>"


class PiiRedactor:
    """Applies one :class:`PiiConfig` to records; cheap to create (the analyzer is shared)."""

    def __init__(self, config: PiiConfig) -> None:
        """Check ``config`` and attach to the process-wide analyzer (built on first use, ~1 s).

        Raises:
            ValueError: ``mode`` is ``surrogate`` or ``pseudonymize`` is on, but ``salt`` is empty.
        """
        if (config.mode == "surrogate" or config.pseudonymize) and not config.salt:
            what = "mode='surrogate'" if config.mode == "surrogate" else "pseudonymize=True"
            raise ValueError(f"PiiConfig {what} needs a per-dataset salt: set PiiConfig.salt to a secret random "
                             "string, the same for every record of a dataset version and different across versions "
                             "(or choose mode='redact', 'tag' or 'drop_record')")
        self.config = config
        self._analyzer: AnalyzerEngine = analyzer_engine()
        self._ner = next((r for r in self._analyzer.registry.recognizers if isinstance(r, NameShapedSpacyRecognizer)),
                         None) if "PERSON" in config.entities else None
        self._anonymizer = AnonymizerEngine()
        self._operators = self._operators_for(config)

    @staticmethod
    def _operators_for(config: PiiConfig) -> dict[str, OperatorConfig]:
        operators: dict[str, OperatorConfig] = {}
        for entity in config.entities:
            if config.mode == "tag":
                operators[entity] = OperatorConfig("custom", {"lambda": functools.partial(_tag, entity)})
            elif config.mode == "surrogate":
                # The same names, numbers and addresses recur across a dataset's records; a phone
                # surrogate costs ~0.5 ms (it is redrawn until valid for its country).
                fake = functools.lru_cache(maxsize=_SURROGATE_CACHE)(functools.partial(surrogate, entity,
                                                                                      salt=config.salt))
                operators[entity] = OperatorConfig("custom", {"lambda": fake})
            elif config.pseudonymize:
                operators[entity] = OperatorConfig(
                    "custom", {"lambda": functools.partial(pseudonym, entity, salt=config.salt)})
            else:
                operators[entity] = OperatorConfig("replace", {"new_value": f"<{entity}>"})
        return operators

    def detect(self, text: str) -> list[Detection]:
        """Non-overlapping PII spans in ``text``, in order."""
        return next(self.detect_many([text]))

    def detect_many(self, texts: Iterable[str]) -> Iterator[list[Detection]]:
        """:meth:`detect` for a stream of texts, in two passes per batch of ``BATCH_SIZE``.

        First every recognizer runs on tokenizer-only artifacts (the spaCy recognizer finds
        nothing there). Then the NER model (most of the stage's time) runs, in one
        ``nlp.pipe`` batch, only on the texts where it could still add a name: those with a
        capitalised non-common word outside every span found so far (``may_hold_ner_name``).
        """
        engine = self._analyzer.nlp_engine
        iterator = iter(texts)
        while batch := list(itertools.islice(iterator, BATCH_SIZE)):
            found = [self._analyzer.analyze(text=text, language=LANGUAGE, entities=self.config.entities,
                                            score_threshold=self.config.score_threshold,
                                            nlp_artifacts=engine.tokenized(text, LANGUAGE))  # type: ignore[attr-defined]
                     for text in batch]
            if self._ner is not None:
                lexicon = name_lexicon()
                need = [i for i, (text, results) in enumerate(zip(batch, found))
                        if may_hold_ner_name(text, lexicon, [(r.start, r.end) for r in results])]
                artifacts = engine.recognised([batch[i] for i in need], LANGUAGE, BATCH_SIZE)  # type: ignore[attr-defined]
                for i, artifact in zip(need, artifacts):
                    found[i] += [r for r in self._ner.analyze(batch[i], ["PERSON"], artifact)
                                 if r.score >= self.config.score_threshold]
            for text, results in zip(batch, found):
                yield self._detections(text, results)

    def redact(self, text: str) -> PiiResult:
        """Apply the configured mode to one record."""
        return self._apply(text, self.detect(text))

    def redact_many(self, texts: Iterable[str]) -> Iterator[PiiResult]:
        """Apply the configured mode to a stream of records, in order; faster than :meth:`redact`."""
        source, copy = itertools.tee(texts)
        for text, detections in zip(copy, self.detect_many(source)):
            yield self._apply(text, detections)

    @staticmethod
    def _detections(text: str, results: list[RecognizerResult]) -> list[Detection]:
        found = resolve_overlaps(Detection(r.entity_type, r.start, r.end, r.score) for r in results)
        return resolve_overlaps([*found, *other_mentions(text, found)]) if found else found

    def _apply(self, text: str, detections: list[Detection]) -> PiiResult:
        found = dict(Counter(d.entity for d in detections))
        if not detections:
            return PiiResult(text=text, found=found, dropped=False)
        if self.config.mode == "drop_record":
            return PiiResult(text=None, found=found, dropped=True)
        spans = [AnonymizerSpan(d.entity, d.start, d.end, d.score) for d in detections]
        rewritten = self._anonymizer.anonymize(text=text, analyzer_results=spans, operators=self._operators).text
        return PiiResult(text=rewritten, found=found, dropped=False)
