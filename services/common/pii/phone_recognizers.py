"""Phone numbers by their shape and the words around them, whether or not the number is assigned.

``phonenumbers`` (see :class:`~services.common.pii.recognizers.StrictPhoneRecognizer`)
only accepts numbers that are valid for a region. A number with an unassigned area
code, a typo, a digit missing or one too many, or a fictional ``555-01xx`` still points
at a person, so :class:`PhoneShapeRecognizer` flags digit groups *written like* a phone
number, in two strengths:

* strong shapes pass the default threshold alone: ``+CC ...`` groups, a parenthesised
  area code, NANP ``xxx-xxx-xxxx`` / ``xxx.xxx.xxxx`` / ``xxx xxx xxxx``, three or more
  dash- or dot-separated groups, space-separated groups after a trunk ``0``;
* weak shapes (``555-0123``, a bare 10-15 digit run, ``415 555 267``) need a context
  word in the six words before them ("call", "phone", "tel", "mobile", "whatsapp", ...),
  which Presidio's context enhancer adds to the score.

What is not a phone number is ruled out by shape and by the words in front: dates,
times, IP addresses, version strings, amounts, card numbers, SSN-shaped ``3-2-4``
groups, ZIP+4, pieces of an IBAN, ids after "order", "case", "invoice", "#", and any
group run that continues into more digits. The candidate pattern has no nested
unbounded repetition: every group is a maximal digit run between mandatory separators,
so matching is linear in the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import regex
from presidio_analyzer import Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

ENTITY = "PHONE_NUMBER"
STRONG_SCORE = 0.45   # above the default threshold (0.4) without context
WEAK_SCORE = 0.1      # needs a context word: +0.35, and at least 0.4 after enhancement
CONTEXT = ["phone", "tel", "call", "mobile", "cell", "fax", "whatsapp", "reach", "contact", "dial", "sms",
           "ring", "ping", "landline", "☎", "📞", "telefon", "téléphone"]

_SEP = r"[ .\-]"
# An optional "+", then groups: digit runs or a parenthesised area code, separated by one
# separator (or none around a parenthesis), then an optional extension.
CANDIDATE = (
    r"(?<![\w.,+\-/#$€£¥@%])"
    r"(?:\+[ ]?)?(?:\(\d{1,5}\)|\d{1,15})"
    rf"(?:{_SEP}?\(\d{{1,5}}\)|(?<=\))[ ]?\d{{1,15}}|{_SEP}\d{{1,15}}){{0,7}}"
    r"(?:[ ]?,?[ ]?(?i:ext\.?|extension|x)[ ]?\d{1,6})?"
)
_GROUP = regex.compile(r"\d+")
_EXTENSION = regex.compile(r"[ ]?,?[ ]?(?i:ext\.?|extension|x)[ ]?\d{1,6}\Z")
# Words after which a number is an identifier, not a phone number ("order 415-555-2671").
_ID_CUE = regex.compile(
    r"(?i:\b(?:order|case|invoice|inv|ticket|ref|reference|po|id|account|acct|iban|bic|card|ssn|sku|serial"
    r"|build|job|pid|port|tracking|zip|postcode|amount|total|version|release)\b[^\S\n]{0,3}"
    r"(?:no\.?|number|num|nr\.?|id)?[^\S\n]{0,3}[:#=]?[^\S\n]{0,3}|#[^\S\n]{0,2})\Z")
_IBAN_HEAD = regex.compile(r"\b[A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]{4}){0,7}[ ]?\Z")
_CONTINUES = regex.compile(r"[\w]|[.\-/:,][0-9]")
_LOOKBEHIND = 40


@dataclass(frozen=True)
class PhoneShape:
    """The digit groups of a candidate, without its extension."""

    groups: tuple[str, ...]
    separators: frozenset[str]
    plus: bool
    parens: bool

    @property
    def digits(self) -> int:
        return sum(len(g) for g in self.groups)


def phone_shape(candidate: str) -> PhoneShape:
    """Split ``candidate`` (a :data:`CANDIDATE` match) into its digit groups and separators."""
    main = _EXTENSION.sub("", candidate)
    groups = tuple(_GROUP.findall(main))
    separators = frozenset(c for c in main if c in " .-")
    return PhoneShape(groups, separators, main.lstrip().startswith("+"), "(" in main)


def _looks_like_date(groups: tuple[str, ...]) -> bool:
    lengths = tuple(len(g) for g in groups)
    return len(groups) == 3 and (lengths[0] == 4 and max(lengths[1:]) <= 2
                                 or max(lengths[:2]) <= 2 and lengths[2] in (2, 4))


def shape_score(shape: PhoneShape) -> float | None:
    """:data:`STRONG_SCORE`, :data:`WEAK_SCORE`, or None when the shape is not a phone number."""
    n, groups, lengths = shape.digits, shape.groups, tuple(len(g) for g in shape.groups)
    if not 7 <= n <= 15 or len(shape.separators) > 1 and not (shape.plus or shape.parens):
        return None
    if shape.plus:
        return STRONG_SCORE if n >= 8 else WEAK_SCORE
    if shape.parens:
        return STRONG_SCORE if n >= 9 else WEAK_SCORE
    if _looks_like_date(groups) or lengths in ((3, 2, 4), (5, 4)):      # dates, SSN, ZIP+4
        return None
    if "." in shape.separators and (len(groups) == 4 and max(lengths) <= 3 or min(lengths) < 2):
        return None                                                    # IPv4, versions
    if n >= 13 and lengths[0] == 4:                                    # card-number grouping
        return None
    if lengths == (3, 3, 4) or lengths == (1, 3, 3, 4) and groups[0] == "1":
        return STRONG_SCORE                                            # NANP, with or without the 1
    if len(groups) >= 3 and min(lengths) >= 2 and max(lengths) <= 5 and 9 <= n <= 12:
        if shape.separators != {" "} or groups[0].startswith("0"):
            return STRONG_SCORE
    if len(groups) >= 2 and groups[0].startswith("0") and 9 <= n <= 12:
        return STRONG_SCORE                                            # national trunk prefix
    if len(groups) == 1 and n < 10:
        return None                                                    # bare short runs are ids
    return WEAK_SCORE


def is_embedded(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is an id after a cue word, a piece of an IBAN, or runs on."""
    before = text[max(0, start - _LOOKBEHIND):start]
    return bool(_ID_CUE.search(before) or _IBAN_HEAD.search(before) or _CONTINUES.match(text, end))


class PhoneShapeRecognizer(PatternRecognizer):
    """Phone-shaped digit groups, scored by shape and boosted by context (module docstring)."""

    def __init__(self) -> None:
        super().__init__(supported_entity=ENTITY, name="PhoneShapeRecognizer", context=CONTEXT,
                         patterns=[Pattern("phone-shaped digit groups", CANDIDATE, STRONG_SCORE)])

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None,
                regex_flags: int | None = None) -> list[RecognizerResult]:
        kept = []
        for result in super().analyze(text, entities, nlp_artifacts, regex_flags):
            candidate = text[result.start:result.end]
            stripped = candidate.rstrip(" .-")
            result.end -= len(candidate) - len(stripped)
            score = shape_score(phone_shape(stripped))
            if score is not None and not is_embedded(text, result.start, result.end):
                result.score = score
                kept.append(result)
        return kept
