"""Surrogate mode: realistic, format-preserving, consistent fakes instead of ``<TYPE>`` placeholders."""

from __future__ import annotations

import ipaddress
import random
import re
import statistics
import string

import email_validator
import phonenumbers
import pydantic
import pytest

from privtune.v1 import curation_config_pb2 as pb
from services.curation.config import CurationConfig, from_message
from services.common.pii import Detection, PiiConfig, PiiRedactor, resolve_overlaps
from services.common.pii.fake_names import name_lists, script_of
from services.common.pii.pseudonyms import normalize
from services.common.pii.surrogates import iban_check_digits, luhn_check_digit, surrogate

pytestmark = pytest.mark.unit

SALT, OTHER_SALT = "version-1-salt", "version-2-salt"
DOC_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]
N = 300   # generated values per type in the property tests


def luhn_ok(digits: str) -> bool:
    return luhn_check_digit(digits[:-1]) == digits[-1]


def iban_ok(iban: str) -> bool:
    compact = iban.replace(" ", "").upper()
    return int("".join(str(int(c, 36)) for c in compact[4:] + compact[:4])) % 97 == 1


def words(text: str) -> set[str]:
    return {w.casefold() for w in re.split(r"[\s'’.-]+", text) if w}


# --- generators: a few hundred plausible values per type ---------------------------------------------

LATIN_GIVEN = ["Ana", "John", "Priya", "Kwame", "Sven", "José", "Zoë", "Mehmet", "Siobhan", "Thanh", "Olu"]
LATIN_FAMILY = ["Smith", "García", "Raman", "Mensah", "Ødegaard", "O'Brien", "Nguyen", "Kowalczyk", "Yılmaz"]


def gen_names(rng: random.Random) -> list[str]:
    out = []
    for _ in range(N):
        shape = rng.randrange(4)
        given, family = rng.choice(LATIN_GIVEN), rng.choice(LATIN_FAMILY)
        name = [given, f"{given} {family}", f"{given[0]}. {family}",
                f"{given}-{rng.choice(LATIN_GIVEN)} {family}"][shape]
        out.append(name.upper() if rng.random() < 0.2 else name)
    return out


def gen_emails(rng: random.Random) -> list[str]:
    return [f"{rng.choice(LATIN_GIVEN).lower()}{rng.choice(['.', '_', '', '+'])}{rng.choice(LATIN_FAMILY).lower()}"
            f"{rng.choice(['', str(rng.randrange(100))])}@{rng.choice(['contoso.co.uk', 'gmail.com', 'globex.de'])}"
            .replace("'", "") for _ in range(N)]


def gen_phones(rng: random.Random) -> list[str]:
    formats = [phonenumbers.PhoneNumberFormat.NATIONAL, phonenumbers.PhoneNumberFormat.INTERNATIONAL,
               phonenumbers.PhoneNumberFormat.E164]
    out: list[str] = []
    while len(out) < N:
        region = rng.choice(["US", "GB", "FR", "IN", "BR", "DE", "JP", "NG"])
        example = phonenumbers.example_number(region)
        nsn = str(example.national_number)
        tail = "".join(rng.choice(string.digits) for _ in nsn[2:])
        number = phonenumbers.parse(f"+{example.country_code}{nsn[:2]}{tail}")
        if phonenumbers.is_valid_number(number):
            fmt = rng.choice(formats) if region in ("US", "GB", "FR", "IN", "BR") else formats[1]
            out.append(phonenumbers.format_number(number, fmt))
    return out


def gen_cards(rng: random.Random) -> list[str]:
    out = []
    for _ in range(N):
        prefix, length, groups = rng.choice([("4", 16, (4, 4, 4, 4)), ("51", 16, (4, 4, 4, 4)),
                                             ("2221", 16, (4, 4, 4, 4)), ("37", 15, (4, 6, 5)),
                                             ("6011", 16, (4, 4, 4, 4))])
        payload = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
        digits = payload + luhn_check_digit(payload)
        sep = rng.choice(["", " ", "-"])
        parts, i = [], 0
        for g in groups:
            parts.append(digits[i:i + g])
            i += g
        out.append(sep.join(parts))
    return out


IBAN_LAYOUTS = {"DE": "18n", "GB": "4a14n", "FR": "23n", "NL": "4a10n", "ES": "20n", "CH": "17n"}


def gen_ibans(rng: random.Random) -> list[str]:
    out = []
    for _ in range(N):
        country, layout = rng.choice(sorted(IBAN_LAYOUTS.items()))
        bban = "".join(rng.choice(string.ascii_uppercase if kind == "a" else string.digits)
                       for count, kind in re.findall(r"(\d+)([an])", layout) for _ in range(int(count)))
        iban = country + iban_check_digits(country, bban) + bban
        out.append(" ".join(iban[i:i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.5 else iban)
    return out


def gen_ssns(rng: random.Random) -> list[str]:
    return [f"{rng.randrange(1, 900):03d}{sep}{rng.randrange(1, 100):02d}{sep}{rng.randrange(1, 10000):04d}"
            for sep in (rng.choice(["-", " ", ".", ""]) for _ in range(N))]


def gen_ips(rng: random.Random) -> list[str]:
    out = []
    for i in range(N):
        if i % 2:
            out.append(str(ipaddress.IPv4Address(rng.getrandbits(32))))
        else:
            address = ipaddress.IPv6Address(rng.getrandbits(128))
            out.append(address.compressed if i % 4 else address.exploded)
    return out


def gen_secrets(rng: random.Random) -> list[str]:
    alnum = string.ascii_letters + string.digits

    def chars(alphabet: str, n: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(n))
    makers = [lambda: "AKIA" + chars(string.ascii_uppercase + "234567", 16), lambda: "ghp_" + chars(alnum, 36),
              lambda: "sk-proj-" + chars(alnum, 40), lambda: chars("0123456789abcdef", 32),
              lambda: "xoxb-" + chars(string.digits, 12) + "-" + chars(string.digits, 13) + "-" + chars(alnum, 24),
              lambda: chars(alnum + "&%!", rng.randrange(8, 40))]
    return [rng.choice(makers)() for _ in range(N)]


SHAPES = {
    "US_SSN": re.compile(r"\d{3}([-. ]?)\d{2}\1\d{4}"),
    "CREDIT_CARD": re.compile(r"\d{4}([- ]?)(?:\d{4}\1\d{4}\1\d{4}|\d{6}\1\d{5})"),
    "IBAN_CODE": re.compile(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{1,4})+"),
    "EMAIL_ADDRESS": re.compile(r"[a-z0-9._+-]+@[a-z]+\.example\.(?:com|net|org)"),
}
GENERATORS = {"PERSON": gen_names, "EMAIL_ADDRESS": gen_emails, "PHONE_NUMBER": gen_phones, "CREDIT_CARD": gen_cards,
              "IBAN_CODE": gen_ibans, "US_SSN": gen_ssns, "IP_ADDRESS": gen_ips, "SECRET": gen_secrets}


def check_format(entity: str, original: str, fake: str) -> None:
    """The per-type format guarantees (docs/pii.md, "Surrogate mode")."""
    if entity in SHAPES:
        assert SHAPES[entity].fullmatch(fake), (original, fake)
    if entity in ("PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN"):   # punctuation and grouping kept
        assert re.sub(r"[0-9A-Za-z]", "#", fake) == re.sub(r"[0-9A-Za-z]", "#", original), (original, fake)
    if entity == "PERSON":
        assert len(fake.split()) == len(original.split()) and words(fake).isdisjoint(words(original))
        assert fake.isupper() == original.isupper()
    elif entity == "EMAIL_ADDRESS":
        email_validator.validate_email(fake, check_deliverability=False)
    elif entity == "PHONE_NUMBER":
        fake_number = phonenumbers.parse(fake, "US" if not fake.startswith("+") else None)
        region = "US" if not original.startswith("+") else None
        assert fake_number.country_code == phonenumbers.parse(original, region).country_code
    elif entity == "CREDIT_CARD":
        digits, fake_digits = re.sub(r"\D", "", original), re.sub(r"\D", "", fake)
        assert luhn_ok(fake_digits) and fake_digits[0] == digits[0]
        if digits[:2] in ("34", "37"):
            assert fake_digits[:2] == digits[:2]
        if 2221 <= int(digits[:4]) <= 2720:
            assert 2221 <= int(fake_digits[:4]) <= 2720
    elif entity == "IBAN_CODE":
        assert iban_ok(fake) and fake[:2] == original[:2] and len(fake) == len(original)
    elif entity == "US_SSN":
        digits = re.sub(r"\D", "", fake)
        assert digits[:3] not in ("000", "666") and digits[0] != "9" and digits[3:5] != "00" and digits[5:] != "0000"
    elif entity == "IP_ADDRESS":
        address = ipaddress.ip_address(fake)
        assert address.version == ipaddress.ip_address(original).version
        assert any(address in net for net in DOC_NETS if net.version == address.version), fake
    elif entity == "SECRET":
        assert len(fake) == len(original)
        assert [c.isdigit() for c in fake] == [c.isdigit() for c in original]
        if re.fullmatch(r"[0-9a-f]+", original):
            assert re.fullmatch(r"[0-9a-f]+", fake)
        for prefix in ("AKIA", "ghp_", "sk-proj-", "xoxb-"):
            assert fake.startswith(prefix) == original.startswith(prefix)


@pytest.mark.parametrize("entity", sorted(GENERATORS))
def test_property_no_original_survives_and_the_format_holds(entity: str) -> None:
    values = sorted(set(GENERATORS[entity](random.Random(f"surrogates-{entity}"))))
    differs_across_salts = 0
    for value in values:
        fake = surrogate(entity, value, SALT)
        assert value not in fake and fake != value
        check_format(entity, value, fake)
        assert surrogate(entity, value, SALT) == fake                  # a function of (value, salt)
        differs_across_salts += surrogate(entity, value, OTHER_SALT) != fake
    # IPv4 surrogates have 762 documentation addresses to choose from, so a few coincide by chance.
    assert differs_across_salts >= 0.97 * len(values)


# --- consistency ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("entity", "one", "other"), [
    ("PHONE_NUMBER", "(415) 555-0199", "+1 415 555 0199"),
    ("PHONE_NUMBER", "415-555-0199", "+14155550199"),
    ("EMAIL_ADDRESS", "Ana@X.com", "ana@x.com"),
    ("CREDIT_CARD", "4111 1111 1111 1111", "4111-1111-1111-1111"),
    ("IBAN_CODE", "DE89 3704 0044 0532 0130 00", "DE89370400440532013000"),
    ("US_SSN", "219-09-9999", "219 09 9999"),
    ("IP_ADDRESS", "2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
    ("PERSON", "John  Smith", "john smith"),
])
def test_spelling_variants_get_the_same_surrogate(entity: str, one: str, other: str) -> None:
    a, b = surrogate(entity, one, SALT), surrogate(entity, other, SALT)
    assert normalize(entity, a) == normalize(entity, b)
    assert normalize(entity, surrogate(entity, one, OTHER_SALT)) != normalize(entity, a)


def test_a_name_word_keeps_its_fake_across_mentions() -> None:
    """"Hi Priya" and "Priya Raman" are the same person to the model, as in the original."""
    full, given = surrogate("PERSON", "Priya Raman", SALT), surrogate("PERSON", "Priya", SALT)
    assert full.split()[0] == given
    assert surrogate("PERSON", "PRIYA", SALT) == given.upper()
    assert surrogate("PERSON", "priya raman", SALT) == full.lower()


def test_surrogates_are_reproducible_across_runs() -> None:
    """Pinned outputs: a change here changes every dataset version curated in surrogate mode."""
    assert surrogate("CREDIT_CARD", "4111 1111 1111 1111", "golden") == "4205 9822 5651 8618"
    assert surrogate("IP_ADDRESS", "10.0.0.7", "golden") == "192.0.2.146"
    assert surrogate("PERSON", "Ana Silva", "golden") == "Cori Moura"


def test_an_empty_salt_is_refused() -> None:
    with pytest.raises(ValueError, match="need a per-dataset salt") as caught:
        surrogate("PERSON", "Ana Silva", "")
    assert "Ana" not in str(caught.value)
    with pytest.raises(ValueError, match="mode='surrogate' needs a per-dataset salt"):
        PiiRedactor(PiiConfig())


# --- adversarial and edge cases ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Дмитрий Иванов", "محمد علي", "王伟", "김민준", "Αλέξανδρος Παπαδόπουλος",
                                  "प्रिया शर्मा", "Nguyễn Thị Minh Khai"])
def test_non_latin_names_get_fakes_in_the_same_script(name: str) -> None:
    fake = surrogate("PERSON", name, SALT)
    assert len(fake.split()) == len(name.split()) and words(fake).isdisjoint(words(name))
    assert [script_of(w) for w in fake.split()] == [script_of(w) for w in name.split()]


def test_every_script_offers_real_choice() -> None:
    lists = name_lists()
    for script in ("LATIN", "CYRILLIC", "GREEK", "ARABIC", "HEBREW", "CJK", "HANGUL", "DEVANAGARI"):
        assert len(lists[script].given) >= 30 and len(lists[script].family) >= 30, script


def test_non_latin_and_odd_values_fall_back_without_leaking() -> None:
    assert email_validator.validate_email(surrogate("EMAIL_ADDRESS", "дмитрий@почта.рф", SALT),
                                          check_deliverability=False)
    for entity, value in [("PHONE_NUMBER", "call me"), ("IBAN_CODE", "DE"), ("IP_ADDRESS", "999.1.1.1"),
                          ("US_SSN", "12-34"), ("CREDIT_CARD", "٤١١١ ١١١١ ١١١١ ١١١١")]:
        fake = surrogate(entity, value, SALT)
        assert fake != value and len(fake) == len(value)


def test_a_merged_overlap_span_is_replaced_whole() -> None:
    """Overlapping detections merge into one span of the best label; its surrogate still covers all of it."""
    text = "card 4111 1111 1111 1111 (415) 555-2671 from Priya Raman api_key=Tr0ub4dor&3xQ"
    merged = resolve_overlaps([Detection("CREDIT_CARD", 5, 24, 1.0), Detection("PHONE_NUMBER", 20, 39, 0.4),
                               Detection("PERSON", 45, 56, 0.55), Detection("SECRET", 50, 79, 0.75)])
    assert [(d.entity, d.start, d.end) for d in merged] == [("CREDIT_CARD", 5, 39), ("SECRET", 45, 79)]
    for d in merged:
        span = text[d.start:d.end]
        fake = surrogate(d.entity, span, SALT)
        assert len(fake) == len(span)
        for piece in ("4111", "2671", "555", "Priya", "Raman", "Tr0ub4dor"):
            assert piece not in fake


def test_very_long_values_keep_their_shape() -> None:
    rng = random.Random(9)
    body = "\n".join("".join(rng.choice(string.ascii_letters + string.digits + "+/") for _ in range(64))
                     for _ in range(256))
    pem = f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"
    fake = surrogate("SECRET", pem, SALT)
    assert len(fake) == len(pem) and fake.count("\n") == pem.count("\n")
    assert fake.startswith("-----BEGIN RSA PRIVATE KEY-----\n") and fake.endswith("\n-----END RSA PRIVATE KEY-----")
    assert not any(line in fake for line in body.splitlines())
    long_name = " ".join(rng.choice(LATIN_GIVEN) for _ in range(60)) + " Smith"
    fake_name = surrogate("PERSON", long_name, SALT)
    assert len(fake_name.split()) == 61 and words(fake_name).isdisjoint(words(long_name))
    digits = "4" + "1" * 400
    assert surrogate("CREDIT_CARD", digits, SALT) != digits


def test_length_says_nothing_beyond_what_the_format_fixes() -> None:
    """Name and e-mail fakes are list entries, so their length does not follow the original's.

    Structured types keep the original's length on purpose: the format fixes it (an IBAN's
    length is its country's, a card's its product's), and docs/pii.md says so.
    """
    short = [surrogate("PERSON", f"{a} {b}", SALT)
             for a in ("Al", "Bo", "Cy", "Di", "Ed") for b in ("Li", "Ng", "Xu")]
    long = [surrogate("PERSON", f"{a} {b}", SALT) for a in ("Maximiliana", "Bartholomew", "Christabella")
            for b in ("Wolfeschlegel", "Vanderbilt-Ross", "Papadopoulos", "Featherstonehaugh", "Montgomery")]
    assert abs(statistics.mean(map(len, short)) - statistics.mean(map(len, long))) < 4
    short_mail = [surrogate("EMAIL_ADDRESS", f"{a}@x.io", SALT) for a in ("al", "bo", "cy", "di", "ed", "fu", "gi")]
    long_mail = [surrogate("EMAIL_ADDRESS", f"{a}@x.io", SALT)
                 for a in ("maximiliana", "bartholomew", "christabella", "featherstonehaugh", "montgomery", "wolfgang")]
    assert abs(statistics.mean(len(m.split("@")[0]) for m in short_mail)
               - statistics.mean(len(m.split("@")[0]) for m in long_mail)) < 4
    v4 = [surrogate("IP_ADDRESS", ip, SALT) for ip in ("1.1.1.1", "1.2.3.4", "255.255.255.255", "100.200.100.200")]
    assert all(len(a) >= len("192.0.2.1") for a in v4)   # the documentation prefix, not the original, sets the length


# --- configuration and the redactor --------------------------------------------------------------------

def test_surrogate_is_the_default_for_every_recipe() -> None:
    assert PiiConfig().mode == "surrogate"
    for recipe in ("auto", "passthrough", "tickets_to_sft", "documents_to_qa"):
        assert CurationConfig(recipe=recipe).pii.mode == "surrogate"   # type: ignore[arg-type]
    assert from_message(pb.CurationConfig()).pii.mode == "surrogate"
    assert from_message(pb.CurationConfig(pii=pb.PiiSettings(mode=pb.PII_MODE_SURROGATE))).pii.mode == "surrogate"
    assert from_message(pb.CurationConfig(pii=pb.PiiSettings(mode=pb.PII_MODE_REDACT))).pii.mode == "redact"


def test_pseudonymize_keeps_meaning_redact() -> None:
    assert PiiConfig(pseudonymize=True).mode == "redact"
    assert from_message(pb.CurationConfig(pii=pb.PiiSettings(pseudonymize=True))).pii.mode == "redact"
    with pytest.raises(pydantic.ValidationError, match="pseudonymize applies to mode 'redact' only"):
        PiiConfig(mode="surrogate", pseudonymize=True)


@pytest.fixture(scope="module")
def surrogates() -> PiiRedactor:
    return PiiRedactor(PiiConfig(salt=SALT))


def test_the_redactor_writes_surrogates(surrogates: PiiRedactor) -> None:
    text = ("Hi John Smith, mail ana.garcia@contoso.co.uk or call (415) 555-2671; card 4111 1111 1111 1111, "
            "IBAN GB82 WEST 1234 5698 7654 32, SSN 219-09-9999, from 192.168.14.201, key AKIAZ7QW3RT5YU2IO4PA.")
    result = surrogates.redact(text)
    out = result.text
    assert out is not None and "<" not in out and ">" not in out
    for value in ("John", "Smith", "ana.garcia", "contoso", "555-2671", "4111 1111", "WEST", "219-09-9999",
                  "192.168.14.201", "Z7QW3RT5YU2IO4PA"):
        assert value not in out
    assert re.search(r"Hi \S+ \S+, mail \S+@\S+\.example\.(com|net|org) or call \(\d{3}\) \d{3}-\d{4}; card "
                     r"4\d{3} \d{4} \d{4} \d{4}, IBAN GB\d\d [A-Z]{4} \d{4} \d{4} \d{4} \d\d, SSN \d{3}-\d\d-\d{4}, "
                     r"from (192\.0\.2|198\.51\.100|203\.0\.113)\.\d+, key AKIA[A-Z2-7]{16}\.", out), out
    assert surrogates.redact(text) == result
    assert PiiRedactor(PiiConfig(salt=OTHER_SALT)).redact(text).text != out
