"""Recognizers for secrets: credentials and API keys pasted into tickets, chats and logs.

Presidio has no secret recognizer, so these are the PII stage's own, in two kinds:

* :class:`TokenSecretRecognizer` -- credentials with a recognisable shape (a vendor
  prefix, a PEM armour, a JWT header). The shape alone is the evidence.
* :class:`KeyValueSecretRecognizer` -- any value assigned to a key-ish name
  (``api_key=``, ``"client_secret": "..."``, ``password is ...``) whose characters look
  random enough (Shannon entropy and character classes), so ``token_count: 2048`` and
  ``password: <redacted>`` stay.

Both report the secret value only, never the key name in front of it.
"""

from __future__ import annotations

import math
from collections import Counter

import regex
from presidio_analyzer import Pattern, PatternRecognizer

ENTITY = "SECRET"
# Case matters in these patterns (AKIA..., ghp_...): no IGNORECASE, unlike Presidio's default.
_FLAGS = regex.DOTALL | regex.MULTILINE

TOKEN_PATTERNS = [
    Pattern("PEM private key block",
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]{16,16384}?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----",
            1.0),
    # AWS documents the key id as a 4-letter type prefix and 16 upper-case letters or digits.
    Pattern("AWS access key id", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA|ABIA|ACCA)[A-Z0-9]{16}\b", 0.95),
    Pattern("GitHub token", r"\bgh[pousr]_[A-Za-z0-9]{36,251}\b", 0.95),
    Pattern("GitHub fine-grained token", r"\bgithub_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}\b", 0.95),
    Pattern("Slack token", r"\bxox[abposr]-(?:[0-9]{6,}-){1,3}[A-Za-z0-9]{16,64}\b", 0.95),
    Pattern("Slack webhook", r"https://hooks\.slack\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{20,}", 0.95),
    Pattern("Stripe key", r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{20,99}\b", 0.95),
    Pattern("sk- API key (OpenAI, Anthropic, ...)",
            r"\bsk-(?:proj-|ant-(?:api[0-9]{2}-)?|svcacct-)?[A-Za-z0-9_-]{20,200}(?<![_-])", 0.9),
    Pattern("Google API key", r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])", 0.9),
    Pattern("JSON web token", r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}", 0.9),
    Pattern("Bearer token", r"(?<=\b[Bb]earer[ \t]{1,4})[A-Za-z0-9\-._~+/]{19,}[A-Za-z0-9\-_~+/]=*", 0.85),
    Pattern("Basic auth credentials", r"(?<=Authorization:[ \t]*Basic[ \t]{1,4})[A-Za-z0-9+/]{12,}={0,2}", 0.85),
    Pattern("Azure storage / Service Bus key",
            r"(?<=\b(?:AccountKey|SharedAccessKey|SharedKey)=)[A-Za-z0-9+/]{40,88}={0,2}", 0.95),
    Pattern("GitLab token", r"\bgl(?:pat|dt|rt|ptt|ft|cbt|soat|oas)-[A-Za-z0-9_-]{20,300}(?![A-Za-z0-9_-])", 0.95),
    Pattern("npm token", r"\bnpm_[A-Za-z0-9]{36}\b", 0.95),
    Pattern("PyPI token", r"\bpypi-AgE[A-Za-z0-9_-]{50,300}(?![A-Za-z0-9_-])", 0.95),
    Pattern("Twilio API key or account SID", r"\b(?:SK|AC)[0-9a-f]{32}\b", 0.9),
    Pattern("SendGrid key", r"\bSG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}(?![A-Za-z0-9_-])", 0.95),
    Pattern("Mailgun key", r"\bkey-[0-9a-f]{32}\b|\b[0-9a-f]{32}-[0-9a-f]{8}-[0-9a-f]{8}\b", 0.9),
    Pattern("Hugging Face token", r"\bhf_[A-Za-z0-9]{30,40}\b", 0.95),
    Pattern("Databricks token", r"\bdapi[0-9a-f]{32}(?:-[0-9])?\b", 0.95),
    Pattern("Shopify token", r"\bshp(?:at|ca|pa|ss)_[0-9a-fA-F]{32}\b", 0.95),
    Pattern("DigitalOcean token", r"\bdo[por]_v1_[0-9a-f]{64}\b", 0.95),
    Pattern("Atlassian API token", r"\bATATT3[A-Za-z0-9_=-]{150,250}(?![A-Za-z0-9_=-])", 0.95),
    # The password of scheme://user:password@host; only the password is reported.
    Pattern("password in a URL", r"(?<=\b[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/@]{1,64}:)[^\s:/@]{3,128}(?=@)", 0.9),
]
# A 40-character AWS secret access key has no prefix: it needs "aws" or "secret" nearby.
AWS_SECRET_PATTERN = Pattern("AWS secret access key (needs context)",
                             r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])", 0.1)
AWS_SECRET_CONTEXT = ["aws", "secret"]

_KEY_NAME = (r"(?:api[_ -]?key|apikey|access[_ -]?key(?:[_ -]?id)?|secret(?:[_ -]?(?:access[_ -]?)?key)?"
             r"|client[_ -]?secret|(?:auth|access|refresh|bearer|session)[_ -]?token|token|passw(?:or)?d|pwd"
             r"|private[_ -]?key(?:[_ -]?id)?|credentials?|signing[_ -]?key)")
# key name (optionally quoted/prefixed: AWS_SECRET_ACCESS_KEY, "client_secret"), then = : => or
# "is", then the value; \K drops everything before the value from the reported span. The prefix
# is bounded: an unbounded one rescans a long run of key characters from every start (quadratic).
KEY_VALUE_PATTERN = Pattern(
    "high-entropy value of a key-ish name",
    rf"(?i:\b[A-Za-z0-9_.-]{{0,40}}{_KEY_NAME}\b)[\"']?[ \t]*(?:=>|[:=]|\bis\b)[ \t]*[\"']?"
    r"\K[A-Za-z0-9+/_=.~!@#$%^&*-]{7,255}[A-Za-z0-9+/_=~!@#$%^&*-]",
    0.75,
)
_TEMPLATE_OPENERS = ("<", "${", "{{", "%(", "%{", "$(")
_PLACEHOLDERS = ("none", "null", "true", "false", "redacted", "hidden", "changeme", "example", "your_",
                 "xxxx", "****", "....")
# Passwords in URLs are often short words (``hunter2``), so no entropy bar, only placeholders.
_URL_PLACEHOLDERS = {"password", "pass", "passwd", "pwd", "secret", "token", "user", "username"}
MIN_TOKEN_ENTROPY = 2.5   # bits/char: ``AKIAAAAAAAAAAAAAAAAA`` and ``****`` fail, real keys have 3.5+


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value`` under its own character distribution."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def looks_random(value: str) -> bool:
    """Whether ``value`` is plausibly a generated credential rather than a word or a number.

    Needs at least 2.75 bits/char, and digits or capitals mixed with another class, so
    ``enabled``, ``2048`` and ``reset-required`` fail while ``Tr0ub4dor&3`` and hex or
    base64 keys pass.
    """
    if is_placeholder(value):
        return False
    classes = [any(c.islower() for c in value), any(c.isupper() for c in value),
               any(c.isdigit() for c in value), any(not c.isalnum() for c in value)]
    if sum(classes) < 2 or not (classes[1] or classes[2]):
        return False
    return shannon_entropy(value) >= 2.75


def is_placeholder(value: str) -> bool:
    """Whether ``value`` is a template, a redaction mark or a documentation example, not a secret."""
    lowered = value.lower()
    return (any(marker in lowered for marker in _PLACEHOLDERS) or value.startswith(_TEMPLATE_OPENERS)
            or lowered.strip("[]<>{}$") in _URL_PLACEHOLDERS)


class TokenSecretRecognizer(PatternRecognizer):
    """Credentials recognisable by their shape: vendor prefixes, PEM armour, JWTs, auth headers."""

    def __init__(self) -> None:
        super().__init__(supported_entity=ENTITY, patterns=TOKEN_PATTERNS, name="TokenSecretRecognizer",
                         global_regex_flags=_FLAGS)

    def invalidate_result(self, pattern_text: str) -> bool:
        """Placeholders and low-entropy fillers (``AKIAXXXXXXXXXXXXXXXX``) are not credentials."""
        return is_placeholder(pattern_text) or shannon_entropy(pattern_text) < MIN_TOKEN_ENTROPY


class AwsSecretKeyRecognizer(PatternRecognizer):
    """40 random base64 characters (an AWS secret access key) with "aws" or "secret" in the words before.

    A git commit hash is 40 characters too, so the value must mix upper case, lower case
    and digits, which hex never does.
    """

    def __init__(self) -> None:
        super().__init__(supported_entity=ENTITY, patterns=[AWS_SECRET_PATTERN], name="AwsSecretKeyRecognizer",
                         context=AWS_SECRET_CONTEXT, global_regex_flags=_FLAGS)

    def invalidate_result(self, pattern_text: str) -> bool:
        mixed = (any(c.isupper() for c in pattern_text) and any(c.islower() for c in pattern_text)
                 and any(c.isdigit() for c in pattern_text))
        return not mixed or is_placeholder(pattern_text) or shannon_entropy(pattern_text) < 4.0


class KeyValueSecretRecognizer(PatternRecognizer):
    """Random-looking values assigned to key-ish names (``api_key``, ``secret``, ``password``...)."""

    def __init__(self) -> None:
        super().__init__(supported_entity=ENTITY, patterns=[KEY_VALUE_PATTERN], name="KeyValueSecretRecognizer",
                         global_regex_flags=_FLAGS)

    def validate_result(self, pattern_text: str) -> bool | None:
        """Keep the pattern score (``None``) for random-looking values, drop (``False``) the rest."""
        return None if looks_random(pattern_text) else False
