"""Deterministic choices keyed by a value's salted HMAC: the randomness behind surrogates.

A surrogate must be a function of (salt, type, normalized value) only, identical on every
machine and Python version, so neither ``random`` (whose ``randrange``/``choice`` may change
between versions) nor Faker's global RNG is used. Instead the 32-byte
:func:`~services.common.pii.pseudonyms.keyed_digest` is stretched with SHAKE-256 into as
many bytes as the surrogate needs (a 16 KB private key needs many), and each choice reads
four of them. The bias of ``int % n`` over 32 bits is below n / 2**32: negligible for the
alphabets and name lists used here.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Sequence
from typing import TypeVar

from services.common.pii.pseudonyms import keyed_digest

T = TypeVar("T")
_BYTES_PER_DRAW = 4


class KeyedDraws:
    """An endless, reproducible stream of choices derived from one keyed digest."""

    def __init__(self, digest: bytes) -> None:
        self._seed = digest
        self._buffer = b""
        self._position = 0

    @classmethod
    def for_value(cls, entity: str, value: str, salt: str) -> KeyedDraws:
        """The stream for ``value`` of type ``entity`` under ``salt`` (spelling variants share it)."""
        return cls(keyed_digest(entity, value, salt))

    def below(self, n: int) -> int:
        """A number in ``range(n)``."""
        end = self._position + _BYTES_PER_DRAW
        if end > len(self._buffer):
            self._buffer = hashlib.shake_256(self._seed).digest(max(256, 2 * end))
        chunk = self._buffer[self._position:end]
        self._position = end
        return int.from_bytes(chunk, "big") % n

    def choice(self, options: Sequence[T]) -> T:
        """One element of ``options`` (which must not be empty)."""
        return options[self.below(len(options))]

    def digits(self, n: int) -> str:
        return "".join(self.choice(string.digits) for _ in range(n))


def substitute_characters(value: str, draws: KeyedDraws, digits: str = string.digits,
                          lower: str = string.ascii_lowercase, upper: str = string.ascii_uppercase) -> str:
    """``value`` with each digit and letter redrawn from its class; everything else kept in place.

    The shape (length, separators, case, which positions are digits) survives; the
    characters do not depend on the original ones. Letters without case (CJK, Arabic...)
    become lower-case ASCII: this is the fallback for spans that match no known format.
    """
    out = []
    for c in value:
        if c.isdigit():
            out.append(draws.choice(digits))
        elif c.isupper():
            out.append(draws.choice(upper))
        elif c.isalpha():
            out.append(draws.choice(lower))
        else:
            out.append(c)
    return "".join(out)


def fill_digits(template: str, digits: str) -> str:
    """``template`` with its digits replaced, in order, by ``digits`` (same count): keeps grouping."""
    replacements = iter(digits)
    return "".join(next(replacements) if c.isdigit() else c for c in template)
