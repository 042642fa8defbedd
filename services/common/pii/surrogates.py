"""Realistic, format-preserving fakes for detected PII: ``surrogate(entity, value, salt)``.

A model tuned on ``Hi <PERSON>, your card <CREDIT_CARD> ...`` learns to answer with
placeholders. Surrogate mode instead writes a fake of the same type and shape, drawn
from the value's salted HMAC (:mod:`services.common.pii.pseudonyms`), so the same value
gets the same fake throughout a dataset version and an unrelated one under another salt.

What each type becomes (digits, letters and separators are placed where the original
had them; the kept parts are listed):

* ``PERSON`` -- Faker names of the same script, word by word (:mod:`.fake_names`).
* ``EMAIL_ADDRESS`` -- name-like local part, lower case, at ``<name>.example.{com,net,org}``
  (RFC 2606: never a real mailbox host).
* ``PHONE_NUMBER`` -- country code, trunk prefix and punctuation kept; a national number
  valid for that country when one is found within 64 draws.
* ``CREDIT_CARD`` -- issuer prefix family (Visa 4, Mastercard 51-55/2221-2720, Amex 34/37,
  ...), length and grouping kept, a valid Luhn digit.
* ``IBAN_CODE`` -- country and length kept, letters/digits per position, valid mod-97.
* ``US_SSN`` -- ``AAA-GG-SSSS`` with the original separator (or none), never-issued
  areas (000, 666, 900+), group 00 and serial 0000 avoided.
* ``IP_ADDRESS`` -- same version and prefix length, inside the documentation ranges
  192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32.
* ``SECRET`` -- vendor prefix (``AKIA``, ``ghp_``, ``sk-proj-``, ``xoxb-``, ``eyJ``, PEM armour)
  kept, the rest redrawn from the original's alphabet (hex stays hex, base32 stays base32).

A span that matches no known format (a merged overlap of two types, a truncated match)
gets every letter and digit redrawn in place. Structured surrogates keep the original's
length because the format fixes it; names and e-mail local parts do not.
"""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Callable

import phonenumbers
import regex

from services.common.pii.fake_names import fake_ascii_name_word, fake_person, name_parts
from services.common.pii.keyed_draws import KeyedDraws, fill_digits, substitute_characters

_MAX_REDRAWS = 64


def surrogate(entity: str, value: str, salt: str) -> str:
    """A fake ``entity`` shaped like ``value``, the same for every spelling of it under ``salt``.

    Never returns ``value`` itself (nor, for names, any word of it); never raises on odd
    input, which falls back to redrawing every letter and digit in place.

    Raises:
        ValueError: ``salt`` is empty (every dataset would then share its surrogates).
    """
    if not salt:
        raise ValueError("surrogates need a per-dataset salt: set PiiConfig.salt to a secret random string, "
                         "different for each dataset version")
    if not value:
        return value
    make = _MAKERS.get(entity)
    fake = make(value, salt) if make else None
    if fake is None or fake == value:
        fake = _generic(entity, value, salt)
    return fake


def _generic(entity: str, value: str, salt: str) -> str:
    draws = KeyedDraws.for_value(entity, value, salt)
    fake = value
    for _ in range(_MAX_REDRAWS):
        fake = substitute_characters(value, draws)
        if fake != value:
            return fake
    return "".join("x" if c.isalnum() else c for c in value)   # only for a value with no letters or digits


# --- e-mail ---------------------------------------------------------------------------------------

_RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
_LOCAL_CHUNK = regex.compile(r"([._+-])")


def _email(value: str, salt: str) -> str | None:
    local, at, domain = value.strip().rpartition("@")
    if not (at and local and domain):
        return None
    chunks = _LOCAL_CHUNK.split(local.lower())
    words = [*chunks[::2], *domain.lower().split(".")]
    forbidden = frozenset(part for word in words for part in name_parts(word))
    names_seen = 0
    out = []
    for i, chunk in enumerate(chunks):
        if i % 2 or not chunk:
            out.append(chunk)
        elif chunk.isascii() and chunk.isalpha() and len(chunk) > 1:
            out.append(fake_ascii_name_word(chunk, names_seen > 0, salt, forbidden))
            names_seen += 1
        else:
            out.append(substitute_characters(chunk, KeyedDraws.for_value("EMAIL_ADDRESS", chunk, salt)))
    domain_draws = KeyedDraws.for_value("EMAIL_ADDRESS", "@" + domain, salt)
    label = fake_ascii_name_word(domain.lower(), True, salt, forbidden)
    return f"{''.join(out)}@{label}.{domain_draws.choice(_RESERVED_DOMAINS)}"


# --- phone numbers --------------------------------------------------------------------------------

_PHONE_REGIONS = ("US", "GB", "FR", "IN", "BR")   # the regions whose national formats are detected


def _parse_phone(value: str) -> phonenumbers.PhoneNumber | None:
    for region in _PHONE_REGIONS:
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            return None
        if phonenumbers.is_valid_number(number):
            return number
    return None


def _is_valid_phone(country_code: int, national: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(f"+{country_code}{national}", None))
    except phonenumbers.NumberParseException:
        return False


def _phone(value: str, salt: str) -> str | None:
    digits = "".join(c for c in value if c.isdigit())
    number = _parse_phone(value)
    national = phonenumbers.national_significant_number(number) if number else ""
    start = digits.find(national) if national else -1
    if number is None or start < 0:   # unknown format: keep a leading + and trunk 0, redraw the rest
        start, national = (1 if digits.startswith("0") else 0), digits[1 if digits.startswith("0") else 0:]
    if not national:
        return None
    draws = KeyedDraws.for_value("PHONE_NUMBER", value, salt)
    fake = ""
    for _ in range(_MAX_REDRAWS):
        candidate = draws.digits(len(national))
        if candidate == national:
            continue
        fake = fake or candidate
        if number is None or _is_valid_phone(number.country_code, candidate):
            fake = candidate
            break
    if not fake:
        return None
    rest = draws.digits(len(digits) - start - len(national))   # an extension
    return fill_digits(value, digits[:start] + fake + rest)


# --- cards, IBANs, SSNs ---------------------------------------------------------------------------

def luhn_check_digit(payload: str) -> str:
    """The digit that makes ``payload + digit`` pass the Luhn check."""
    total = 0
    for i, c in enumerate(reversed(payload)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str(-total % 10)


def _issuer_prefix(digits: str, draws: KeyedDraws) -> str:
    """The start of a fake card number in the same issuer family as ``digits``."""
    if 2221 <= int(digits[:4]) <= 2720:                      # Mastercard 2-series
        return str(2221 + draws.below(500))
    if digits[0] == "5" and digits[1] in "12345":            # Mastercard
        return "5" + draws.choice("12345")
    if digits.startswith("6011"):                            # Discover
        return "6011"
    if digits[:2] in ("34", "37", "35", "36", "38", "30", "62", "65"):   # Amex, JCB, Diners, UnionPay, Discover
        return digits[:2]
    return digits[0]                                         # Visa (4) and the rest: the major industry digit


def _card(value: str, salt: str) -> str | None:
    digits = "".join(c for c in value if c.isdigit())
    if not 12 <= len(digits) <= 19 or not digits.isascii():
        return None
    draws = KeyedDraws.for_value("CREDIT_CARD", value, salt)
    for _ in range(_MAX_REDRAWS):
        payload = _issuer_prefix(digits, draws)
        payload += draws.digits(len(digits) - 1 - len(payload))
        fake = payload + luhn_check_digit(payload)
        if fake != digits:
            return fill_digits(value, fake)
    return None


def iban_check_digits(country: str, bban: str) -> str:
    """ISO 13616 check digits for ``country`` + ``bban`` (upper-case letters and digits)."""
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{98 - int(numeric) % 97:02d}"


def _iban(value: str, salt: str) -> str | None:
    compact = "".join(c for c in value if c.isalnum()).upper()
    if not (compact.isascii() and len(compact) >= 5 and compact[:2].isalpha() and compact[2:4].isdigit()):
        return None
    draws = KeyedDraws.for_value("IBAN_CODE", value, salt)
    for _ in range(_MAX_REDRAWS):
        bban = substitute_characters(compact[4:], draws)
        fake = compact[:2] + iban_check_digits(compact[:2], bban) + bban
        if fake != compact:
            break
    else:
        return None
    chars = iter(fake)
    return "".join((next(chars).lower() if c.islower() else next(chars)) if c.isalnum() else c for c in value)


def _ssn(value: str, salt: str) -> str | None:
    digits = "".join(c for c in value if c.isdigit())
    if len(digits) != 9 or not digits.isascii():
        return None
    draws = KeyedDraws.for_value("US_SSN", value, salt)
    for _ in range(_MAX_REDRAWS):
        area = 1 + draws.below(899)
        if area == 666:
            continue
        fake = f"{area:03d}{1 + draws.below(99):02d}{1 + draws.below(9999):04d}"
        if fake != digits:
            return fill_digits(value, fake)
    return None


# --- IP addresses ---------------------------------------------------------------------------------

_DOC_V4 = (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("198.51.100.0/24"),
           ipaddress.ip_network("203.0.113.0/24"))
_DOC_V6 = ipaddress.ip_network("2001:db8::/32")


def _ip(value: str, salt: str) -> str | None:
    text = value.strip()
    address_text, slash, prefix = text.partition("/")
    try:
        original = ipaddress.ip_address(address_text)
    except ValueError:
        return None
    draws = KeyedDraws.for_value("IP_ADDRESS", value, salt)
    for _ in range(_MAX_REDRAWS):
        if original.version == 4:
            fake = str(draws.choice(_DOC_V4)[1 + draws.below(254)])
        elif "." in address_text:                             # IPv4-mapped/embedded: ::ffff:a.b.c.d
            fake = "::ffff:" + str(draws.choice(_DOC_V4)[1 + draws.below(254)])
        else:
            host = draws.below(2**32) << 64 | draws.below(2**32) << 32 | draws.below(2**32)
            fake = _format_v6(_DOC_V6[host or 1], address_text)
        if fake != address_text:
            return fake + slash + prefix
    return None


def _format_v6(address: ipaddress.IPv6Address, like: str) -> str:
    """``address`` written as ``like`` is: compressed (``::``) or not, leading zeros or not, case."""
    if "::" in like:
        text = address.compressed
    elif all(len(group) == 4 for group in like.split(":")):
        text = address.exploded
    else:
        text = ":".join(group.lstrip("0") or "0" for group in address.exploded.split(":"))
    return text.upper() if any(c in "ABCDEF" for c in like) else text


# --- secrets --------------------------------------------------------------------------------------

# Parts of a credential that name its vendor or format; kept verbatim, everything else redrawn.
_SECRET_KEEP = regex.compile(
    r"\A(?:AKIA|ASIA|gh[pousr]_|github_pat_|xox[abposr]-|[rs]k_(?:live|test)_"
    r"|sk-(?:proj-|ant-(?:api[0-9]{2}-)?|svcacct-)?|AIza|https://hooks\.slack\.com/services/T)"
    r"|(?:\A|(?<=\.))eyJ|(?<=/)B(?=[A-Z0-9]{6,}/)"
    r"|-----(?:BEGIN|END) (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_AWS_KEY = regex.compile(r"\A(?:AKIA|ASIA)[A-Z2-7]{16}\Z")


def _secret(value: str, salt: str) -> str | None:
    draws = KeyedDraws.for_value("SECRET", value, salt)
    kept = list(_SECRET_KEEP.finditer(value))
    variable = "".join(c for i, c in enumerate(value) if not any(m.start() <= i < m.end() for m in kept))
    redraw: Callable[[str], str]
    if _AWS_KEY.match(value):
        def redraw(part: str) -> str:
            return substitute_characters(part, draws, digits="234567")
    elif variable and all(c in string.hexdigits for c in variable):
        lower, upper = "abcdef", "ABCDEF"
        def redraw(part: str) -> str:
            return substitute_characters(part, draws, lower=lower, upper=upper)
    else:
        def redraw(part: str) -> str:
            return substitute_characters(part, draws)
    for _ in range(_MAX_REDRAWS):
        out, position = [], 0
        for match in kept:
            out += [redraw(value[position:match.start()]), match.group()]
            position = match.end()
        out.append(redraw(value[position:]))
        fake = "".join(out)
        if fake != value:
            return fake
    return None


_MAKERS: dict[str, Callable[[str, str], str | None]] = {
    "PERSON": fake_person,
    "EMAIL_ADDRESS": _email,
    "PHONE_NUMBER": _phone,
    "CREDIT_CARD": _card,
    "IBAN_CODE": _iban,
    "US_SSN": _ssn,
    "IP_ADDRESS": _ip,
    "SECRET": _secret,
}
