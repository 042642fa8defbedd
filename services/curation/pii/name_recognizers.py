"""Person names: spaCy NER, cleaned up, plus a few unambiguous textual cues.

The small English spaCy model sometimes labels junk as PERSON (``bb42`` inside an
IPv6 address, ``+33612469779``, ``Fatima Adeyemi phone=702-440-9564`` where the
tokenizer kept ``phone=702...`` as one token). :class:`NameShapedSpacyRecognizer` trims
each span to its leading name-shaped words (letters, apostrophes, hyphens, initials)
and drops spans with none, so NER output never swallows a phone number or an address.

:class:`NameCueRecognizer` adds names the model misses after salutations ("Hi Priya,",
"Dear Rohan Sato"), honorifics ("Dr. Okafor") and sign-offs ("Best regards,\\nAna Silva").
It deliberately does not guess chat speakers (``Name: message``): in fine-tuning data
that form is mostly ``User:``/``Assistant:`` and rewriting it would break the format.
"""

from __future__ import annotations

import regex
from presidio_analyzer import Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import SpacyRecognizer

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


class NameShapedSpacyRecognizer(SpacyRecognizer):
    """spaCy PERSON entities, trimmed to name-shaped words (see the module docstring)."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
                ) -> list[RecognizerResult]:
        kept = []
        for result in super().analyze(text, entities, nlp_artifacts):
            span = trim_to_name(text, result.start, result.end)
            if span:
                result.start, result.end = span
                kept.append(result)
        return kept


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
        return pattern_text.split()[0].lower() in _NOT_NAMES
