"""Person names: spaCy NER, cleaned up, a name list from many cultures, and a few textual cues.

The small English spaCy model sometimes labels junk as PERSON (``bb42`` inside an
IPv6 address, ``+33612469779``, ``Fatima Adeyemi phone=702-440-9564`` where the
tokenizer kept ``phone=702...`` as one token). :class:`NameShapedSpacyRecognizer` trims
each span to its leading name-shaped words (letters, apostrophes, hyphens, initials)
and drops spans with none, so NER output never swallows a phone number or an address.

:class:`NameCueRecognizer` adds names the model misses after salutations ("Hi Priya,",
"Dear Rohan Sato"), honorifics ("Dr. Okafor") and sign-offs ("Best regards,\\nAna Silva").

The small English model misses names from outside its training data (Yoruba, Tamil,
Vietnamese...) and tags ordinary title-case words ("Keys", "Regards", "Kafka"), so both
lean on :mod:`services.common.pii.name_lexicon`:

* :class:`GazetteerNameRecognizer` flags runs of capitalised words where at least one
  word is a known given name or surname and none is a common English word, and a
  single known given name (or an unknown, non-dictionary capitalised word) after a name
  cue ("Hi", "ping", "cc", "customer", ...) or as a chat speaker at the start of a line
  (``Thanh: can someone...``). ``User:``/``Assistant:``/``Claude:`` are common words or
  in :data:`~services.common.pii.name_lexicon.NOT_NAMES`, so chat formats survive.
* :class:`NameShapedSpacyRecognizer` drops common words at the edges of a span, spans
  made only of them, and single unknown words at the start of a sentence.
"""

from __future__ import annotations

from collections.abc import Sequence

import regex
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import SpacyRecognizer

from services.common.pii.name_lexicon import NameLexicon, name_lexicon

ENTITY = "PERSON"
_NAME_WORD = regex.compile(r"[\p{L}\p{M}][\p{L}\p{M}'’\-]*\.?")
_WORD = regex.compile(r"\S+")
_GLUE = set("/=+@#$%&*~_-\\") | set("0123456789")   # characters that make a span part of a bigger token


def trim_to_name(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The longest run of name-shaped words at the start of ``text[start:end]``, or None.

    None also when the span is glued to a larger token (``MrW`` in ``MrW/CGp5...``).
    """
    if (start > 0 and (text[start - 1].isalnum() or text[start - 1] in _GLUE)) or (
            end < len(text) and (text[end].isalnum() or text[end] in _GLUE)):
        return None
    last_end = None
    for word in _WORD.finditer(text, start, end):
        if not _NAME_WORD.fullmatch(word.group()):
            break
        last_end = word.end()
    if last_end is None:
        return None
    trimmed = text[start:last_end].rstrip(".'’-")
    if sum(c.isalpha() for c in trimmed) < 2:
        return None
    return start, start + len(trimmed)


_FULL_STOP = regex.compile(r"(?:\A|[.!?])[ \t]*\Z")
_SENTENCE_END = regex.compile(r"(?:\A|[.!?:;\n\"“(\[*>-])[ \t]*\Z")


def starts_sentence(text: str, start: int) -> bool:
    """Whether ``text[start]`` begins a sentence, a line or a quotation (title case proves nothing there)."""
    return bool(_SENTENCE_END.search(text, max(0, start - 8), start))


def trim_common_words(text: str, start: int, end: int, lexicon: NameLexicon) -> tuple[int, int] | None:
    """``text[start:end]`` without common words at either edge, or None when nothing name-like is left.

    A single remaining word is kept if it is a known name, or an unknown word after a
    cue (see :data:`WEAK_CUES`) that does not start a sentence.
    """
    def ordinary(word: tuple[int, int]) -> bool:
        value = _bare(text[word[0]:word[1]].rstrip(".,"))
        return not value[:1].isupper() or lexicon.is_common(value)

    words = [(m.start(), m.end()) for m in _WORD.finditer(text, start, end)]
    while words and ordinary(words[0]):
        words.pop(0)
    if words and ordinary(words[-1]):
        return None            # a name is not followed by an ordinary word inside one span ("Red Hat")
    if not words:
        return None
    if len(words) == 1:
        word = _bare(text[words[0][0]:words[0][1]].rstrip(".,"))
        if not lexicon.is_name(word) and (starts_sentence(text, words[0][0]) or not _after_cue(text, words[0][0])):
            return None        # a lone unknown word needs a cue, and never counts at a sentence start
    return words[0][0], words[-1][0] + len(_bare(text[words[-1][0]:words[-1][1]]))


_CAPITALISED = regex.compile(r"\p{Lu}[\p{L}\p{M}'’\-]*")


def may_hold_ner_name(text: str, lexicon: NameLexicon | None = None,
                      covered: Sequence[tuple[int, int]] = ()) -> bool:
    """Whether spaCy NER could add a PERSON that :class:`NameShapedSpacyRecognizer` keeps.

    Every span it keeps has a capitalised word that is not a common word (see
    :func:`trim_common_words`), so a text without one -- most answers, subject lines, code
    -- needs no NER pass at all (NER is most of the PII stage's time). The check finds
    capitalised runs anywhere, also inside tokens, so it errs towards running NER.

    Words inside ``covered`` spans (what the other recognizers already found: "Maria Lopez"
    from the name list) do not count: a span NER could add would have its edge words there,
    so it would only merge with what is already replaced.
    """
    lexicon = lexicon or name_lexicon()
    return any(not lexicon.is_common(_bare(m.group()))
               and not any(start <= m.start() and m.end() <= end for start, end in covered)
               for m in _CAPITALISED.finditer(text))


class NameShapedSpacyRecognizer(SpacyRecognizer):
    """spaCy PERSON entities, trimmed to name-shaped, non-dictionary words (see the module docstring)."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
                ) -> list[RecognizerResult]:
        lexicon = name_lexicon()
        kept = []
        for result in super().analyze(text, entities, nlp_artifacts):
            span = trim_to_name(text, result.start, result.end)
            if span:
                span = trim_common_words(text, span[0], span[1], lexicon)
            if span:
                result.start, result.end = span
                kept.append(result)
        return kept


GAZETTEER_SCORE = 0.6
# A capitalised word (O'Brien, Al-Sayed, McKenzie, Nguyễn), an initial, or a surname particle.
_TOKEN = regex.compile(
    r"(?<![\w@/\\.\-])(?:\p{Lu}[\p{L}\p{M}'’]{0,40}(?:-[\p{L}\p{M}'’]{1,40}){0,3}"
    r"|(?:van|von|der|den|de|da|del|della|di|dos|du|bin|binti|ibn|ben|ter)(?=[ \t]+\p{Lu}))(?![\w@])")
_PARTICLES = {"van", "von", "der", "den", "de", "da", "del", "della", "di", "dos", "du", "bin", "binti", "ibn",
              "ben", "ter"}
_GAP = regex.compile(r"[ \t]{1,3}")
_INITIAL_GAP = regex.compile(r"\.?[ \t]{1,3}")
# Words after which a lone capitalised word is a person: salutations, mentions, roles.
STRONG_CUES = {"hi", "hello", "hey", "dear", "thanks", "thank", "cc", "ping", "ask", "tell", "customer",
               "client", "caller", "manager", "colleague", "employee", "candidate", "applicant", "patient",
               "contact", "mr", "mrs", "ms", "mx", "dr", "prof"}
# Weaker cues: enough before a *known* given name ("pair with Priya", "approved by Sven").
WEAK_CUES = STRONG_CUES | {"with", "by", "from", "for", "to", "via", "tell", "told", "asked",
                           "called", "emailed", "met", "invite", "invited", "assign", "assigned", "sister",
                           "brother", "wife", "husband", "son", "daughter", "mother", "father", "friend",
                           "verified", "escalated", "joins", "hire", "reviewer", "approver", "owner"}
_PREVIOUS_WORD = regex.compile(r"(\w+)[.,:]?[ \t]{1,3}\Z")


def _cue(text: str, start: int) -> str:
    """The word right before ``start``, lower-cased ("" if none)."""
    previous = _PREVIOUS_WORD.search(text, max(0, start - 24), start)
    return previous.group(1).lower() if previous else ""


def _after_cue(text: str, start: int) -> bool:
    return _cue(text, start) in WEAK_CUES


def _bare(word: str) -> str:
    """``word`` without a possessive or trailing apostrophe ("Priya's" -> "Priya")."""
    for suffix in ("'s", "’s", "'", "’"):
        if word.endswith(suffix):
            return word[: -len(suffix)]
    return word


class GazetteerNameRecognizer(EntityRecognizer):
    """Capitalised words that a multicultural name list and a common-word list say are a name.

    See the module docstring for the rules; every rule needs either a known name or a
    cue, and no rule accepts a common English word as part of a name.
    """

    def __init__(self) -> None:
        super().__init__(supported_entities=[ENTITY], name="GazetteerNameRecognizer")

    def load(self) -> None:
        """Nothing to load: the lexicon is built on first use and shared by the process."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
                ) -> list[RecognizerResult]:
        if ENTITY not in entities:
            return []
        lexicon = name_lexicon()
        return [RecognizerResult(ENTITY, start, end, GAZETTEER_SCORE) for start, end in self._spans(text, lexicon)]

    def _spans(self, text: str, lexicon: NameLexicon) -> list[tuple[int, int]]:
        spans = []
        run: list[tuple[int, int]] = []
        for match in _TOKEN.finditer(text):
            gap = _INITIAL_GAP if run and run[-1][1] - run[-1][0] == 1 else _GAP
            if run and not gap.fullmatch(text, run[-1][1], match.start()):
                spans.extend(self._run_spans(text, run, lexicon))
                run = []
            run.append(match.span())
        spans.extend(self._run_spans(text, run, lexicon))
        return spans

    def _run_spans(self, text: str, run: list[tuple[int, int]], lexicon: NameLexicon) -> list[tuple[int, int]]:
        """Name spans inside one run of adjacent capitalised words, split at common words."""
        spans = []
        segment: list[tuple[int, int]] = []
        for start, end in [*run, (-1, -1)]:
            word = _bare(text[start:end]) if start >= 0 else ""
            if start < 0 or lexicon.is_core_common(word) or (word.isupper() and len(word) > 1):
                while segment and text[segment[-1][0]:segment[-1][1]] in _PARTICLES:
                    segment.pop()
                while segment and text[segment[0][0]:segment[0][1]] in _PARTICLES:
                    segment.pop(0)
                if segment and self._is_name(text, segment, lexicon):
                    spans.append((segment[0][0], segment[0][0] + len(_bare(text[segment[0][0]:segment[-1][1]]))))
                segment = []
            else:
                segment.append((start, end))
        return spans

    @staticmethod
    def _is_full_name(text: str, start: int, words: list[str], lexicon: NameLexicon) -> bool:
        """Two or more adjacent capitalised words, none of them a stop word or title-case non-name.

        Without dictionary words: a name if one word is known, or mid-sentence ("review
        for Hasini Dissanayake"; at a sentence start two unknown words are as often a
        heading). With dictionary words ("Billing Portal", but also "Faisal Khoury"):
        mid-sentence only, and one word must be a known name, or an unknown word after
        a cue.
        """
        known = sum(lexicon.is_name(w) for w in words)
        dictionary = sum(lexicon.is_common(w) for w in words)
        line_start = not text[text.rfind("\n", 0, start) + 1:start].strip()
        sentence_start = line_start or bool(_FULL_STOP.search(text, max(0, start - 8), start))
        if not dictionary:
            return known > 0 or not sentence_start
        if starts_sentence(text, start) or dictionary == len(words):
            return False
        return known > 0 or _after_cue(text, start)

    @staticmethod
    def _is_name(text: str, segment: list[tuple[int, int]], lexicon: NameLexicon) -> bool:
        words = [_bare(text[s:e]) for s, e in segment if text[s:e] not in _PARTICLES and e - s > 1]
        start, end = segment[0][0], segment[-1][1]
        if len(words) >= 2:
            return GazetteerNameRecognizer._is_full_name(text, start, words, lexicon)
        if not words or lexicon.is_common(words[0]):
            return False
        line_start = text.rfind("\n", 0, start) + 1
        if not text[line_start:start].strip() and text.startswith(": ", end):
            return True                                     # chat speaker: "Thanh: can someone ..."
        cue = _cue(text, start)
        if cue in STRONG_CUES or cue in WEAK_CUES and lexicon.is_given_name(words[0]):
            return True
        return cue in WEAK_CUES and not starts_sentence(text, start)


_NAME = r"\p{Lu}[\p{Ll}\p{M}'’\-]+(?:[ \t]+(?:\p{Lu}\.|\p{Lu}[\p{Ll}\p{M}'’\-]+)){0,3}"
_SALUTATION = r"(?i:hi|hello|hey|dear|good (?:morning|afternoon|evening))"
_NOT_NAMES = {"all", "team", "everyone", "folks", "there", "guys", "sir", "madam", "colleagues", "both", "again",
              "support", "customer", "friends", "you"}
CUE_PATTERNS = [
    Pattern("name after a salutation", rf"(?<=\b{_SALUTATION}[ \t]+){_NAME}", 0.55),
    Pattern("name after an honorific", rf"(?<=\b(?:Mr|Mrs|Ms|Mx|Dr|Prof)\.?[ \t]+){_NAME}", 0.55),
    Pattern("name on the line after a sign-off",
            rf"(?<=(?i:regards|sincerely|cheers|thanks|thank you|best),?[ \t]*\n[ \t]*){_NAME}(?=[ \t]*(?:\n|$))",
            0.55),
]


class NameCueRecognizer(PatternRecognizer):
    """Capitalised names right after a salutation, an honorific or a sign-off."""

    def __init__(self) -> None:
        super().__init__(supported_entity=ENTITY, patterns=CUE_PATTERNS, name="NameCueRecognizer",
                         global_regex_flags=regex.MULTILINE)

    def invalidate_result(self, pattern_text: str) -> bool:
        words = pattern_text.split()
        return words[0].lower() in _NOT_NAMES or all(name_lexicon().is_common(w) for w in words)
