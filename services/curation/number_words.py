"""Fold English number words to digits, so "second quarter" and "2nd quarter" are one text.

Copies of a document are often retyped or reformatted with numbers written differently:
"twenty-five percent" / "25%", "the third floor" / "the 3rd floor", "one thousand two
hundred" / "1,200".  :func:`fold_number_words` rewrites a run of number words as the
number in digits (ordinals keep their suffix: ``first`` -> ``1st``).  It works on
tokens that normalisation has already casefolded and stripped of punctuation, so
``twenty-five`` arrives as ``twentyfive`` and ``1,200`` as ``1200``.

Every document is folded the same way, so a word that is not a number here ("one of
them", "a second opinion") becomes a digit in every copy alike; that costs nothing for
duplicate detection.  English only; "a hundred" and fractions are left as they are.
"""

from __future__ import annotations

from functools import lru_cache

_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen").split()
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}
_UNIT_ORDINALS = ("zeroth first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
                  "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth").split()
_TENS_ORDINALS = {"twentieth": 20, "thirtieth": 30, "fortieth": 40, "fiftieth": 50, "sixtieth": 60,
                  "seventieth": 70, "eightieth": 80, "ninetieth": 90}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_SCALE_ORDINALS = {"hundredth": 100, "thousandth": 1_000, "millionth": 1_000_000}


@lru_cache(maxsize=1)
def _lexicon() -> dict[str, tuple[int, bool]]:
    """Token -> (value, is_ordinal) for every simple and hyphen-glued number word."""
    words: dict[str, tuple[int, bool]] = {}
    words.update({word: (value, False) for value, word in enumerate(_UNITS)})
    words.update({word: (value, True) for value, word in enumerate(_UNIT_ORDINALS)})
    for tens_word, tens in _TENS.items():
        words[tens_word] = (tens, False)
        for unit in range(1, 10):
            words[tens_word + _UNITS[unit]] = (tens + unit, False)          # twentyfive
            words[tens_word + _UNIT_ORDINALS[unit]] = (tens + unit, True)   # twentyfirst
    words.update({word: (value, True) for word, value in _TENS_ORDINALS.items()})
    return words


def ordinal(value: int) -> str:
    """``1`` -> ``1st``, ``12`` -> ``12th``, ``22`` -> ``22nd``."""
    if value % 100 in (11, 12, 13):
        return f"{value}th"
    return f"{value}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(value % 10, 'th') }"


def fold_number_words(tokens: list[str]) -> list[str]:
    """Replace each run of number words with its value in digits; other tokens pass through."""
    lexicon = _lexicon()
    starts = [index for index, token in enumerate(tokens) if token in lexicon]
    if not starts:
        return tokens
    out: list[str] = []
    done = 0
    for start in starts:
        if start < done:
            continue                      # inside a run already parsed
        value, is_ordinal, end = _parse_run(tokens, start, lexicon)
        if value is None:
            continue
        out += tokens[done:start]
        out.append(ordinal(value) if is_ordinal else str(value))
        done = end
    out += tokens[done:]
    return out


def _parse_run(tokens: list[str], start: int, lexicon: dict[str, tuple[int, bool]]
               ) -> tuple[int | None, bool, int]:
    """Parse number words from ``start``: (value, ordinal, index after the run), value None if none."""
    total = current = 0
    seen = False
    index = start
    while index < len(tokens):
        token = tokens[index]
        if token in lexicon:
            value, is_ordinal = lexicon[token]
            tens_then_unit = current % 100 >= 20 and current % 10 == 0 and 0 < value < 10   # "twenty five"
            if seen and current % 100 and not tens_then_unit:                            # "five three": two numbers
                break
            current += value
            seen = True
            index += 1
            if is_ordinal:
                return total + current, True, index
        elif seen and (token in _SCALES or token in _SCALE_ORDINALS):
            scale = _SCALES.get(token) or _SCALE_ORDINALS[token]
            if scale == 100:
                current = max(current, 1) * 100
            else:
                total, current = total + max(current, 1) * scale, 0
            index += 1
            if token in _SCALE_ORDINALS:
                return total + current, True, index
        elif seen and token == "and" and index + 1 < len(tokens) and tokens[index + 1] in lexicon \
                and current % 100 == 0 and (current or total):         # "one hundred and five", "three thousand and ten"
            index += 1
        else:
            break
    if not seen:
        return None, False, start
    return total + current, False, index
