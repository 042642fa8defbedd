"""A seeded, labelled synthetic corpus for measuring the PII stage.

Records read like what enterprises fine-tune on -- support tickets, e-mails, HR notes,
service logs and team chat -- with every supported entity type planted at known
character spans, and *negatives*: strings that look like PII but are not (order ids,
Luhn-failing card numbers, SSNs with never-issued area numbers, IBANs with a bad
checksum, dates, version strings, commit hashes, ``max_tokens=4096``, tool names).
Negatives are not labelled, so anything detected on them counts against precision.

Values are generated, not sampled from real people: card numbers carry a valid Luhn
digit, IBANs a valid mod-97 checksum and country format. Phone numbers are either valid
per ``phonenumbers`` for their region or only *shaped* like one (unassigned area codes,
``555-01xx``, a digit missing or extra, random ``+CC`` groups). Secrets cover the common
key families by their documented shapes. Names come from hand-written lists per naming
tradition (:data:`NAMES_BY_CULTURE`), written independently of the name lists the
detector uses. Hard negatives include title-case ordinary words ("Keys", "Regards"),
product names, ZIP+4 codes, times, case numbers and dotted versions.

Each planted span carries a ``kind`` (the culture of a name, ``valid``/``shaped`` for a
phone number, the key family of a secret) so recall can be reported per kind.

    records = generate_records(2000, seed=0)   # same seed, same records, on any machine
"""

from __future__ import annotations

import ipaddress
import random
import re
import string
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers


@dataclass(frozen=True)
class PlantedSpan:
    """A planted entity: ``text[start:end]`` is a value of type ``entity``."""

    entity: str
    start: int
    end: int
    kind: str = ""      # sub-kind for per-kind recall: a name's culture, "shaped" phone numbers, key family


@dataclass(frozen=True)
class LabelledRecord:
    """One synthetic record with its ground truth."""

    text: str
    spans: tuple[PlantedSpan, ...]
    genre: str          # ticket, email, hr_note, log, chat
    negatives: int      # how many PII look-alikes were planted (not labelled)


FIRST_NAMES = (
    "James", "Olivia", "Liam", "Emily", "José", "María", "Carlos", "Lucía", "Alejandro", "Valentina",
    "Priya", "Arjun", "Ananya", "Rahul", "Deepika", "Sanjay", "Wei", "Mei", "Hiroshi", "Yuki",
    "Min-jun", "Ji-woo", "Thanh", "Chinedu", "Amara", "Kwame", "Ngozi", "Oluwaseun", "Fatou", "Tendai",
    "Mohammed", "Fatima", "Omar", "Layla", "Yusuf", "Zainab", "Dmitri", "Olga", "Katarzyna", "Piotr",
    "Svetlana", "Sven", "Ingrid", "Giulia", "Matteo", "Aroha", "Mehmet", "Elif", "Ioana", "Siobhan",
    "Niamh", "Thiago", "Camila", "Kofi", "Aisha", "Rohan", "Hana", "Lars", "Noa", "Ravi",
)
LAST_NAMES = (
    "Smith", "Johnson", "García", "Rodríguez", "Hernández", "Patel", "Sharma", "Iyer", "Chen", "Wang",
    "Li", "Tanaka", "Sato", "Kim", "Park", "Nguyen", "Tran", "Okafor", "Mensah", "Adeyemi",
    "Diallo", "Abdullah", "Haddad", "Al-Sayed", "Ivanova", "Kowalski", "Nowak", "Petrov", "Johansson",
    "Lindqvist", "Rossi", "Bianchi", "Müller", "Schmidt", "O'Brien", "Murphy", "Yılmaz", "Ngata",
    "Popescu", "Silva", "Santos", "Cohen", "Levi", "Dubois", "Moreau", "Banerjee", "Reddy", "Osei",
    "Mwangi", "Kuznetsov", "Fernandes", "Takahashi", "Choi", "Hussain", "Van der Berg", "Novak",
)
# Hand-written per naming tradition (given names, family names); never sampled from the
# detector's name lists. "indonesian" names are mononyms: one word is the whole name.
# "vietnamese" and "chinese" full names are written family name first.
NAMES_BY_CULTURE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "mixed": (FIRST_NAMES, LAST_NAMES),
    "yoruba": (("Adebayo", "Olumide", "Folasade", "Temitope", "Abimbola", "Babatunde", "Funmilayo", "Ayodele",
                "Omolara", "Kehinde", "Yetunde", "Damilola", "Oluwadamilare", "Titilayo"),
               ("Ogunleye", "Afolabi", "Balogun", "Oyelaran", "Adebisi", "Olawale", "Akinwande", "Ogundipe",
                "Fashola", "Adewale", "Oyedepo", "Babalola")),
    "igbo": (("Chiamaka", "Obinna", "Nnamdi", "Adaeze", "Ikechukwu", "Chidinma", "Emeka", "Uchenna", "Chinonso",
              "Ifeoma", "Ebuka", "Nkechi"),
             ("Eze", "Nwosu", "Okonkwo", "Obi", "Chukwu", "Nwachukwu", "Igwe", "Okoye", "Anyanwu", "Ezeh",
              "Onwuachu", "Nwankwo")),
    "hausa": (("Aminu", "Musa", "Hauwa", "Sani", "Abubakar", "Halima", "Lawal", "Maryam", "Nasiru", "Hadiza",
               "Bashir", "Rabi"),
              ("Danjuma", "Abdullahi", "Garba", "Usman", "Sule", "Yakubu", "Dantata", "Shehu", "Bala", "Tukur",
               "Gwarzo", "Kano")),
    "akan": (("Akosua", "Ama", "Yaw", "Abena", "Kwabena", "Adwoa", "Kwaku", "Efua", "Kwesi", "Akua", "Yaa",
              "Kojo"),
             ("Asante", "Boateng", "Owusu", "Agyeman", "Appiah", "Darko", "Amoah", "Ofori", "Acheampong",
              "Opoku", "Frimpong", "Antwi")),
    "tamil": (("Karthik", "Lakshmi", "Senthil", "Meenakshi", "Arul", "Kavitha", "Murugan", "Saravanan",
               "Revathi", "Selvi", "Thamizh", "Anbu"),
              ("Subramaniam", "Ramasamy", "Krishnan", "Annamalai", "Venkatesan", "Natarajan", "Palaniappan",
               "Sundaram", "Rajendran", "Muthusamy", "Kandasamy", "Arumugam")),
    "telugu": (("Srinivas", "Venkata", "Lavanya", "Sravani", "Mahesh", "Padma", "Nagarjuna", "Sirisha",
                "Chaitanya", "Bhavani", "Raghava", "Sowmya"),
               ("Naidu", "Rao", "Chowdary", "Varma", "Gollapudi", "Kondapalli", "Yarlagadda", "Bommireddy",
                "Nallamothu", "Pydipati", "Vemuri", "Tadepalli")),
    "bengali": (("Sourav", "Moumita", "Arnab", "Ishita", "Subhajit", "Tanushree", "Debashis", "Rituparna",
                 "Anirban", "Sharmila", "Sudipto", "Paromita"),
                ("Chatterjee", "Mukherjee", "Bhattacharya", "Ganguly", "Sen", "Bose", "Chakraborty", "Dasgupta",
                 "Ghosh", "Majumdar", "Sengupta", "Bhowmik")),
    "punjabi": (("Gurpreet", "Harjit", "Manpreet", "Jaspreet", "Simran", "Amrit", "Baljit", "Navjot", "Harleen",
                 "Kuldeep", "Parminder", "Rajvir"),
                ("Singh", "Kaur", "Sandhu", "Gill", "Dhillon", "Grewal", "Sidhu", "Brar", "Randhawa", "Cheema",
                 "Bajwa", "Virk")),
    "sinhala": (("Nuwan", "Dilini", "Chaminda", "Sanduni", "Kasun", "Tharindu", "Nadeeka", "Lahiru", "Ishara",
                 "Ruwan", "Chathura", "Hasini"),
                ("Perera", "Fernando", "Jayasuriya", "Wickramasinghe", "Bandara", "Dissanayake", "Gunawardena",
                 "Senanayake", "Herath", "Rathnayake", "Abeysekera", "Karunaratne")),
    "vietnamese": (("Minh", "Lan", "Huy", "Trang", "Nam", "Hoa", "Tuấn", "Hương", "Dũng", "Phương", "Khoa",
                    "Linh"),
                   ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Phan", "Vũ", "Đặng", "Bùi", "Đỗ", "Huỳnh", "Ngô")),
    "chinese": (("Xiaoming", "Jiayi", "Zihan", "Haoran", "Yuxuan", "Mingyu", "Xinyi", "Junjie", "Shuang",
                 "Lihua", "Zhiwei", "Yating"),
                ("Zhang", "Wang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Zhou", "Wu", "Xu", "Sun", "Ma")),
    "arabic": (("Khalid", "Noura", "Tariq", "Huda", "Faisal", "Rania", "Samir", "Leila", "Yousef", "Mariam",
                "Hamza", "Salma"),
               ("Al-Farsi", "Nasser", "El-Amin", "Khoury", "Mansour", "Al-Rashid", "Saleh", "Hamdan", "Bakr",
                "Al-Najjar", "Qureshi", "Aziz")),
    "slavic": (("Anastasia", "Bogdan", "Milena", "Vladimir", "Zofia", "Miroslav", "Jelena", "Stanislav",
                "Katarina", "Radek", "Oksana", "Dragan"),
               ("Kovalenko", "Petrović", "Wiśniewski", "Horvat", "Sokolov", "Dvořák", "Jovanović", "Kowalczyk",
                "Popov", "Shevchenko", "Zielinski", "Marković")),
    "turkish": (("Emre", "Zeynep", "Burak", "Ayşe", "Oğuz", "Mert", "Gülşen", "Serkan", "Derya", "Kerem",
                 "Selin", "Tuğba"),
                ("Kaya", "Demir", "Şahin", "Çelik", "Öztürk", "Aydın", "Arslan", "Doğan", "Kılıç", "Yıldız",
                 "Koç", "Erdoğan")),
    "indonesian": (("Sutrisno", "Suharti", "Wahyudi", "Mulyadi", "Sumarni", "Haryanto", "Supriyadi",
                    "Rahmawati", "Sudirman", "Purnomo", "Widodo", "Suparman"), ()),
}
_FAMILY_FIRST = {"vietnamese", "chinese"}
DOMAINS = ("northwind.io", "contoso.co.uk", "globex.de", "initech.com", "umbrella-health.org", "gmail.com",
           "outlook.com", "yahoo.co.jp", "web.de", "rediffmail.com", "acme-bank.fr", "tailspin.com.au")
# Title-case words and product names that are not people (hard negatives for PERSON).
TITLE_WORDS = ("Keys", "Checksum", "Thanks", "Regards", "Settings", "Dashboard", "Release Notes", "Grafana Loki",
               "Visual Studio Code", "Google Sheets", "Power BI", "Jira Service Management", "Cloud Storage",
               "Customer Success", "Billing Portal", "Single Sign-On", "Quick Start", "Red Hat", "Snowflake",
               "Tableau", "Zendesk", "HubSpot")
TOOLS = ("Kubernetes", "Jenkins", "Grafana", "PostgreSQL", "Terraform", "Ansible", "Kafka", "Redis", "Airflow",
         "Datadog", "Sentry", "Vault")


class _Record:
    """Accumulates text segments and the spans of the labelled ones."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.parts: list[str] = []
        self.length = 0
        self.spans: list[PlantedSpan] = []
        self.negatives = 0
        self.person: tuple[str, str] = ("", "")

    def add(self, text: str, entity: str | None = None, kind: str = "") -> None:
        if entity:
            self.spans.append(PlantedSpan(entity, self.length, self.length + len(text), kind))
        self.parts.append(text)
        self.length += len(text)


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _chars(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _ascii(name: str) -> str:
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower().replace(" ", "")


def luhn_check_digit(payload: str) -> str:
    """The digit that makes ``payload + digit`` pass the Luhn checksum."""
    total = 0
    for i, d in enumerate(reversed(payload)):
        n = int(d) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return str((10 - total % 10) % 10)


def iban_check_digits(country: str, bban: str) -> str:
    """ISO 13616 check digits: 98 - (BBAN + country + "00" as a number) mod 97."""
    rearranged = (bban + country + "00").upper()
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    return f"{98 - int(numeric) % 97:02d}"


# --- planted entities -----------------------------------------------------------------------------

def _culture(rng: random.Random) -> str:
    """Half the names from the mixed list, half from one of the other traditions."""
    return "mixed" if rng.random() < 0.5 else rng.choice(sorted(set(NAMES_BY_CULTURE) - {"mixed"}))


def _person(r: _Record) -> None:
    culture = _culture(r.rng)
    firsts, lasts = NAMES_BY_CULTURE[culture]
    first = r.rng.choice(firsts)
    if not lasts:                                   # mononym
        r.person = (first, first)
        r.add(first, "PERSON", culture)
        return
    last = r.rng.choice(lasts)
    r.person = (first, last)
    if culture in _FAMILY_FIRST and r.rng.random() < 0.7:
        middle = r.rng.choice(firsts) + " " if culture == "vietnamese" and r.rng.random() < 0.5 else ""
        r.add(f"{last} {middle}{first}", "PERSON", culture)
    elif r.rng.random() < 0.1:
        r.add(f"{first} {r.rng.choice(string.ascii_uppercase)}. {last}", "PERSON", culture)
    else:
        r.add(f"{first} {last}", "PERSON", culture)


def _first_name(r: _Record) -> None:
    culture = _culture(r.rng)
    firsts, lasts = NAMES_BY_CULTURE[culture]
    r.person = (r.rng.choice(firsts), r.rng.choice(lasts or firsts))
    r.add(r.person[0], "PERSON", culture)


def _email(r: _Record) -> None:
    first, last = r.person if r.person[0] and r.rng.random() < 0.6 else (r.rng.choice(FIRST_NAMES),
                                                                        r.rng.choice(LAST_NAMES))
    if not _ascii(first).isalpha() or not _ascii(last).replace("-", "").isalpha():
        first, last = r.rng.choice(FIRST_NAMES), r.rng.choice(LAST_NAMES)
    first, last = _ascii(first), _ascii(last)
    local = r.rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}{_digits(r.rng, 2)}",
                          f"{first}.{last}+billing", f"{last}_{first}"])
    if r.rng.random() < 0.1:
        r.add("mailto:")
    r.add(f"{local}@{r.rng.choice(DOMAINS)}", "EMAIL_ADDRESS")


_US_AREA_CODES = ("212", "415", "312", "617", "206", "512", "303", "404", "305", "702", "646", "213")
_PHONE_REGIONS = ("GB", "DE", "FR", "IN", "CA", "BR", "AU", "JP", "NG", "MX", "SG")


def _shaped_phone(rng: random.Random) -> str:
    """A number written like a phone number that ``phonenumbers`` rejects or would not read."""
    kind = rng.randrange(5)
    if kind == 0:                                   # unassigned or reserved NANP area code
        nsn = rng.choice(["123", "099", "211", "311", "911", "370", "960", "037"]) + _digits(rng, 7)
    elif kind == 1:                                 # fictional 555-01xx
        nsn = rng.choice(_US_AREA_CODES) + "55501" + _digits(rng, 2)
    elif kind == 2:                                 # a digit missing or one too many
        nsn = rng.choice(_US_AREA_CODES) + _digits(rng, rng.choice([6, 8]))
    elif kind == 3:                                 # +CC and random groups
        groups = [_digits(rng, rng.randint(2, 4)) for _ in range(3)]   # at most 15 digits with the +CC
        return f"+{rng.choice(['44', '49', '33', '91', '234', '62', '84', '90', '7'])} " + rng.choice(
            [" ", "-"]).join(groups)
    else:                                           # national trunk 0 with a random subscriber number
        return "0" + _digits(rng, rng.choice([3, 4])) + " " + _digits(rng, 6)
    a, b, c = nsn[:3], nsn[3:6], nsn[6:]
    return rng.choice([f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"+1 {a} {b} {c}", f"1-{a}-{b}-{c}"])


def _phone(r: _Record) -> None:
    rng = r.rng
    if rng.random() < 0.35:
        text = _shaped_phone(rng)
        if rng.random() < 0.1:
            text += f" ext. {rng.randint(100, 9999)}"
        r.add(text, "PHONE_NUMBER", "shaped")
        return
    if rng.random() < 0.5:
        while True:
            exchange = f"{rng.randint(2, 9)}{_digits(rng, 2)}"
            number = phonenumbers.parse(f"+1{rng.choice(_US_AREA_CODES)}{exchange}{_digits(rng, 4)}")
            if phonenumbers.is_valid_number(number) and exchange[1:] != "11":
                break
        nsn = phonenumbers.national_significant_number(number)
        text = rng.choice([phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL),
                           f"{nsn[:3]}-{nsn[3:6]}-{nsn[6:]}", f"{nsn[:3]}.{nsn[3:6]}.{nsn[6:]}",
                           f"+1 {nsn[:3]} {nsn[3:6]} {nsn[6:]}"])
    else:
        region = rng.choice(_PHONE_REGIONS)
        sample = phonenumbers.example_number_for_type(region, rng.choice([phonenumbers.PhoneNumberType.MOBILE,
                                                                          phonenumbers.PhoneNumberType.FIXED_LINE]))
        assert sample is not None, f"phonenumbers has no example number for {region}"
        example = phonenumbers.national_significant_number(sample)
        while True:
            keep = max(2, len(example) - 6)
            number = phonenumbers.parse(example[:keep] + _digits(rng, len(example) - keep), region)
            if phonenumbers.is_valid_number(number):
                break
        text = phonenumbers.format_number(number, rng.choice([phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                                                              phonenumbers.PhoneNumberFormat.E164]))
    if rng.random() < 0.1:
        text += f" ext. {rng.randint(100, 9999)}"
    r.add(text, "PHONE_NUMBER", "valid")


def _card_number(rng: random.Random) -> tuple[str, tuple[int, ...]]:
    kind = rng.choice(["visa", "visa", "mc", "mc2", "amex", "discover"])
    prefix, length, groups = {
        "visa": ("4", 16, (4, 4, 4, 4)), "mc": (f"5{rng.randint(1, 5)}", 16, (4, 4, 4, 4)),
        "mc2": (str(rng.randint(2221, 2720)), 16, (4, 4, 4, 4)), "amex": (rng.choice(["34", "37"]), 15, (4, 6, 5)),
        "discover": ("6011", 16, (4, 4, 4, 4)),
    }[kind]
    payload = prefix + _digits(rng, length - len(prefix) - 1)
    return payload + luhn_check_digit(payload), groups


def _format_groups(rng: random.Random, number: str, groups: tuple[int, ...]) -> str:
    sep = rng.choice([" ", " ", "-", ""])
    out, i = [], 0
    for g in groups:
        out.append(number[i:i + g])
        i += g
    return sep.join(out)


def _card(r: _Record) -> None:
    number, groups = _card_number(r.rng)
    r.add(_format_groups(r.rng, number, groups), "CREDIT_CARD")


def _ssn_digits(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"


def _ssn(r: _Record) -> None:
    d = _ssn_digits(r.rng)
    sep = r.rng.choice(["-"] * 8 + [" ", "."])
    r.add(f"{d[:3]}{sep}{d[3:5]}{sep}{d[5:]}", "US_SSN")


def _ssn_bare(r: _Record) -> None:
    r.add(_ssn_digits(r.rng), "US_SSN")


# country -> BBAN layout: n digits, a upper-case letters, c upper-case alphanumerics
_IBAN_LAYOUTS = {"DE": "18n", "GB": "4a14n", "FR": "10n11c2n", "NL": "4a10n", "ES": "20n", "IT": "1a10n12c",
                 "CH": "5n12c", "BE": "12n", "PL": "24n", "SE": "20n", "AT": "16n", "IE": "4a14n"}
_ALPHABETS = {"n": string.digits, "a": string.ascii_uppercase, "c": string.ascii_uppercase + string.digits}


def make_iban(rng: random.Random, country: str | None = None) -> str:
    """A random IBAN with a valid checksum and the country's BBAN format (compact)."""
    country = country or rng.choice(sorted(_IBAN_LAYOUTS))
    bban = "".join(_chars(rng, _ALPHABETS[kind], int(n))
                   for n, kind in re.findall(r"(\d+)([nac])", _IBAN_LAYOUTS[country]))
    return country + iban_check_digits(country, bban) + bban


def _group4(iban: str) -> str:
    return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))


def _iban(r: _Record) -> None:
    iban = make_iban(r.rng)
    r.add(_group4(iban) if r.rng.random() < 0.6 else iban, "IBAN_CODE")


def _ip(r: _Record) -> None:
    rng = r.rng
    if rng.random() < 0.25:
        address = ipaddress.IPv6Address(rng.getrandbits(128))
        text = address.exploded if rng.random() < 0.3 else str(address)
        if rng.random() < 0.5:   # documentation-style with a zero run: 2001:db8:85a3::8a2e:370:7334
            text = str(ipaddress.IPv6Address(f"2001:db8:{rng.getrandbits(16):x}::{rng.getrandbits(16):x}:"
                                             f"{rng.getrandbits(16):x}"))
    else:
        first = rng.choice([10, 172, 192, rng.randint(11, 223)])
        second = {10: rng.randint(0, 255), 172: rng.randint(16, 31), 192: 168}.get(first, rng.randint(0, 255))
        text = f"{first}.{second}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    suffix = "" if ":" in text else rng.choice(["", "", "", "", "", f":{rng.choice([22, 443, 8080])}",
                                                 f"/{rng.choice([16, 24, 32])}"])
    if suffix.startswith("/"):   # a CIDR prefix length is part of the address, a port is not
        text, suffix = text + suffix, ""
    r.add(text, "IP_ADDRESS")
    r.add(suffix)


_ALNUM = string.ascii_letters + string.digits
_B64 = _ALNUM + "+/"
_URLSAFE = _ALNUM + "-_"


def _jwt(rng: random.Random) -> str:
    return ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + "eyJ" + _chars(rng, _URLSAFE, rng.randint(30, 80)) + "."
            + _chars(rng, _URLSAFE, 43))


def _pem(rng: random.Random) -> str:
    kind = rng.choice(["RSA ", "EC ", "OPENSSH ", ""])
    body = "\n".join(_chars(rng, _B64, 64) for _ in range(rng.randint(3, 8)))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"


_UPPER_DIGITS = string.ascii_uppercase + string.digits
_HEX = "0123456789abcdef"


def _gcp_key_json(rng: random.Random) -> str:
    body = "\\n".join(_chars(rng, _B64, 64) for _ in range(rng.randint(3, 6)))
    return f"-----BEGIN PRIVATE KEY-----\\n{body}\\n-----END PRIVATE KEY-----\\n"


# key family -> (text before, the secret, text after)
_SECRET_KINDS: dict[str, Callable[[random.Random], tuple[str, str, str]]] = {
    "aws_key_id": lambda g: ("aws_access_key_id = ", "AKIA" + _chars(g, string.ascii_uppercase + "234567", 16), ""),
    "aws_key_id_any": lambda g: (g.choice(["key id ", "AWS key: ", "role creds "]),
                                 g.choice(["AKIA", "ASIA", "AROA", "AIDA", "AGPA", "ANPA"])
                                 + _chars(g, _UPPER_DIGITS, 16), ""),
    "aws_secret": lambda g: ("AWS_SECRET_ACCESS_KEY=", _chars(g, _B64, 40), ""),
    "aws_secret_near": lambda g: (g.choice(["aws secret access key: ", "the AWS secret is ", "aws creds "]),
                                  _chars(g, _B64, 40), ""),
    "github": lambda g: ("GITHUB_TOKEN=", "ghp_" + _chars(g, _ALNUM, 36), ""),
    "github_pat": lambda g: ("token ", f"github_pat_{_chars(g, _ALNUM, 22)}_{_chars(g, _ALNUM, 59)}", ""),
    "slack": lambda g: ("slack bot token ", f"xoxb-{_digits(g, 12)}-{_digits(g, 13)}-{_chars(g, _ALNUM, 24)}", ""),
    "openai": lambda g: ("OPENAI_API_KEY=", "sk-proj-" + _chars(g, _URLSAFE, 48) + _chars(g, _ALNUM, 8), ""),
    "stripe": lambda g: ("STRIPE_SECRET_KEY=", "sk_live_" + _chars(g, _ALNUM, 24), ""),
    "google": lambda g: ("maps key ", "AIza" + _chars(g, _URLSAFE, 34) + _chars(g, _ALNUM, 1), ""),
    "jwt": lambda g: ("Authorization: Bearer ", _jwt(g), ""),
    "client_secret": lambda g: ('"client_secret": "', _chars(g, _ALNUM, 32), '"'),
    "hex_api_key": lambda g: ("api_key: ", _chars(g, _HEX, 32), ""),
    "json_password": lambda g: ('{"user": "svc-deploy", "password": "', _chars(g, _ALNUM + "!#%&*", g.randint(12, 20)),
                                '"}'),
    "yaml_token": lambda g: ("config.yaml:\n  auth:\n    token: ", _chars(g, _URLSAFE, 32), "\n"),
    "password": lambda g: ("password=", _chars(g, _ALNUM + "!#%&*", g.randint(10, 16)), ""),
    "prose_api_key": lambda g: ("the API key is ", _chars(g, _ALNUM, 40), ""),
    "slack_webhook": lambda g: ("", f"https://hooks.slack.com/services/T{_chars(g, _UPPER_DIGITS, 8)}/"
                                    f"B{_chars(g, _UPPER_DIGITS, 10)}/{_chars(g, _ALNUM, 24)}", ""),
    "pem": lambda g: ("key file:\n", _pem(g), "\n"),
    "gcp_service_account": lambda g: ('{"type": "service_account", "project_id": "billing-prod", "private_key": "',
                                      _gcp_key_json(g), '", "token_uri": "https://oauth2.googleapis.com/token"}'),
    "azure_storage": lambda g: ("DefaultEndpointsProtocol=https;AccountName=billingprod;AccountKey=",
                                _chars(g, _B64, 86) + "==", ";EndpointSuffix=core.windows.net"),
    "gitlab": lambda g: ("GITLAB_TOKEN=", "glpat-" + _chars(g, _URLSAFE, 20), ""),
    "npm": lambda g: ("//registry.npmjs.org/:_authToken=", "npm_" + _chars(g, _ALNUM, 36), ""),
    "pypi": lambda g: ("password = ", "pypi-AgEIcHlwaS5vcmc" + _chars(g, _URLSAFE, 60), ""),
    "twilio": lambda g: ("twilio ", g.choice(["SK", "AC"]) + _chars(g, _HEX, 32), ""),
    "sendgrid": lambda g: ("SENDGRID_API_KEY ", f"SG.{_chars(g, _URLSAFE, 22)}.{_chars(g, _URLSAFE, 43)}", ""),
    "mailgun": lambda g: ("mailgun: ", "key-" + _chars(g, _HEX, 32), ""),
    "huggingface": lambda g: ("HF token ", "hf_" + _chars(g, string.ascii_letters, 34), ""),
    "databricks": lambda g: ("databricks host ok, ", "dapi" + _chars(g, _HEX, 32), ""),
    "shopify": lambda g: ("shopify admin ", "shpat_" + _chars(g, _HEX, 32), ""),
    "digitalocean": lambda g: ("doctl auth init -t ", "dop_v1_" + _chars(g, _HEX, 64), ""),
    "atlassian": lambda g: ("jira ", "ATATT3xFfGF0" + _chars(g, _URLSAFE, 180) + "=" + _chars(g, "0123456789ABCDEF", 8),
                            ""),
    "url_password": lambda g: (f"{g.choice(['postgres', 'mysql', 'amqp', 'https', 'redis'])}://"
                               f"{g.choice(['app', 'svc_ro', 'admin', 'deploy'])}:",
                               _chars(g, _ALNUM, g.randint(8, 16)),
                               f"@{g.choice(['db.internal', 'mq.prod.local', 'cache'])}:5432/app"),
}


def _secret(r: _Record) -> None:
    family = r.rng.choice(sorted(_SECRET_KINDS))
    before, value, after = _SECRET_KINDS[family](r.rng)
    r.add(before)
    r.add(value, "SECRET", family)
    r.add(after)


# --- negatives (look-alikes, unlabelled) ----------------------------------------------------------

def _negative(make: Callable[[random.Random], str]) -> Callable[[_Record], None]:
    def plant(r: _Record) -> None:
        r.negatives += 1
        r.add(make(r.rng))
    return plant


def _bad_card(rng: random.Random) -> str:
    number, groups = _card_number(rng)
    wrong = str((int(number[-1]) + rng.randint(1, 9)) % 10)
    return _format_groups(rng, number[:-1] + wrong, groups)


def _bad_ssn(rng: random.Random) -> str:
    d = _ssn_digits(rng)
    area = rng.choice(["000", "666", f"9{_digits(rng, 2)}"])
    return f"{area}-{d[3:5]}-{d[5:]}" if rng.random() < 0.7 else f"{d[:3]}-00-{d[5:]}"


def _bad_iban(rng: random.Random) -> str:
    iban = make_iban(rng)
    wrong = f"{(int(iban[2:4]) + rng.randint(1, 90)) % 97 + 2:02d}"
    return _group4(iban[:2] + wrong + iban[4:])


NEGATIVES: dict[str, Callable[[_Record], None]] = {
    "order_id": _negative(lambda g: g.choice([f"ORD-{g.randint(2019, 2025)}-{_digits(g, 5)}",
                                              f"PO-{_digits(g, 7)}", f"#{_digits(g, 6)}"])),
    "invoice_id": _negative(lambda g: f"INV-{_digits(g, 6)}"),
    "ticket_id": _negative(lambda g: g.choice([f"TCK-{_digits(g, 5)}", f"case {_digits(g, 8)}"])),
    "bad_card": _negative(_bad_card),
    "bad_ssn": _negative(_bad_ssn),
    "bad_iban": _negative(_bad_iban),
    "date": _negative(lambda g: g.choice([f"{g.randint(2019, 2025)}-{g.randint(1, 12):02d}-{g.randint(1, 28):02d}",
                                          f"{g.randint(1, 12):02d}/{g.randint(1, 28):02d}/{g.randint(2019, 2025)}",
                                          f"{g.randint(1, 28)}.{g.randint(1, 12):02d}.{g.randint(2019, 2025)}"])),
    "timestamp": _negative(lambda g: f"2024-{g.randint(1, 12):02d}-{g.randint(1, 28):02d}T{g.randint(0, 23):02d}:"
                                     f"{g.randint(0, 59):02d}:{g.randint(0, 59):02d}Z"),
    "version": _negative(lambda g: g.choice([f"v{g.randint(0, 9)}.{g.randint(0, 30)}.{g.randint(0, 20)}",
                                             f"{g.randint(1, 4)}.{g.randint(0, 30)}.{g.randint(0, 20)}",
                                             f"release {g.randint(2019, 2025)}.{g.randint(1, 12)}"])),
    "amount": _negative(lambda g: g.choice([f"${g.randint(1, 9)},{_digits(g, 3)}.{_digits(g, 2)}",
                                            f"EUR {g.randint(10, 999)}.{_digits(g, 2)}"])),
    "duration": _negative(lambda g: str(g.randint(12, 98000))),
    "port": _negative(lambda g: str(g.choice([22, 443, 3000, 5432, 8080, 8443, 9092]))),
    "uuid": _negative(lambda g: str(uuid.UUID(int=g.getrandbits(128)))),
    "sha": _negative(lambda g: _chars(g, "0123456789abcdef", 40)),
    "tool": _negative(lambda g: g.choice(TOOLS)),
    "config_noise": _negative(lambda g: g.choice(["max_tokens=4096", "token_count: 2048", "password_reset=true",
                                                  "api_key=<redacted>", "secret: ${VAULT_SECRET}",
                                                  "session_timeout=3600", "password: ********"])),
    "zip4": _negative(lambda g: f"{_digits(g, 5)}-{_digits(g, 4)}"),
    "clock": _negative(lambda g: g.choice([f"{g.randint(0, 23):02d}:{g.randint(0, 59):02d}",
                                           f"{g.randint(0, 23):02d}:{g.randint(0, 59):02d}:{g.randint(0, 59):02d}"])),
    "case_ref": _negative(lambda g: g.choice([f"case #{_digits(g, 7)}", f"case {_digits(g, 3)}-{_digits(g, 3)}-"
                                              f"{_digits(g, 4)}", f"order #{_digits(g, 10)}",
                                              f"invoice {_digits(g, 3)}.{_digits(g, 3)}.{_digits(g, 4)}",
                                              f"#{_digits(g, 3)}-{_digits(g, 3)}-{_digits(g, 4)}"])),
    "dotted": _negative(lambda g: g.choice([f"{g.randint(1, 9)}.{g.randint(0, 99)}.{g.randint(0, 999)}."
                                            f"{g.randint(0, 9999)}", f"{g.randint(2019, 2025)}.{g.randint(1, 12)}."
                                            f"{g.randint(1, 28)}.{g.randint(1, 9)}"])),
    "title_words": _negative(lambda g: g.choice(TITLE_WORDS)),
}

SLOTS: dict[str, Callable[[_Record], None]] = {
    "PERSON": _person, "FIRST": _first_name, "EMAIL_ADDRESS": _email, "PHONE_NUMBER": _phone,
    "CREDIT_CARD": _card, "US_SSN": _ssn, "US_SSN_BARE": _ssn_bare, "IBAN_CODE": _iban, "IP_ADDRESS": _ip,
    "SECRET": _secret, **NEGATIVES,
}

TEMPLATES: dict[str, tuple[str, ...]] = {
    "ticket": (
        "Customer {PERSON} ({EMAIL_ADDRESS}) reports that order {order_id} was charged twice to card {CREDIT_CARD}.",
        "Please call {PERSON} back on {PHONE_NUMBER} about ticket {ticket_id}; the refund of {amount} is pending.",
        "Refund to IBAN {IBAN_CODE} for {PERSON} approved on {date}.",
        "The customer typed {bad_card} at checkout, which the gateway rejected as invalid.",
        "{PERSON} cannot log in since the upgrade to {version}; last successful login from {IP_ADDRESS}.",
        "Escalated to {PERSON} (tier 2). Customer phone: {PHONE_NUMBER}.",
        "Wire transfer from {IBAN_CODE} bounced; reference {invoice_id}.",
        "Customer pasted a credential in the chat: {SECRET}. Rotated it and closed {ticket_id}.",
        "Caller verified identity with SSN {US_SSN} before we changed the address.",
        "Form rejected: SSN {bad_ssn} is not a valid number.",
        "The IBAN {bad_iban} failed the checksum, so we asked the customer to send it again.",
        "Order {order_id} shipped on {date}; invoice {invoice_id} totals {amount}.",
        "Customer asked us to WhatsApp {PERSON} on {PHONE_NUMBER} instead of e-mail.",
        "Re {case_ref}: the {title_words} page crashed at {clock}; ZIP {zip4}, build {dotted}.",
        "Checksum mismatch on {case_ref}. Keys were rotated at {clock} and {title_words} is back.",
    ),
    "email": (
        "Hi {FIRST},\n\nThanks for the update on {ticket_id}. I'll review it before {date}.",
        "From: {PERSON} <{EMAIL_ADDRESS}>\nSubject: Invoice {invoice_id}\n\nPlease find the invoice attached.",
        "Best regards,\n{PERSON}\nSenior Account Manager\nTel: {PHONE_NUMBER}",
        "Please update my bank details to {IBAN_CODE} before the payroll run on {date}.",
        "I've attached the contract for {PERSON}; they can be reached at {EMAIL_ADDRESS} or {PHONE_NUMBER}.",
        "Could you reset the VPN for {PERSON}? The gateway at {IP_ADDRESS} keeps rejecting the login.",
        "Dear {PERSON},\n\nyour card {CREDIT_CARD} was used for a payment of {amount}.",
        "The release notes for {version} are on the wiki; {tool} needs the new config.",
        "Kind regards,\n{PERSON}\nMobile: {PHONE_NUMBER} | Fax: {PHONE_NUMBER}",
        "Keys were rotated on {date}. Checksum verified against {sha}.\n\nThanks,\nRegards",
        "{title_words} is down again, see {case_ref}; ETA {clock}, build {dotted}.",
    ),
    "hr_note": (
        "Onboarding: {PERSON}, start date {date}, SSN {US_SSN}, payroll IBAN {IBAN_CODE}.",
        "Performance review for {PERSON} moved to {date}; manager {PERSON}.",
        "Emergency contact for {PERSON}: {PERSON} at {PHONE_NUMBER}.",
        "Benefits enrolment for {PERSON} completed. SSN: {US_SSN_BARE}.",
        "Expense claim {invoice_id} from {PERSON}: corporate card {CREDIT_CARD}, {amount}.",
        "Background check for {PERSON} cleared on {date}; personal email {EMAIL_ADDRESS}.",
        "Headcount plan {version} approved; {duration} hours of training budgeted.",
        "New hire {PERSON} (mobile {PHONE_NUMBER}) joins {PERSON}'s team on {date}.",
        "Payroll export checksum {sha} verified; {title_words} updated at {clock}, ZIP {zip4}.",
    ),
    "log": (
        "{timestamp} INFO auth: login ok user={EMAIL_ADDRESS} src={IP_ADDRESS} request_id={uuid}",
        "{timestamp} DEBUG http: GET /v1/orders/{order_id} {SECRET}",
        "{timestamp} ERROR payments: charge failed card={CREDIT_CARD} amount={amount} order={order_id}",
        "{timestamp} INFO build: {tool} job finished in {duration} ms, commit {sha}",
        "{timestamp} INFO sshd: Accepted publickey for deploy from {IP_ADDRESS} port {port}",
        "{timestamp} DEBUG config: {config_noise} {config_noise} image={version}",
        "{timestamp} WARN secrets-scan: found {SECRET} in repo infra, commit {sha}",
        "{timestamp} INFO kyc: verified {PERSON} phone={PHONE_NUMBER} iban={IBAN_CODE}",
        "{timestamp} INFO db: {tool} replica lag {duration} ms on port {port}",
        "{timestamp} INFO billing: {case_ref} amount={amount} zip={zip4} took {clock} build={dotted}",
        "{timestamp} WARN notify: sms to {PHONE_NUMBER} failed for user {EMAIL_ADDRESS}",
    ),
    "chat": (
        "{FIRST}: can someone rotate this? {SECRET} leaked in #general",
        "{FIRST}: ping {PERSON} on {PHONE_NUMBER} if the {tool} deploy breaks again",
        "{FIRST}: the dashboard at {IP_ADDRESS} shows p99 at {duration} ms after {version}",
        "{FIRST}: I'll pair with {PERSON} on {ticket_id} tomorrow",
        "{FIRST}: customer says card {bad_card} keeps failing, and it fails the checksum",
        "{FIRST}: merged {sha}, {tool} is green, shipping {version}",
        "{FIRST}: ☎ {PHONE_NUMBER} is {PERSON}'s cell, call after {clock}",
        "{FIRST}: {title_words} looks fine after {dotted}, see {case_ref}",
    ),
}
_JOINERS = {"ticket": " ", "email": "\n\n", "hr_note": " ", "log": "\n", "chat": "\n"}
_SLOT = re.compile(r"\{(\w+)\}")


def _fill(r: _Record, template: str) -> None:
    pos = 0
    for match in _SLOT.finditer(template):
        r.add(template[pos:match.start()])
        SLOTS[match.group(1)](r)
        pos = match.end()
    r.add(template[pos:])


def generate_record(rng: random.Random) -> LabelledRecord:
    """One record of 1-3 templates from one genre."""
    genre = rng.choice(sorted(TEMPLATES))
    r = _Record(rng)
    for i in range(rng.randint(1, 3)):
        if i:
            r.add(_JOINERS[genre])
        _fill(r, rng.choice(TEMPLATES[genre]))
    return LabelledRecord("".join(r.parts), tuple(r.spans), genre, r.negatives)


def generate_records(n: int, seed: int = 0) -> list[LabelledRecord]:
    """``n`` labelled records; the same ``(n, seed)`` always gives the same records."""
    rng = random.Random(seed)
    return [generate_record(rng) for _ in range(n)]
