"""Word lists for name detection: given names and surnames from many cultures, and common English words.

Built once per process (:func:`name_lexicon`, about half a second) from packages already
installed, with nothing downloaded:

* **Names** come from Faker's person providers: every locale whose lists are written in
  Latin script (West and East African, South Asian, Turkic, European, Latin American,
  Indonesian, Vietnamese...), the romanised Japanese and Chinese lists, and the Russian,
  Ukrainian and Bulgarian lists transliterated from Cyrillic. Words are lower-cased and
  also kept without diacritics, so "Nguyen" matches "Nguyễn".
* **Common words** are the lemmas of WordNet that ship in the spaCy model's lemmatizer
  tables, plus their irregular forms, *minus* every known name (so "Grace", "Chen",
  "Smith" are names, "checksum" and "keys" are words), plus :data:`NOT_NAMES`: words that
  are written in title case without being names (UI labels, sign-offs, product and
  tool names, months, weekdays, assistant names used as chat speakers).

Names that are also very common function words ("He", "An", "So") are dropped from the
name lists: a capitalised "He" starts a sentence far more often than it names a person.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import unicodedata
from dataclasses import dataclass

import srsly
from spacy.lang.en.stop_words import STOP_WORDS
from spacy.strings import get_string_id

# Title-case words that are not names although a name list or spaCy may say so.
NOT_NAMES = frozenset("""
keys key thanks thank regards regard best cheers sincerely kind warm hi hello hey dear greetings
tel fax phone mobile email e-mail mail subject from to cc bcc re fwd fw attn attachment attachments
customer client user users assistant system human bot admin administrator support team staff manager
agent operator engineer developer owner reviewer approver sender recipient caller everyone all
monday tuesday wednesday thursday friday saturday sunday
january february march april may june july august september october november december
mon tue wed thu fri sat sun jan feb mar apr jun jul aug sep sept oct nov dec
ok okay yes no please note notes summary update status error warning info debug trace fatal
checksum hash commit branch merge release version build deploy deployment pipeline config settings
dashboard login logout sign signup submit cancel save delete edit search home help about contact
kubernetes jenkins grafana postgresql postgres terraform ansible kafka redis airflow datadog sentry
vault docker github gitlab bitbucket jira confluence slack teams zoom outlook gmail excel word
windows linux ubuntu debian macos android ios chrome firefox safari edge azure aws gcp google
amazon microsoft apple oracle ibm salesforce stripe paypal visa mastercard amex discover twilio
sendgrid mailgun shopify databricks atlassian heroku netlify vercel cloudflare okta auth0 openai
anthropic claude chatgpt gpt gemini bard copilot siri alexa cortana llama mistral falcon whatsapp
telegram signal wechat zendesk hubspot tableau snowflake loki
python java javascript typescript rust golang ruby rails django flask react angular vue node
nginx apache tomcat mysql mongodb elasticsearch kibana prometheus splunk pagerduty opsgenie
iban swift bic ssn pin otp vpn api sdk cli url uri http https ip dns tls ssl ssh
""".split())

# Derivational endings of English words that are not in the dictionary ("Onboarding", "Tokenization").
_ENGLISH_SUFFIXES = ("ing", "tion", "sion", "ment", "ness", "ity", "ance", "ence", "ship", "able", "ible", "ware",
                     "ogy", "ize", "ise", "ized", "ised", "ful", "less")
# Faker locales whose lists are in another script and have no romanised variant.
_CYRILLIC_LOCALES = ("ru_RU", "uk_UA", "bg_BG")
_ROMANISED_LOCALES = ("ja_JP", "zh_CN", "zh_TW")
_CYRILLIC = dict(zip(
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюяєіїґ",
    ["a", "b", "v", "g", "d", "e", "yo", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p", "r", "s", "t",
     "u", "f", "kh", "ts", "ch", "sh", "shch", "", "y", "", "e", "yu", "ya", "ye", "i", "yi", "g"],
    strict=True))


@dataclass(frozen=True)
class NameLexicon:
    """Lower-cased word sets; membership tests are all the name recognizers need."""

    given_names: frozenset[str]
    surnames: frozenset[str]
    common_words: frozenset[str]
    core_words: frozenset[str] = frozenset()   # stop words and NOT_NAMES: never part of a name

    def is_core_common(self, word: str) -> bool:
        """Whether ``word`` is a stop word, a title-case non-name or an English derivation.

        Unlike :meth:`is_common`, this excludes dictionary words that are also surnames of
        famous people (WordNet lists "Faisal", "Nasser", "Sukarno" as nouns).
        """
        lowered = word.lower()
        if lowered in self.core_words or lowered.endswith("s") and lowered[:-1] in self.core_words:
            return True
        return not self.is_name(lowered) and len(lowered) >= 7 and lowered.endswith(_ENGLISH_SUFFIXES)

    def is_name(self, word: str) -> bool:
        """Whether ``word`` (any case, with or without diacritics) is a known given name or surname."""
        lowered = word.lower()
        return (lowered in self.given_names or lowered in self.surnames
                or fold(lowered) in self.given_names or fold(lowered) in self.surnames)

    def is_given_name(self, word: str) -> bool:
        lowered = word.lower()
        return lowered in self.given_names or fold(lowered) in self.given_names

    def is_common(self, word: str) -> bool:
        """Whether ``word`` is an ordinary English word (or a title-case non-name) rather than a name."""
        lowered = word.lower()
        if lowered in self.common_words:
            return True
        if self.is_name(lowered):
            return False
        if lowered.endswith("s") and (lowered[:-1] in self.common_words or lowered[:-2] in self.common_words):
            return True                                       # plurals and 3rd person: "Keys", "Regards"
        return len(lowered) >= 7 and lowered.endswith(_ENGLISH_SUFFIXES)   # "Onboarding", "Escalation"


def fold(word: str) -> str:
    """``word`` without diacritics ("nguyễn" -> "nguyen")."""
    if word.isascii():
        return word
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def _is_latin(word: str) -> bool:
    return all(c in "-' ." or (c.isalpha() and "LATIN" in unicodedata.name(c, "")) for c in word)


def _transliterate(word: str) -> str:
    return "".join(_CYRILLIC.get(c, c) for c in word.lower())


def _words(value: object) -> list[str]:
    if isinstance(value, dict):
        value = list(value)
    if not isinstance(value, (list, tuple, set, frozenset)):
        return []
    return [w for w in value if isinstance(w, str)]


def _provider_names(locale: str) -> tuple[set[str], set[str]]:
    provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
    given: set[str] = set()
    surnames: set[str] = set()
    romanised = locale in _ROMANISED_LOCALES
    for attr in vars(provider):
        target = given if attr.startswith("first_") else surnames if attr.startswith("last_") else None
        if target is None or attr.endswith("_name") or ("romanized" in attr) != romanised:
            continue
        for word in _words(getattr(provider, attr)):
            if locale in _CYRILLIC_LOCALES:
                word = _transliterate(word)
            if _is_latin(word):
                target.update(part for part in word.lower().replace("-", " ").split() if len(part) > 1)
    return given, surnames


def faker_names() -> tuple[frozenset[str], frozenset[str]]:
    """(given names, surnames) over every usable Faker locale, lower-cased, with folded variants."""
    import faker.providers.person as person_providers

    given: set[str] = set()
    surnames: set[str] = set()
    for module in pkgutil.iter_modules(person_providers.__path__):
        g, s = _provider_names(module.name)
        given |= g
        surnames |= s
    given |= {fold(w) for w in given}
    surnames |= {fold(w) for w in surnames}
    excluded = STOP_WORDS | NOT_NAMES
    return frozenset(given - excluded), frozenset(surnames - excluded)


def wordnet_words() -> frozenset[str]:
    """WordNet lemmas and irregular forms from the lemmatizer tables inside the spaCy model."""
    from services.common.pii.engine import spacy_model_path

    tables = srsly.msgpack_loads((spacy_model_path() / "lemmatizer" / "lookups" / "lookups.bin").read_bytes())
    words: set[str] = set()
    for pos in ("noun", "verb", "adj", "adv"):
        words.update(tables["lemma_index"].get(get_string_id(pos), ()))
        words.update(tables["lemma_exc"].get(get_string_id(pos), {}).keys())
    return frozenset(w.lower() for w in words if isinstance(w, str) and "_" not in w)


@functools.lru_cache(maxsize=1)
def name_lexicon() -> NameLexicon:
    """The process-wide lexicon (see the module docstring)."""
    given, surnames = faker_names()
    names = given | surnames
    common = (wordnet_words() - names) | STOP_WORDS | NOT_NAMES
    return NameLexicon(given_names=given, surnames=surnames, common_words=frozenset(common),
                       core_words=frozenset(STOP_WORDS | NOT_NAMES))
