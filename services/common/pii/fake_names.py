"""Fake person names for surrogates, drawn from Faker's locale name lists by script.

Every ``faker.providers.person.<locale>`` module is read once per process and its given
and family names are bucketed by writing system (Latin, Cyrillic, Greek, Arabic, Hebrew,
CJK, Hangul, Devanagari, Thai...), so a Latin-script name becomes a Latin-script fake
and "Дмитрий" a Cyrillic one. A script Faker has no names for falls back to Latin.
Names are picked by index from the keyed digest of each *word* of the original (see
:class:`~services.common.pii.keyed_draws.KeyedDraws`), never from Faker's RNG, so
"Priya Raman" and a later "Priya" get the same fake given name within a dataset.

Gender, locale within a script, and name length are not matched: the fake's length is
that of a random list entry, so it says nothing about the original's length.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import unicodedata
from collections import defaultdict
from dataclasses import dataclass

import faker.providers.person
import regex

from services.common.pii.keyed_draws import KeyedDraws

ENTITY = "PERSON"
LATIN = "LATIN"
# Scripts that write a full name as one word, family name first ("王伟", "김민준").
_UNSPACED = frozenset({"CJK", "HANGUL"})
_SCRIPT_ALIASES = {"HIRAGANA": "CJK", "KATAKANA": "CJK"}   # Faker's ja_JP names are in kanji
_NAME_SHAPE = regex.compile(r"[\p{L}\p{M}]+(?:['’-][\p{L}\p{M}]+)*")
_INITIAL = regex.compile(r"(\p{Lu})(\.?)")
_MAX_REDRAWS = 64


@dataclass(frozen=True)
class NameLists:
    """Given and family names of one script, sorted (so indices do not depend on Faker's order)."""

    given: tuple[str, ...]
    family: tuple[str, ...]


def script_of(word: str) -> str | None:
    """The writing system of the first letter of ``word`` ("LATIN", "CYRILLIC", "CJK"...), or None."""
    for c in word:
        if c.isalpha():
            script = unicodedata.name(c, "UNKNOWN").split()[0]
            return _SCRIPT_ALIASES.get(script, script)
    return None


def _single_script(name: str) -> str | None:
    scripts = {script_of(c) for c in name if c.isalpha()}
    return scripts.pop() if len(scripts) == 1 else None


def _sequence(provider: type, attribute: str) -> list[str]:
    value = vars(provider).get(attribute, getattr(provider, attribute, None))
    return [str(v) for v in value] if isinstance(value, (tuple, list, dict)) else []


@functools.lru_cache(maxsize=1)
def name_lists() -> dict[str, NameLists]:
    """Script -> names from every Faker person locale; one word each, built on first use (~0.2 s)."""
    given: defaultdict[str, set[str]] = defaultdict(set)
    family: defaultdict[str, set[str]] = defaultdict(set)
    for module in pkgutil.iter_modules(faker.providers.person.__path__):
        provider = importlib.import_module(f"faker.providers.person.{module.name}").Provider
        for kind, bucket in (("first_names", given), ("last_names", family)):
            for attribute in (kind, f"{kind}_male", f"{kind}_female"):
                for name in _sequence(provider, attribute):
                    script = _single_script(name)
                    if script and _NAME_SHAPE.fullmatch(name) and (len(name) > 1 or script in _UNSPACED):
                        bucket[script].add(name)
    return {script: NameLists(tuple(sorted(given[script])), tuple(sorted(family[script])))
            for script in given.keys() & family.keys()}


def _lists_for(word: str) -> tuple[str, NameLists]:
    lists = name_lists()
    script = script_of(word) or LATIN
    return (script, lists[script]) if script in lists else (LATIN, lists[LATIN])


def name_parts(name: str) -> frozenset[str]:
    """``name`` and its hyphen/apostrophe-separated parts, case-folded: what must not survive."""
    folded = name.casefold()
    return frozenset({folded, *regex.split(r"['’-]", folded)})


def _match_case(fake: str, original: str) -> str:
    if original.isupper() and len(original) > 1:
        return fake.upper()
    if original.islower():
        return fake.lower()
    return fake


def _fake_word(word: str, family_name: bool, salt: str, forbidden: frozenset[str]) -> str:
    """A fake for one name word, never one of the original's words (``forbidden``, case-folded)."""
    draws = KeyedDraws.for_value(ENTITY, word, salt)
    if initial := _INITIAL.fullmatch(word):
        letters = [c for c in "ABCDEFGHIJKLMNOPRSTVW" if c != initial.group(1)]
        return draws.choice(letters) + initial.group(2)
    script, lists = _lists_for(word)
    fake = word
    for _ in range(_MAX_REDRAWS):
        if script in _UNSPACED and not family_name:   # a whole unspaced name: family + given
            fake = draws.choice(lists.family) + draws.choice(lists.given)
        else:
            fake = draws.choice(lists.family if family_name else lists.given)
        if forbidden.isdisjoint(name_parts(fake)):
            break
    return _match_case(fake, word)


def fake_person(value: str, salt: str) -> str | None:
    """A fake name shaped like ``value`` (same number of words, hyphens, initials, case), or None.

    The last of two or more words is treated as the family name, the others as given
    names; a single word as a given name. None when ``value`` has a word that is not
    name-shaped (digits, symbols: a span merged with another entity), for the caller's
    generic fallback.
    """
    pieces = regex.split(r"(\s+)", value.strip())
    words = pieces[::2]
    if not words or not all(_NAME_SHAPE.fullmatch(w.rstrip(".")) for w in words):
        return None
    forbidden = frozenset(part for w in words for part in name_parts(w.rstrip(".")))
    out = []
    for i, piece in enumerate(pieces):
        if i % 2:
            out.append(piece)
            continue
        family_name = len(words) > 1 and i == len(pieces) - 1
        parts = piece.split("-") if not _INITIAL.fullmatch(piece) else [piece]
        out.append("-".join(_fake_word(part, family_name, salt, forbidden) for part in parts))
    return "".join(out)


@functools.lru_cache(maxsize=1)
def _ascii_latin_names() -> NameLists:
    """Latin names that fold to plain ASCII letters (for e-mail local parts), lower-cased."""
    def fold(names: tuple[str, ...]) -> tuple[str, ...]:
        folded = {unicodedata.normalize("NFKD", n).encode("ascii", "ignore").decode().lower() for n in names}
        return tuple(sorted(n for n in folded if n.isalpha() and n.isascii() and len(n) > 1))
    latin = name_lists()[LATIN]
    return NameLists(fold(latin.given), fold(latin.family))


def fake_ascii_name_word(word: str, family_name: bool, salt: str, forbidden: frozenset[str]) -> str:
    """A lower-case ASCII given or family name for ``word`` (an e-mail local-part chunk)."""
    draws = KeyedDraws.for_value(ENTITY, word, salt)
    lists = _ascii_latin_names()
    pool = lists.family if family_name else lists.given
    fake = draws.choice(pool)
    for _ in range(_MAX_REDRAWS):
        if fake not in forbidden:
            break
        fake = draws.choice(pool)
    return fake
