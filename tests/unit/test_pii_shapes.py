"""Phone numbers by shape, key families, names from many cultures, and title-case words that are not names."""

from __future__ import annotations

import pytest

from services.common.pii import PiiConfig, PiiRedactor
from services.common.pii.name_lexicon import name_lexicon
from services.common.pii.phone_recognizers import phone_shape, shape_score

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def redactor() -> PiiRedactor:
    return PiiRedactor(PiiConfig(mode="redact"))


def _found(redactor: PiiRedactor, text: str, entity: str) -> list[str]:
    return [text[d.start:d.end] for d in redactor.detect(text) if d.entity == entity]


# Numbers phonenumbers rejects (unassigned area code, 555-01xx, a digit missing or extra)
# or does not read (random +CC groups, national numbers of other regions).
@pytest.mark.parametrize(("text", "value"), [
    ("Call me at (123) 456-7890 tomorrow.", "(123) 456-7890"),
    ("Support line 212-555-0147, ask for billing.", "212-555-0147"),
    ("mobile: 415.555.267", "415.555.267"),
    ("phone 415-555-26711 (typo in the form)", "415-555-26711"),
    ("WhatsApp +234 80 3312 44", "+234 80 3312 44"),
    ("Tel: +44 (0)20 1234 567 ext. 12", "+44 (0)20 1234 567 ext. 12"),
    ("reach me at 0123 456789", "0123 456789"),
    ("☎ 1-911-555-0100", "1-911-555-0100"),
    ("cell 5550123", None),
])
def test_phone_shaped_numbers_are_flagged_without_phonenumbers_validity(
        redactor: PiiRedactor, text: str, value: str | None) -> None:
    found = _found(redactor, text, "PHONE_NUMBER")
    if value is None:
        assert found == []          # a bare 7-digit run stays an id, even after a context word
    else:
        assert found == [value]


@pytest.mark.parametrize("text", [
    "order 415-555-2671 shipped", "case #415-555-2671 closed", "invoice 212.555.0147 paid", "#4155552671",
    "released on 2024-11-28 at 10:30:15", "date 12.12.2022", "host 192.168.100.200 is up", "version 10.2.3.4567",
    "build 2024.11.28.1", "ZIP 94107-1234", "total $1,234,567.89", "EUR 123.45", "card 4111 1111 1111 1112",
    "IBAN NL58 DTFL 4747 2665 15", "SSN 123-45-6789", "id 12345678901234567890", "PO-3105020",
    "2024-05-25T06:16:37Z", "a run 415-555-2671-9999 of digits",
])
def test_things_that_are_not_phone_numbers_stay(redactor: PiiRedactor, text: str) -> None:
    assert _found(redactor, text, "PHONE_NUMBER") == []


def test_phone_shape_scores_strong_weak_and_rejected() -> None:
    assert shape_score(phone_shape("+49 30 1234567")) == pytest.approx(0.45)
    assert shape_score(phone_shape("555-0123")) == pytest.approx(0.1)        # needs a context word
    assert shape_score(phone_shape("2024-11-28")) is None
    assert shape_score(phone_shape("1.2.3")) is None


# Key families by their documented shapes; values are random-looking but synthetic.
KEYS = [
    "AKIA0189ABCDEF2345GH", "ASIA9Z8Y7X6W5V4U3T2S", "AROA1B2C3D4E5F6G7H8I",
    "glpat-Xy7Kd9Lm2Qp4Rs6Tv8Wz", "npm_Ab3De5Gh7Jk9Mn1Pq3St5Vw7Yz9Bc1Ef3HiJ",
    "pypi-AgEIcHlwaS5vcmcCJGE3ZjQ1YjEyLTk4NzYtNDMyMS1hYmNkLWVmMDEyMzQ1Njc4OQACKlsz",
    "SK0123456789abcdef0123456789abcdef", "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",
    "key-0123456789abcdef0123456789abcdef", "hf_AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh",
    "dapi0123456789abcdef0123456789abcdef", "shpat_0123456789abcdef0123456789abcdef",
    "dop_v1_" + "0123456789abcdef" * 4,
    "ATATT3xFfGF0" + "Ab3De5Gh7Jk9Mn1Pq3St5Vw7Yz9Bc1Ef3Hi" * 5 + "=0A1B2C3D",
]


@pytest.mark.parametrize("key", KEYS)
def test_key_families_are_secrets(redactor: PiiRedactor, key: str) -> None:
    text = f"leaked in the ticket: {key} please rotate"
    assert _found(redactor, text, "SECRET") == [key]


def test_context_dependent_and_embedded_secrets(redactor: PiiRedactor) -> None:
    aws_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYz9Kq3Lm5Np"
    assert _found(redactor, f"aws secret access key: {aws_secret}", "SECRET") == [aws_secret]
    commit = "3f786850e387550fdab836ed7e6dc881de23001b"
    assert _found(redactor, f"secrets-scan clean at commit {commit}", "SECRET") == []
    account_key = "Zx9Cv8Bn7Mq6Wl5Ek4Rj3Th2Yg1Uf0IdPoLkJhGfDsAq1Ws2Ed3Rf4Tg5Yh6Uj7Ik8Ol9P0Zx9Cv8Bn7Mq6Wl5E=="
    text = f"DefaultEndpointsProtocol=https;AccountName=prod;AccountKey={account_key};EndpointSuffix=core.windows.net"
    assert _found(redactor, text, "SECRET") == [account_key]
    url = "postgres://app:Tr4v3l-Gn0me@db.internal:5432/app"
    assert _found(redactor, url, "SECRET") == ["Tr4v3l-Gn0me"]
    assert _found(redactor, url, "EMAIL_ADDRESS") == []
    assert _found(redactor, "https://user:password@example.com/x", "SECRET") == []   # a placeholder


def test_filler_keys_are_not_secrets(redactor: PiiRedactor) -> None:
    assert _found(redactor, "aws_access_key_id = AKIAXXXXXXXXXXXXXXXX", "SECRET") == []
    assert _found(redactor, "docs use AKIAIOSFODNN7EXAMPLE", "SECRET") == []


@pytest.mark.parametrize(("text", "name"), [
    ("Performance review for Oluwadamilare Ogunbiyi moved to Friday.", "Oluwadamilare Ogunbiyi"),
    ("Escalated to Chukwuemeka Nwachukwu (tier 2).", "Chukwuemeka Nwachukwu"),
    ("Please ask Senthil Kumaravel to sign.", "Senthil Kumaravel"),
    ("The contract for Nguyễn Thị Mai is attached.", "Nguyễn Thị Mai"),
    ("Thanh: can someone rotate this?", "Thanh"),
    ("Hi Aminu,\n\nthanks for the update.", "Aminu"),
    ("I'll pair with Kwabena tomorrow.", "Kwabena"),
    ("Refund approved for Tharindu Wijesinghe's account.", "Tharindu Wijesinghe"),
])
def test_names_from_many_traditions_are_found(redactor: PiiRedactor, text: str, name: str) -> None:
    assert _found(redactor, text, "PERSON") == [name]


@pytest.mark.parametrize("text", [
    "Keys were rotated on Monday. Checksum verified.\n\nThanks,\nRegards",
    "Kafka and Jenkins are green; Grafana Loki is down again.",
    "The Billing Portal page crashed at 10:30.",
    "Red Hat looks fine after the upgrade.",
    "Onboarding: start date moved.",
    "User: hello\nAssistant: Hi! How can I help?",
    "Dear Customer Support,\n\nthe Release Notes are out.",
])
def test_title_case_words_are_not_people(redactor: PiiRedactor, text: str) -> None:
    assert _found(redactor, text, "PERSON") == []


def test_the_name_lexicon_separates_names_from_words() -> None:
    lexicon = name_lexicon()
    assert lexicon.is_name("Nguyen") and lexicon.is_name("Nguyễn") and lexicon.is_given_name("Kwame")
    assert lexicon.is_common("checksum") and lexicon.is_common("Keys") and lexicon.is_common("Regards")
    assert not lexicon.is_common("Grace")            # a name first: "Grace Hopper"
    assert lexicon.is_core_common("Kafka") and not lexicon.is_name("he")


def test_a_record_longer_than_spacys_limit_is_still_treated() -> None:
    """spaCy refuses texts over 1,000,000 characters by default; the parser's limit allows more."""
    from services.common.pii import PiiConfig, PiiRedactor

    text = "Hi Priya Raman, call me on (415) 555-2671. " + "lorem ipsum dolor " * 60_000
    assert len(text) > 1_000_000
    redactor = PiiRedactor(PiiConfig(mode="redact"))
    for result in (redactor.redact(text), next(redactor.redact_many([text]))):
        assert result.text is not None and result.text.startswith("Hi <PERSON>, call me on <PHONE_NUMBER>.")
