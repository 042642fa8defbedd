"""The PII stage: detection per entity type, modes, pseudonyms, overlaps, negatives, offline."""

from __future__ import annotations

import logging
import os
import random
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pydantic
import pytest

from services.common.pii import Detection, PiiConfig, PiiRedactor, resolve_overlaps
from services.common.pii.recognizers import LuhnCreditCardRecognizer, QuietIbanRecognizer, StrictUsSsnRecognizer
from services.common.pii.secret_recognizers import looks_random
from tests.generators.pii_corpus import generate_records, iban_check_digits, luhn_check_digit, make_iban

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
STRUCTURED = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS", "SECRET"]

PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
       "-----END RSA PRIVATE KEY-----")
# (entity, text, the planted value). Secrets are random-looking but obviously synthetic.
SAMPLES = [
    ("EMAIL_ADDRESS", "Please reply to ana.garcia+billing@contoso.co.uk today.", "ana.garcia+billing@contoso.co.uk"),
    ("PHONE_NUMBER", "Call me back on (415) 555-2671 after lunch.", "(415) 555-2671"),
    ("PHONE_NUMBER", "Our Paris office: +33 1 42 68 53 00.", "+33 1 42 68 53 00"),
    ("CREDIT_CARD", "Card 4111 1111 1111 1111 was declined.", "4111 1111 1111 1111"),
    ("CREDIT_CARD", "Amex 3782-822463-10005 on file.", "3782-822463-10005"),
    ("CREDIT_CARD", "New Mastercard 2221 0012 3412 3450 issued.", "2221 0012 3412 3450"),
    ("US_SSN", "Employee SSN 219-09-9999 verified.", "219-09-9999"),
    ("US_SSN", "SSN: 219099998 on the W-4.", "219099998"),
    ("IBAN_CODE", "Pay to DE89 3704 0044 0532 0130 00 by Friday.", "DE89 3704 0044 0532 0130 00"),
    ("IBAN_CODE", "IBAN GB82WEST12345698765432 confirmed.", "GB82WEST12345698765432"),
    ("IP_ADDRESS", "Login from 192.168.14.201 was blocked.", "192.168.14.201"),
    ("IP_ADDRESS", "Peer 2001:db8:85a3::8a2e:370:7334 disconnected.", "2001:db8:85a3::8a2e:370:7334"),
    ("SECRET", "aws_access_key_id = AKIAZ7QW3RT5YU2IO4PA", "AKIAZ7QW3RT5YU2IO4PA"),
    ("SECRET", "export GITHUB_TOKEN=ghp_Xq7Lk2Vb9Nc4Mz8Ps1Dt6Rw3Yh5Jf0GaUe2K",
     "ghp_Xq7Lk2Vb9Nc4Mz8Ps1Dt6Rw3Yh5Jf0GaUe2K"),
    ("SECRET", "bot token xoxb-123456789012-1234567890123-Qw3Er5Ty7Ui9Op1As3Df5Gh7",
     "xoxb-123456789012-1234567890123-Qw3Er5Ty7Ui9Op1As3Df5Gh7"),
    ("SECRET", "OPENAI_API_KEY=sk-proj-Zx9Cv8Bn7Mq6Wl5Ek4Rj3Th2Yg1Uf0IdPoLkJhGf",
     "sk-proj-Zx9Cv8Bn7Mq6Wl5Ek4Rj3Th2Yg1Uf0IdPoLkJhGf"),
    ("SECRET", "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzdmMtOTEifQ.Pq3Rs5Tu7Vw9Xy1Za3Bc5De7Fg",
     "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzdmMtOTEifQ.Pq3Rs5Tu7Vw9Xy1Za3Bc5De7Fg"),
    ("SECRET", '{"id": 7, "client_secret": "Vb8Nm2Qw4Er6Ty8Ui0Op2As4Df6Gh8Jk"}',
     "Vb8Nm2Qw4Er6Ty8Ui0Op2As4Df6Gh8Jk"),
    ("SECRET", "the API key is 9f8e7d6c5b4a39281706f5e4d3c2b1a0", "9f8e7d6c5b4a39281706f5e4d3c2b1a0"),
    ("SECRET", f"key:\n{PEM}\n", PEM),
    ("PERSON", "Escalated to Priya Raman in the Mumbai office.", "Priya Raman"),
    ("PERSON", "Dear Kwame Mensah,\n\nyour refund is on its way.", "Kwame Mensah"),
]

# Look-alikes that must not be flagged as any structured type.
NEGATIVES = [
    "Order ORD-2024-88123 shipped on 2024-03-15 and invoice INV-004512 is due 03/15/2024.",
    "Card 4111 1111 1111 1112 fails the Luhn check.",
    "Placeholder SSNs 000-12-3456, 666-12-3456, 912-34-5678 and 123-45-6789 are never issued.",
    "ZIP+4 94107-1234 and case 00912345 are not SSNs.",
    "IBAN DE88 3704 0044 0532 0130 00 has a wrong check digit.",
    "Upgraded to v2.14.3 then 1.21.0 (release 2024.3), build took 1523 ms on port 8443.",
    "request_id=3f2c9a1e-7b4d-4e2a-9c1f-0d8e6b5a4c3b commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
    "max_tokens=4096 token_count: 2048 password_reset=true session_timeout=3600",
    "api_key=<redacted> secret: ${VAULT_SECRET} password: ******** token=refreshed",
    "The total was $1,234.56 at 14:32:07 on 12.12.2022 for 3 items.",
]


def redacted(redactor: PiiRedactor, text: str) -> str:
    """The rewritten text of a record that must not be dropped."""
    out = redactor.redact(text).text
    assert out is not None
    return out


@pytest.fixture(scope="module")
def redactor() -> PiiRedactor:
    """Redact mode (``<TYPE>`` placeholders; surrogates: test_pii_surrogates.py); the first one built loads
    spaCy (seconds), the rest share it."""
    return PiiRedactor(PiiConfig(mode="redact"))


@pytest.mark.parametrize(("entity", "text", "value"), SAMPLES, ids=[f"{e}-{i}" for i, (e, _, _) in enumerate(SAMPLES)])
def test_each_entity_type_is_detected_and_redacted(redactor: PiiRedactor, entity: str, text: str, value: str) -> None:
    assert redactor.redact(text).found == {entity: 1}
    out = redacted(redactor, text)
    assert value not in out
    assert f"<{entity}>" in out
    detection = redactor.detect(text)[0]
    assert text[detection.start:detection.end] == value


def test_redact_keeps_the_text_around_placeholders(redactor: PiiRedactor) -> None:
    text = "Mail ana@contoso.com or call (415) 555-2671; card 4111 1111 1111 1111."
    assert redactor.redact(text).text == "Mail <EMAIL_ADDRESS> or call <PHONE_NUMBER>; card <CREDIT_CARD>."


def test_text_without_pii_is_returned_unchanged(redactor: PiiRedactor) -> None:
    text = "The nightly build finished and all tests passed."
    assert redactor.redact(text) == type(redactor.redact(text))(text=text, found={}, dropped=False)
    assert redactor.redact("").text == ""


@pytest.mark.parametrize("text", NEGATIVES)
def test_negatives_are_not_flagged(text: str) -> None:
    structured_only = PiiRedactor(PiiConfig(mode="redact", entities=STRUCTURED))
    assert structured_only.redact(text).found == {}


def test_tag_mode_wraps_the_original_value() -> None:
    tagger = PiiRedactor(PiiConfig(mode="tag"))
    result = tagger.redact("Mail ana@contoso.com or call (415) 555-2671.")
    assert result.text == ("Mail <EMAIL_ADDRESS>ana@contoso.com</EMAIL_ADDRESS> or call "
                           "<PHONE_NUMBER>(415) 555-2671</PHONE_NUMBER>.")
    assert result.found == {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}


def test_drop_record_mode_drops_records_with_pii_only() -> None:
    dropper = PiiRedactor(PiiConfig(mode="drop_record"))
    dropped = dropper.redact("Card 4111 1111 1111 1111, SSN 219-09-9999.")
    assert (dropped.text, dropped.dropped, dropped.found) == (None, True, {"CREDIT_CARD": 1, "US_SSN": 1})
    kept = dropper.redact("Nothing to see here.")
    assert (kept.text, kept.dropped) == ("Nothing to see here.", False)


def test_only_configured_entities_are_touched() -> None:
    emails_only = PiiRedactor(PiiConfig(mode="redact", entities=["EMAIL_ADDRESS"]))
    assert emails_only.redact("ana@contoso.com, 4111 1111 1111 1111").text == "<EMAIL_ADDRESS>, 4111 1111 1111 1111"


def test_redact_many_matches_redact(redactor: PiiRedactor) -> None:
    texts = [r.text for r in generate_records(40, seed=5)] + [""]
    assert list(redactor.redact_many(iter(texts))) == [redactor.redact(t) for t in texts]


# --- pseudonyms -----------------------------------------------------------------------------------

def _tokens(text: str) -> list[str]:
    return re.findall(r"<[A-Z_]+_[0-9a-f]{10}>", text)


def test_pseudonyms_are_consistent_within_a_salt() -> None:
    pseudo = PiiRedactor(PiiConfig(pseudonymize=True, salt="dataset-7f3a"))
    first = redacted(pseudo, "Mail Ana@Contoso.com, call (415) 555-2671, card 4111 1111 1111 1111.")
    again = redacted(pseudo, "card 4111-1111-1111-1111 again; +1 415 555 2671; ana@contoso.com")
    a, b = _tokens(first), _tokens(again)
    assert len(a) == 3 and a[0].startswith("<EMAIL_ADDRESS_") and a[2].startswith("<CREDIT_CARD_")
    assert sorted(a) == sorted(b)   # same values in other spellings -> same tokens
    other = redacted(pseudo, "Mail bo@contoso.com")
    assert _tokens(other)[0] != a[0]


def test_pseudonyms_differ_across_salts() -> None:
    text = "Mail ana@contoso.com and 192.168.14.201"
    one = _tokens(redacted(PiiRedactor(PiiConfig(pseudonymize=True, salt="salt-one")), text))
    two = _tokens(redacted(PiiRedactor(PiiConfig(pseudonymize=True, salt="salt-two")), text))
    assert len(one) == len(two) == 2 and set(one).isdisjoint(two)


def test_pseudonymize_requires_a_salt_and_never_shows_it() -> None:
    with pytest.raises(ValueError, match="needs a per-dataset salt"):
        PiiRedactor(PiiConfig(pseudonymize=True))
    config = PiiConfig(pseudonymize=True, salt="s3cr3t-salt")
    assert "s3cr3t-salt" not in repr(config)
    assert "s3cr3t-salt" not in config.model_dump_json()   # config JSON and its hash never carry it
    assert PiiConfig(pseudonymize=True).model_copy(update={"salt": "s3cr3t-salt"}).salt == "s3cr3t-salt"


def test_config_rejects_unknown_entities() -> None:
    with pytest.raises(pydantic.ValidationError, match="unknown PII entity types"):
        PiiConfig(entities=["EMAIL_ADDRESS", "PASSPORT"])


# --- overlaps -------------------------------------------------------------------------------------

def test_overlapping_detections_merge_into_one_span_with_the_best_label() -> None:
    spans = [Detection("PERSON", 10, 14, 0.55), Detection("IP_ADDRESS", 0, 30, 0.6),   # NER junk inside an IP
             Detection("PHONE_NUMBER", 40, 52, 0.4), Detection("CREDIT_CARD", 38, 57, 1.0),
             Detection("EMAIL_ADDRESS", 60, 70, 1.0), Detection("PERSON", 70, 75, 0.55)]   # adjacent: kept apart
    assert resolve_overlaps(spans) == [Detection("IP_ADDRESS", 0, 30, 0.6), Detection("CREDIT_CARD", 38, 57, 1.0),
                                       Detection("EMAIL_ADDRESS", 60, 70, 1.0), Detection("PERSON", 70, 75, 0.55)]
    chain = [Detection("SECRET", 0, 10, 0.75), Detection("PERSON", 8, 20, 0.55), Detection("SECRET", 18, 25, 0.9)]
    assert resolve_overlaps(chain) == [Detection("SECRET", 0, 25, 0.9)]
    ties = [Detection("US_SSN", 0, 9, 0.5), Detection("PHONE_NUMBER", 0, 11, 0.5)]
    assert resolve_overlaps(ties) == [Detection("PHONE_NUMBER", 0, 11, 0.5)]


def test_output_is_never_garbled_on_a_dense_record(redactor: PiiRedactor) -> None:
    text = ("From: Priya Raman (priya.raman@contoso.co.uk), tel +44 20 7946 0958, card 4111-1111-1111-1111, "
            "IBAN GB82 WEST 1234 5698 7654 32, src=2001:db8:85a3::8a2e:370:7334, password=Tr0ub4dor&3xQ")
    out = redacted(redactor, text)
    assert re.fullmatch(r"[^<>]*(?:<[A-Z_]+>[^<>]*)*", out), out   # only whole, non-nested placeholders
    for value in ("priya.raman", "7946", "4111", "WEST", "8a2e", "Tr0ub4dor"):
        assert value not in out


# --- validators -----------------------------------------------------------------------------------

def test_luhn_validation() -> None:
    cards = LuhnCreditCardRecognizer()
    assert cards.validate_result("4111 1111 1111 1111")
    assert not cards.validate_result("4111 1111 1111 1112")
    assert cards.invalidate_result("4222222222222")        # 13 digits: passes Luhn, too short for us
    rng = random.Random(3)
    for _ in range(50):
        payload = "4" + "".join(rng.choice("0123456789") for _ in range(14))
        assert cards.validate_result(payload + luhn_check_digit(payload))


def test_iban_validation() -> None:
    ibans = QuietIbanRecognizer()
    assert ibans.validate_result("DE89 3704 0044 0532 0130 00")
    assert not ibans.validate_result("DE88 3704 0044 0532 0130 00")
    assert not ibans.validate_result("DE89 3704 0044 0532 0130 0É")
    assert iban_check_digits("GB", "WEST12345698765432") == "82"
    rng = random.Random(4)
    for country in ("DE", "GB", "FR", "NL", "ES", "IT", "CH", "BE", "PL", "SE", "AT", "IE"):
        assert ibans.validate_result(make_iban(rng, country)), country


def test_ssn_validation() -> None:
    ssns = StrictUsSsnRecognizer()
    assert not ssns.invalidate_result("219-09-9999")
    for never_issued in ("000-12-3456", "666-12-3456", "912-34-5678", "219-00-9999", "219-09-0000", "123-45-6789"):
        assert ssns.invalidate_result(never_issued), never_issued


def test_secret_values_must_look_random() -> None:
    for value in ("Tr0ub4dor&3xQ", "9f8e7d6c5b4a39281706f5e4d3c2b1a0", "wJalrXUtnFEMI/K7MDENG/bPxRfiCY7k2Lq9"):
        assert looks_random(value), value
    for value in ("enabled", "2048", "reset-required", "<redacted>", "${VAULT_SECRET}", "aaaaaaaaA1"):
        assert not looks_random(value), value


# --- privacy of the stage itself ------------------------------------------------------------------

def test_matched_text_never_reaches_the_logs(redactor: PiiRedactor, caplog: pytest.LogCaptureFixture) -> None:
    values = [value for _, _, value in SAMPLES]
    with caplog.at_level(logging.DEBUG):
        list(redactor.redact_many(text for _, text, _ in SAMPLES))
        PiiRedactor(PiiConfig(mode="tag")).redact(SAMPLES[0][1])
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert not [v for v in values if v in logged]


NO_NETWORK_SCRIPT = textwrap.dedent("""
    import socket
    import sys

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:2])   # recorded even if a library swallows the error
        raise OSError("network access attempted")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse

    from services.common.pii import PiiConfig, PiiRedactor

    redactor = PiiRedactor(PiiConfig(mode="redact"))
    result = redactor.redact("Write to ana@contoso.co.uk or bo@example.museum from 10.0.0.7.")
    print(result.text)
    sys.exit(f"{len(attempts)} network attempts" if attempts else 0)
""")


def test_detection_runs_without_network_or_a_suffix_list_cache(tmp_path: Path) -> None:
    """In a fresh process whose sockets refuse to connect and whose caches are empty."""
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "TLDEXTRACT_CACHE": str(tmp_path / "tld"), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", NO_NETWORK_SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "Write to <EMAIL_ADDRESS> or <EMAIL_ADDRESS> from <IP_ADDRESS>."
    assert not any(tmp_path.rglob("*.json")), "tldextract wrote a suffix-list cache"
