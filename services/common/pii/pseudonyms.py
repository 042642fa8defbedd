"""Consistent salted pseudonyms: the same value in one dataset always gets the same token.

``<PERSON_3f9a1c0b2d>`` is the entity type plus the first 10 hex digits (40 bits) of
HMAC-SHA256(salt, type + normalized value). The salt is per dataset and secret, so
tokens cannot be reversed by hashing candidate values, and two datasets with different
salts share no tokens. Normalization makes trivially different spellings of one value
(``(415) 555-0199`` / ``+1 415 555 0199``, ``Ana@X.com`` / ``ana@x.com``) collide on
purpose.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

import phonenumbers

TOKEN_HEX_DIGITS = 10   # 40 bits: ~1e-5 chance of any collision among 5,000 distinct values of a type


def normalize(entity: str, value: str) -> str:
    """A canonical spelling of ``value`` so that equal values get equal pseudonyms."""
    if entity == "EMAIL_ADDRESS":
        return value.strip().lower()
    if entity == "PERSON":
        return " ".join(value.split()).casefold()
    if entity in ("CREDIT_CARD", "IBAN_CODE", "US_SSN"):
        return "".join(c for c in value if c.isalnum()).upper()
    if entity == "PHONE_NUMBER":
        try:
            number = phonenumbers.parse(value, "US")
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        except phonenumbers.NumberParseException:
            return "".join(c for c in value if c.isdigit() or c == "+")
    if entity == "IP_ADDRESS":
        try:
            return str(ipaddress.ip_interface(value))
        except ValueError:
            return value.strip().lower()
    return value.strip()


def keyed_digest(entity: str, value: str, salt: str) -> bytes:
    """HMAC-SHA256(salt, type + NUL + normalized value): the key of both pseudonyms and surrogates."""
    return hmac.new(salt.encode(), f"{entity}\0{normalize(entity, value)}".encode(), hashlib.sha256).digest()


def pseudonym(entity: str, value: str, salt: str) -> str:
    """``<TYPE_hex>`` for ``value``, stable for a salt and unrelated across salts."""
    return f"<{entity}_{keyed_digest(entity, value, salt).hex()[:TOKEN_HEX_DIGITS]}>"
