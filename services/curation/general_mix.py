"""General-instruction examples mixed into a tenant dataset to limit catastrophic forgetting.

No public instruction dataset can be downloaded here, so privtune generates simple,
verifiable general tasks (arithmetic, unit conversion, list sorting, word counting,
capitalisation, date reasoning) deterministically from a seed. They keep the model
practising generic instruction following; they carry no tenant data.
"""

from __future__ import annotations

import random
from typing import Callable

from services.curation.recipes import Example, _shape

_WORDS = ("river", "ledger", "orbit", "maple", "signal", "copper", "harbor", "lantern", "meadow", "quartz",
          "falcon", "timber", "velvet", "summit", "canvas", "pepper", "glacier", "anchor", "bramble", "cobalt")


def _arithmetic(r: random.Random) -> tuple[str, str]:
    a, b = r.randint(10, 999), r.randint(10, 999)
    op = r.choice(["+", "-", "*"])
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    return f"What is {a} {op} {b}?", f"{a} {op} {b} = {value}."


def _units(r: random.Random) -> tuple[str, str]:
    km = r.randint(1, 500)
    return f"Convert {km} kilometres to metres.", f"{km} kilometres is {km * 1000} metres."


def _sort(r: random.Random) -> tuple[str, str]:
    words = r.sample(_WORDS, 5)
    return f"Sort these words alphabetically: {', '.join(words)}.", ", ".join(sorted(words)) + "."


def _count(r: random.Random) -> tuple[str, str]:
    words = [r.choice(_WORDS) for _ in range(r.randint(3, 12))]
    return f"How many words are in this sentence: \"{' '.join(words)}\"?", f"It has {len(words)} words."


def _capitalise(r: random.Random) -> tuple[str, str]:
    words = r.sample(_WORDS, 4)
    return f"Write in title case: {' '.join(words)}", " ".join(w.capitalize() for w in words)


def _weekday(r: random.Random) -> tuple[str, str]:
    days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    start, n = r.randrange(7), r.randint(1, 30)
    return f"If today is {days[start]}, what day is it in {n} days?", f"It will be {days[(start + n) % 7]}."


_TASKS: tuple[Callable[[random.Random], tuple[str, str]], ...] = (
    _arithmetic, _units, _sort, _count, _capitalise, _weekday)


def general_examples(n: int, output_format: str, seed: int) -> list[Example]:
    """``n`` general-instruction examples, the same for the same seed."""
    r = random.Random(f"general-mix:{seed}")
    out = []
    for _ in range(n):
        question, answer = r.choice(_TASKS)(r)
        out.append(_shape(question, "", answer, output_format))
    return out


def mix_count(tenant_examples: int, ratio: float) -> int:
    """How many general examples make them ``ratio`` of the final training set."""
    if ratio <= 0 or tenant_examples == 0:
        return 0
    return round(tenant_examples * ratio / (1 - ratio))
