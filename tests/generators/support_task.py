"""A small learnable support-desk task: each ticket has one of a few intents, and the right answer is
that intent's canned reply. A tiny model learns it in a hundred steps (it only has to spot the
intent's keyword and copy a fixed sentence), so evaluation tests can compare a trained model with
its base on real generations. Tickets vary in customer number, wording and filler; the holdout uses
other seeds, so its tickets are unseen.

What it does not cover: open-ended answers, several intents in one ticket, or replies that depend
on details of the ticket (amounts, dates).
"""

from __future__ import annotations

import random
from typing import Any

INTENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "card": (("card declined", "card refused abroad", "card not working"), "use travel mode"),
    "password": (("forgot password", "cannot log in", "locked out"), "reset it online"),
    "statement": (("need statement", "statement copy", "march statement"), "download the pdf"),
    "limit": (("raise limit", "limit too low", "higher limit"), "see settings limits"),
    "address": (("moved house", "new address", "change address"), "update your profile"),
}
OPENERS = ("hi", "hello", "")
CLOSERS = ("thanks", "please", "")


def support_tickets(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` chat examples (user ticket, assistant canned reply), deterministic for ``seed``."""
    rng = random.Random(seed)
    rows = []
    names = sorted(INTENTS)
    for _ in range(n):
        phrases, reply = INTENTS[rng.choice(names)]
        ticket = " ".join(p for p in (rng.choice(OPENERS), rng.choice(phrases), str(rng.randint(10, 99)),
                                      rng.choice(CLOSERS)) if p)
        rows.append({"messages": [{"role": "user", "content": ticket}, {"role": "assistant", "content": reply}]})
    return rows
