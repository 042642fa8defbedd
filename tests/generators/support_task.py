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
    return _tickets(n, random.Random(seed), INTENTS, OPENERS, CLOSERS, 99)


def _tickets(n: int, rng: random.Random, intents: dict[str, tuple[tuple[str, ...], str]], openers: tuple[str, ...],
             closers: tuple[str, ...], highest: int) -> list[dict[str, Any]]:
    rows = []
    names = sorted(intents)
    for _ in range(n):
        phrases, reply = intents[rng.choice(names)]
        ticket = " ".join(p for p in (rng.choice(openers), rng.choice(phrases), str(rng.randint(10, highest)),
                                      rng.choice(closers)) if p)
        rows.append({"messages": [{"role": "user", "content": ticket}, {"role": "assistant", "content": reply}]})
    return rows


# Public tickets: the same desk, other intents with other replies. A base pretrained on them learns the
# byte-level language and the chat format (and words such as "online", "update", "settings" that the
# private replies reuse) but not one private intent's keyword or its reply.
PUBLIC_INTENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "refund": (("refund please", "money back", "charged twice"), "request a refund in the app"),
    "app": (("app crashes", "app not loading", "app error"), "install the latest version"),
    "lost": (("lost my wallet", "phone stolen", "wallet stolen"), "freeze everything now"),
    "fee": (("why this fee", "monthly fee", "fee charged"), "see the fee table"),
    "transfer": (("transfer failed", "payment pending", "wire missing"), "wait two working days"),
    "pin": (("forgot pin", "pin blocked", "change pin"), "change it at any atm"),
    "close": (("close account", "cancel account", "leave the bank"), "call us to close it"),
    "savings": (("savings rate", "interest rate", "open savings"), "open a savings pot online"),
    "email": (("change email", "new phone number", "update email"), "edit your contact details"),
    "loan": (("need a loan", "loan options", "borrow money"), "apply on our website"),
    "branch": (("branch hours", "nearest branch", "visit a branch"), "find a branch on the map"),
    "cheque": (("deposit cheque", "cheque bounced", "pay in cheque"), "scan it with the camera"),
}
PUBLIC_OPENERS = ("hi", "hello", "hey", "good morning", "")
PUBLIC_CLOSERS = ("thanks", "please", "cheers", "asap", "")


def public_support_tickets(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` chat examples of :data:`PUBLIC_INTENTS`, shaped like :func:`support_tickets`, deterministic for ``seed``.

    The public corpus for pretraining a base before private fine-tuning: no intent, keyword or reply
    of :data:`INTENTS`.
    """
    return _tickets(n, random.Random(f"public:{seed}"), PUBLIC_INTENTS, PUBLIC_OPENERS, PUBLIC_CLOSERS, 999)
