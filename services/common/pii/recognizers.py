"""Presidio recognizers for the PII stage, tightened where the stock ones fall short.

Most detection is Presidio's own: phone numbers (``phonenumbers``), IP addresses,
IBANs (mod-97 checksum and per-country format), credit cards (Luhn), US SSNs, e-mail
addresses, and spaCy NER for person names. The subclasses here change only what they
must:

* :class:`OfflineEmailRecognizer` validates domains against tldextract's *bundled*
  public-suffix snapshot. The stock recognizer calls ``tldextract.extract``, whose
  default extractor downloads the list from publicsuffix.org on first use.
* :class:`StrictUsSsnRecognizer` drops Presidio's oddly-grouped patterns (``12345-6789``
  is a ZIP+4) and rejects area numbers 900-999, which the SSA never issues.
* :class:`LuhnCreditCardRecognizer` adds the Mastercard 2221-2720 range and ignores
  digit runs that are part of a phone number or a longer number.
* :class:`QuietIbanRecognizer` never lets the stock recognizer log the candidate text.
* :class:`StrictPhoneRecognizer` reads national formats for fewer regions, and strictly.
  Numbers ``phonenumbers`` rejects but that are written like phone numbers (unassigned
  area codes, typos, ``555-01xx``) are :mod:`services.common.pii.phone_recognizers`'.

Secrets and API keys are in :mod:`services.common.pii.secret_recognizers`, person
names in :mod:`services.common.pii.name_recognizers` (with the name lists of
:mod:`services.common.pii.name_lexicon`).
"""

from __future__ import annotations

import functools

import phonenumbers
import regex
import tldextract
from presidio_analyzer import EntityRecognizer, Pattern, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)

from services.common.pii.name_recognizers import (
    GazetteerNameRecognizer,
    NameCueRecognizer,
    NameShapedSpacyRecognizer,
)
from services.common.pii.phone_recognizers import PhoneShapeRecognizer, is_embedded
from services.common.pii.secret_recognizers import (
    AwsSecretKeyRecognizer,
    KeyValueSecretRecognizer,
    TokenSecretRecognizer,
)

# Regions whose *national* phone formats are recognised; numbers written internationally
# (+49 30 ..., +972 ...) are found whatever their country. German and Israeli national
# numbering accepts 5-9 digit strings, which flagged order ids, case numbers and dates
# (12.12.2022) on the synthetic set, so those regions are left out. "US" covers every
# +1 (NANP) number, Canada's included; each region is one more pass over the text.
PHONE_REGIONS = ("US", "GB", "FR", "IN", "BR")


@functools.lru_cache(maxsize=1)
def offline_tld_extractor() -> tldextract.TLDExtract:
    """A tldextract instance that only ever reads the snapshot shipped in the wheel.

    ``suffix_list_urls=()`` disables every HTTP fetch and ``cache_dir=None`` disables the
    on-disk cache, so results do not depend on what some earlier process downloaded.
    """
    return tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)


_URL_USERINFO = regex.compile(r"[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s/@]{0,100}\Z")


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail pattern, with the domain checked against the bundled suffix list."""

    def validate_result(self, pattern_text: str) -> bool:
        return offline_tld_extractor()(pattern_text.rpartition("@")[2]).suffix != ""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None,
                regex_flags: int | None = None) -> list[RecognizerResult]:
        """Matches, minus a ``key=`` or ``mailto:`` prefix glued to the local part (``user=ana@x.com``).

        ``=``, ``/`` and ``:`` are legal in a local part, but in logs and URLs they are
        almost always the separator in front of the address.
        """
        kept = []
        for result in super().analyze(text, entities, nlp_artifacts, regex_flags):
            if _URL_USERINFO.search(text, max(0, result.start - 100), result.start + 1):
                continue   # scheme://user:password@host is a credential and a host, not an address
            local = text[result.start:result.end].partition("@")[0]
            cut = max(local.rfind("="), local.rfind("/"), local.rfind(":"))
            if 0 <= cut < len(local) - 1:
                result.start += cut + 1
            kept.append(result)
        return kept


class StrictUsSsnRecognizer(UsSsnRecognizer):
    """US SSNs as ``AAA-GG-SSSS`` (also with spaces or dots), or 9 bare digits near "SSN".

    The bare-digit pattern scores 0.1 and only passes the default threshold (0.4) when a
    context word ("ssn", "social security") precedes it, which adds 0.35.
    """

    PATTERNS = [
        Pattern("SSN delimited", r"\b([0-9]{3})([- .])([0-9]{2})\2([0-9]{4})\b", 0.5),
        Pattern("SSN bare digits (needs context)", r"\b[0-9]{9}\b", 0.1),
    ]
    CONTEXT = ["social", "security", "ssn", "ssns", "ss#", "ssn#"]

    def invalidate_result(self, pattern_text: str) -> bool:
        """True for numbers that cannot be SSNs, including Presidio's own checks."""
        if super().invalidate_result(pattern_text):
            return True
        digits = "".join(c for c in pattern_text if c.isdigit())
        return digits[0] == "9"   # 900-999: never issued (ITINs and test numbers live there)


# A card number is neither right after "+" (a phone number) nor inside a longer run of digit groups.
_EMBEDDED_BEFORE = regex.compile(r"(?:\+|[0-9][ -]?)\Z")
_EMBEDDED_AFTER = regex.compile(r"[ -]?[0-9]")


class LuhnCreditCardRecognizer(CreditCardRecognizer):
    """Presidio's card recognizer (regex + Luhn checksum) with 2-series Mastercard numbers.

    Presidio's pattern accepts 13 digits (retired Visa cards), which also matches
    international phone numbers such as ``+5511961214054``; one in ten passes Luhn.
    Matches inside a longer run of digit groups (the tail of an IBAN that failed its own
    checksum, ``ES29 2452 4740 2449 1273 0133``) are not cards either.
    """

    PATTERNS = [
        *CreditCardRecognizer.PATTERNS,
        Pattern("Mastercard 2-series", r"\b2[2-7][0-9]{2}[- ]?[0-9]{4}[- ]?[0-9]{4}[- ]?[0-9]{4}\b", 0.3),
    ]
    MIN_DIGITS = 14

    def invalidate_result(self, pattern_text: str) -> bool:
        return sum(c.isdigit() for c in pattern_text) < self.MIN_DIGITS

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None,
                regex_flags: int | None = None) -> list[RecognizerResult]:
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        return [r for r in results if not _EMBEDDED_BEFORE.search(text, max(0, r.start - 2), r.start)
                and not _EMBEDDED_AFTER.match(text, r.end)]


class QuietIbanRecognizer(IbanRecognizer):
    """Presidio's IBAN recognizer (format per country + mod-97), minus its error log.

    The stock ``validate_result`` logs the candidate text when it cannot be converted
    to a number; anything that is not plain ASCII letters and digits is rejected here
    before it gets that far.
    """

    def validate_result(self, pattern_text: str) -> bool | None:
        compact = EntityRecognizer.sanitize_value(pattern_text, self.replacement_pairs)
        if not (compact.isascii() and compact.isalnum() and len(compact) >= 15):
            return False
        return super().validate_result(pattern_text)


_GLUED = set("-/#.,$€£@%_")   # a number right after these is part of an id ("PO-3105020"), not a phone number


# The shortest number ``phonenumbers`` accepts as valid in any region has 7 digits with its country
# code (Niue, Tokelau: +683 1234), and written phone numbers separate their digit groups by at most
# a few characters ("(415) 555-2671", "+44 (0)20 ..."). Texts without such a run -- most record
# fields -- skip the matcher, which otherwise parses every candidate once per region (a third of
# the PII stage's time); so do the later regions' passes once every such run has matched.
_PHONE_DIGITS = regex.compile(r"\d(?:[^\d\n]{0,3}\d){6}")


class StrictPhoneRecognizer(PhoneRecognizer):
    """Presidio's ``phonenumbers`` recognizer for :data:`PHONE_REGIONS` at STRICT_GROUPING.

    Strict grouping accepts a number only if its digit groups follow the region's
    formatting (or are not grouped at all), so "NL58 DTFL 4747 2665 15" is not a phone.
    Numbers glued to a word or an id prefix are dropped: in "ZIP+4 94107-1234" the matcher would
    otherwise read "+4 94107-1234" as a German number. So are valid numbers used as ids
    ("order 415-555-2671") or running into more digits (see ``phone_recognizers.is_embedded``).
    """

    def __init__(self) -> None:
        super().__init__(supported_regions=PHONE_REGIONS, leniency=phonenumbers.Leniency.STRICT_GROUPING)

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
                ) -> list[RecognizerResult]:
        results = []
        unmatched = text
        for region in self.supported_regions:
            if not _PHONE_DIGITS.search(unmatched):
                break   # no 7 digits close together left: nothing for the (slow) matcher to find
            matches = list(phonenumbers.PhoneNumberMatcher(unmatched, region, leniency=self.leniency))
            for match in matches:
                results.append(self._get_recognizer_result(match, text, region, nlp_artifacts))
                # An international number matches in every region's pass: parse it once.
                unmatched = unmatched[:match.start] + " " * (match.end - match.start) + unmatched[match.end:]
        return [r for r in results if (r.start == 0 or not (text[r.start - 1].isalnum() or text[r.start - 1] in _GLUED))
                and not is_embedded(text, r.start, r.end)]


def build_recognizers(ner_score: float) -> list[EntityRecognizer]:
    """Every recognizer the PII stage runs (two for phone numbers, three each for secrets and names)."""
    return [
        OfflineEmailRecognizer(),
        StrictPhoneRecognizer(),
        PhoneShapeRecognizer(),
        LuhnCreditCardRecognizer(),
        StrictUsSsnRecognizer(),
        QuietIbanRecognizer(),
        IpRecognizer(),
        TokenSecretRecognizer(),
        KeyValueSecretRecognizer(),
        AwsSecretKeyRecognizer(),
        NameShapedSpacyRecognizer(supported_entities=["PERSON"], ner_strength=ner_score),
        NameCueRecognizer(),
        GazetteerNameRecognizer(),
    ]
