"""How copies of one message drift apart in an enterprise export, as seeded edit operators.

A document is a :class:`Draft` (an optional greeting and closing around sentences of
words and :class:`Number` phrases) until it is rendered; edits that change its content
(typos, sentence order, how numbers are written) work on the draft, edits that add to or
reformat the text (forward/reply headers, signatures, confidentiality footers, case and
whitespace) work on the rendered text.  Every edit kind has three strengths:

=================  =============================  ==============================  ===============================
kind               light                          middle                          heavy
=================  =============================  ==============================  ===============================
forward            ``Fwd:`` line or a one-line     marker + 4-5 header lines        a note + 1-2 nested header blocks,
                   attribution                    (Gmail/Outlook/Apple/de/fr)      or a quoted (``>``) reply
signature          a tagline or a 2-line          sign-off, name, title, company,  + pronouns, address, mobile, web,
                   closing                        phone                            registered-office line
footer             one short notice line          one 35-60 word notice            ~100-170 words, or two languages
typos              1% of words                    3% of words                      6% of words
sentence_swap      1 swap of two sentences        2 swaps                          3 swaps
case_whitespace    re-wrapped lines, doubled      + one sentence upper-cased,      + all caps or all lower, words
                   spaces, CRLF                   tabs, no-break spaces            hyphenated at line ends, smart
                                                                                   quotes, spaces before punctuation
number_words       a quarter of the numbers       half of them                     all of them
                   switch digits <-> words
=================  =============================  ==============================  ===============================

Names come from many cultures, clients from several countries, and signatures, footers
and headers each in several styles, because the point is to test the deduper on text it
was not written against.  What it does not cover is listed in ``docs/curation-filters.md``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
from typing import Callable, Union

from services.curation.number_words import ordinal

EDIT_KINDS = ("forward", "signature", "footer", "typos", "sentence_swap", "case_whitespace", "number_words")
STRENGTHS = ("light", "middle", "heavy")

_PEOPLE = (
    ("Ana", "López García"), ("Wei", "Zhang"), ("Oluwaseun", "Adeyemi"), ("Priya", "Raghunathan"),
    ("Jürgen", "Müller"), ("Siobhán", "Ní Bhriain"), ("Lan", "Nguyễn"), ("Mohammed", "Al-Farsi"),
    ("Yuki", "Tanaka"), ("Kwame", "Mensah"), ("Zofia", "Kowalczyk"), ("José", "da Silva"), ("Aroha", "Ngata"),
    ("Tomás", "O'Connor"), ("Fatima", "Zahra Benali"), ("Hyun-woo", "Park"), ("Ingrid", "Johansson"),
    ("Rahul", "Deshpande"), ("Chiamaka", "Okafor"), ("Dmitri", "Volkov"), ("Maëlle", "Lefèvre"),
    ("Sipho", "Dlamini"), ("Ayşe", "Yılmaz"), ("Mateo", "Fernández"), ("Hannah", "Schmidt-Weber"),
    ("Kenji", "Watanabe"), ("Leilani", "Kahale"), ("Giulia", "Rossi"), ("Arjun", "Mehta"), ("Emily", "Clarke"),
)
_COMPANIES = (
    ("Northwind Bank plc", "northwindbank.co.uk", "+44 20 7946 0{n:03d}", "1 Canada Square, London E14 5AB"),
    ("Contoso Finanz AG", "contoso-finanz.de", "+49 69 1234 5{n:03d}", "Taunusanlage 8, 60329 Frankfurt am Main"),
    ("Fabrikam Health Inc.", "fabrikamhealth.com", "(415) 555-0{n:03d}", "500 Market St, Suite 300, San Francisco, CA"),
    ("Tailspin Assurances SA", "tailspin-assurances.fr", "+33 1 42 68 5{n:03d}", "12 rue de la Paix, 75002 Paris"),
    ("Adatum Seguros S.L.", "adatumseguros.es", "+34 91 123 4{n:03d}", "Paseo de la Castellana 95, 28046 Madrid"),
    ("Woodgrove Credit Union", "woodgrovecu.org", "+1 (312) 555-0{n:03d}", "233 S Wacker Dr, Chicago, IL 60606"),
)
_TITLES = ("Senior Analyst, Finance Operations", "Relationship Manager", "Head of Compliance", "Claims Handler",
           "Teamleiterin Kundenservice", "Chargée de clientèle", "Data Protection Officer", "IT Service Desk",
           "Underwriter | Commercial Lines", "VP, Treasury", "Nurse Practitioner", "Payroll Specialist")
_SUBJECTS = ("Q2 figures", "Updated payment schedule", "Your claim", "Meeting notes", "Access request",
             "Re: invoice query", "Rückfrage zur Rechnung", "Dossier client", "Onboarding checklist",
             "Incident report", "Policy renewal", "Budget review")
_SIGN_OFFS = ("Best regards,", "Kind regards,", "Regards,", "Thanks,", "Many thanks,", "Cheers,", "Best,",
              "Sincerely,", "Thank you,", "Mit freundlichen Grüßen", "Viele Grüße", "Cordialement,", "Saludos,",
              "Met vriendelijke groet,", "All the best,", "Warm regards,")
_TAGLINES = ("Sent from my iPhone", "Sent from my Galaxy", "Get Outlook for Android", "Get Outlook for iOS",
             "Von meinem iPhone gesendet", "Envoyé de mon iPad", "Sent from Mail for Windows")
_NOTES = ("FYI, see below.", "Adding Tom for visibility.", "Forwarding as discussed.", "Please see the thread below.",
          "Can you take a look at this?", "Zur Info.", "Pour info, voir ci-dessous.")
_SHORT_FOOTERS = (
    "CONFIDENTIAL: for internal use only.",
    "Please consider the environment before printing this email.",
    "This email has been scanned for viruses and malware.",
    "Privileged and confidential. Do not forward.",
    "Diese E-Mail ist vertraulich.",
)
_MIDDLE_FOOTERS = (
    "This message and any attachments are confidential and intended solely for the addressee. If you have "
    "received this message in error, please notify the sender immediately and delete it from your system. Any "
    "unauthorised use, disclosure or copying is strictly prohibited.",
    "CONFIDENTIALITY NOTICE: The information contained in this e-mail is privileged and confidential and is "
    "intended only for the use of the individual or entity named above. If you are not the intended recipient, "
    "you are hereby notified that any dissemination, distribution or copying of this communication is strictly "
    "prohibited.",
    "Diese E-Mail enthält vertrauliche und/oder rechtlich geschützte Informationen. Wenn Sie nicht der richtige "
    "Adressat sind oder diese E-Mail irrtümlich erhalten haben, informieren Sie bitte sofort den Absender und "
    "vernichten Sie diese Mail. Das unerlaubte Kopieren sowie die unbefugte Weitergabe dieser Mail ist nicht "
    "gestattet.",
    "Ce message et toutes les pièces jointes sont confidentiels et établis à l'intention exclusive de ses "
    "destinataires. Toute utilisation ou diffusion non autorisée est interdite. Si vous avez reçu ce message par "
    "erreur, merci de le détruire et d'en avertir immédiatement l'expéditeur.",
)
_LONG_FOOTER_EXTRA = (
    "E-mail transmission cannot be guaranteed to be secure or error-free as information could be intercepted, "
    "corrupted, lost, destroyed, arrive late or incomplete, or contain viruses. The sender therefore does not "
    "accept liability for any errors or omissions in the contents of this message which arise as a result of "
    "e-mail transmission. If verification is required please request a hard-copy version. This message is "
    "provided for informational purposes and should not be construed as a solicitation or offer to buy or sell "
    "any securities or related financial instruments.",
    "We may monitor and record e-mail traffic for compliance, security and training purposes. Our privacy notice "
    "explains how we process personal data and your rights; it is available on our website or on request from "
    "the Data Protection Officer. Nothing in this message constitutes a binding agreement unless expressly "
    "confirmed in writing by an authorised signatory. Registered office as above; registered in England and "
    "Wales, company number 01234567.",
)
_REGISTRATION = ("{company} is registered in England and Wales under company number 0{n}4{n}7{n}. Registered "
                 "office: {address}.",
                 "Sitz der Gesellschaft: Frankfurt am Main, Amtsgericht Frankfurt HRB {n}{n}417, Vorstand: "
                 "{first} {last}")
_SEPARATORS = ("\n\n", "\n", "\n\n________________________________\n", "\n\n---\n", "\n\n* * *\n")
_GREETINGS = ("Hi {first},", "Hello team,", "Dear {first} {last},", "Good morning all,", "Hallo {first},",
              "Bonjour {first},", "Hi all,", "{first},", "Dear colleagues,")
_CLOSINGS = ("Thanks,\n{first}", "Best,\n{first}", "Cheers\n{initial}", "Regards,\n{first} {last}", "Thx\n{first}")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_LONG_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
_LONG_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
                "October", "November", "December")
_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_COUNT_NOUNS = ("invoices", "days", "accounts", "payments", "branches", "tickets", "employees", "weeks", "items",
                "customers", "reminders", "hours")
_ORDINAL_NOUNS = ("quarter", "floor", "reminder", "attempt", "week", "instalment", "time", "round", "draft")
_AMOUNT_NOUNS = ("euros", "dollars", "units", "pounds", "shares")
_UNIT_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
               "sixteen seventeen eighteen nineteen").split()
_TENS_WORDS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}


@dataclass(frozen=True)
class Number:
    """A number phrase that can be written in digits or in words ("3rd floor" / "third floor").

    ``kind`` is ``count``, ``ordinal``, ``percent`` or ``amount``; ``variant`` picks one of
    the equivalent spellings (``25%``/``25 percent``, ``1,200``/``1200``, with or without
    "and") so that not every document writes numbers the same way.
    """

    value: int
    kind: str
    noun: str
    as_words: bool
    variant: int

    def render(self) -> str:
        number = self._words() if self.as_words else self._digits()
        if self.kind == "percent":
            return f"{number}{'%' if not self.as_words and self.variant % 2 == 0 else ' percent'}"
        return f"{number} {self.noun}"

    def _digits(self) -> str:
        if self.kind == "ordinal":
            return ordinal(self.value)
        if self.value >= 1000 and self.variant % 3 != 2:
            return f"{self.value:,}"
        return str(self.value)

    def _words(self) -> str:
        words = number_to_words(self.value, hyphen=self.variant % 2 == 0, use_and=self.variant % 3 == 0)
        if self.kind != "ordinal":
            return words
        last = re.split(r"([ -])", words)
        tail = last[-1]
        if tail in _ORDINAL_WORDS:
            tail = _ORDINAL_WORDS[tail]
        elif tail.endswith("y"):
            tail = tail[:-1] + "ieth"
        else:
            tail += "th"
        return "".join(last[:-1]) + tail


Piece = Union[str, Number]


@dataclass(frozen=True)
class Draft:
    """A document before rendering; ``layout`` seeds punctuation and paragraph breaks."""

    greeting: str
    sentences: tuple[tuple[Piece, ...], ...]
    closing: str
    layout: int


def number_to_words(value: int, hyphen: bool = True, use_and: bool = True) -> str:
    """English words for 0 <= value < 1,000,000 ("one thousand two hundred and five")."""
    if value < 20:
        return _UNIT_WORDS[value]
    if value < 100:
        tens, unit = divmod(value, 10)
        return _TENS_WORDS[tens] + (("-" if hyphen else " ") + _UNIT_WORDS[unit] if unit else "")
    if value < 1000:
        hundreds, rest = divmod(value, 100)
        head = f"{_UNIT_WORDS[hundreds]} hundred"
        return head if not rest else f"{head} {'and ' if use_and else ''}{number_to_words(rest, hyphen)}"
    thousands, rest = divmod(value, 1000)
    head = f"{number_to_words(thousands, hyphen, use_and)} thousand"
    if not rest:
        return head
    joiner = " and " if use_and and rest < 100 else " "
    return head + joiner + number_to_words(rest, hyphen, use_and)


def random_number(rng: random.Random) -> Number:
    kind = rng.choice(("count", "count", "ordinal", "ordinal", "percent", "amount"))
    if kind == "count":
        value, noun = rng.randint(2, 60), rng.choice(_COUNT_NOUNS)
    elif kind == "ordinal":
        noun = rng.choice(_ORDINAL_NOUNS)
        value = rng.randint(1, 4) if noun == "quarter" else rng.randint(1, 31)
    elif kind == "percent":
        value, noun = rng.randint(1, 99), ""
    else:
        value, noun = rng.randint(11, 999) * 10, rng.choice(_AMOUNT_NOUNS)
    return Number(value, kind, noun, as_words=rng.random() < 0.4, variant=rng.randrange(6))


def person(rng: random.Random) -> dict[str, str]:
    first, last = rng.choice(_PEOPLE)
    company, domain, phone, address = rng.choice(_COMPANIES)
    n = rng.randrange(1000)
    email = f"{_ascii(first)[0].lower()}.{_ascii(last).split()[-1].lower()}@{domain}"
    return {"first": first, "last": last, "initial": first[0], "company": company, "domain": domain,
            "phone": phone.format(n=n), "address": address, "email": email, "title": rng.choice(_TITLES),
            "n": str(n % 10)}


def greeting_and_closing(rng: random.Random) -> tuple[str, str]:
    """An e-mail's own greeting and short closing (part of the document, not an edit)."""
    recipient, sender = person(rng), person(rng)
    return rng.choice(_GREETINGS).format(**recipient), rng.choice(_CLOSINGS).format(**sender)


def render(draft: Draft) -> str:
    """Sentences with capitals, commas, end punctuation and paragraph breaks, all drawn from ``layout``."""
    rng = random.Random(draft.layout)
    out = [draft.greeting + "\n\n"] if draft.greeting else []
    paragraph_every = rng.randint(3, 6)
    for index, sentence in enumerate(draft.sentences):
        words = [piece.render() if isinstance(piece, Number) else piece for piece in sentence]
        words[0] = words[0][:1].upper() + words[0][1:]
        if len(words) > 6 and rng.random() < 0.4:
            words[3] += ","
        separator = "\n\n" if (index + 1) % paragraph_every == 0 else rng.choice((" ", " ", "  ", "\n"))
        out.append(" ".join(words) + rng.choice((".", ".", ".", "!", "?", ";")) + separator)
    text = "".join(out).strip()
    return f"{text}\n\n{draft.closing}" if draft.closing else text


# --- edits of the draft -----------------------------------------------------------------------------

def number_words(draft: Draft, strength: str, rng: random.Random) -> Draft:
    """Write a share of the numbers the other way (digits <-> words); at least one if there is any."""
    positions = [(s, p) for s, sentence in enumerate(draft.sentences) for p, piece in enumerate(sentence)
                 if isinstance(piece, Number)]
    if not positions:
        return draft
    share = {"light": 0.25, "middle": 0.5, "heavy": 1.0}[strength]
    chosen = set(rng.sample(positions, max(1, round(share * len(positions)))))
    sentences = tuple(
        tuple(replace(piece, as_words=not piece.as_words) if (s, p) in chosen and isinstance(piece, Number) else piece
              for p, piece in enumerate(sentence))
        for s, sentence in enumerate(draft.sentences))
    return replace(draft, sentences=sentences)


def sentence_swap(draft: Draft, strength: str, rng: random.Random) -> Draft:
    """Swap two sentences, 1/2/3 times (paragraph breaks stay where they were)."""
    sentences = list(draft.sentences)
    if len(sentences) < 2:
        return draft
    for _ in range({"light": 1, "middle": 2, "heavy": 3}[strength]):
        i, j = rng.sample(range(len(sentences)), 2)
        sentences[i], sentences[j] = sentences[j], sentences[i]
    return replace(draft, sentences=tuple(sentences))


def typos(draft: Draft, strength: str, rng: random.Random) -> Draft:
    """Misspell 1/3/6% of the words: transpositions, drops, doubles, neighbouring keys, stray letters."""
    rate = {"light": 0.01, "middle": 0.03, "heavy": 0.06}[strength]
    words = [(s, p) for s, sentence in enumerate(draft.sentences) for p, piece in enumerate(sentence)
             if isinstance(piece, str) and len(piece) >= 3]
    if not words:
        return draft
    chosen = set(rng.sample(words, max(1, round(rate * len(words)))))
    sentences = tuple(
        tuple(_misspell(piece, rng) if (s, p) in chosen and isinstance(piece, str) else piece
              for p, piece in enumerate(sentence))
        for s, sentence in enumerate(draft.sentences))
    return replace(draft, sentences=sentences)


def _misspell(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word) - 1)
    op = rng.choice(("transpose", "drop", "double", "neighbour", "insert"))
    if op == "transpose":
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if op == "drop":
        return word[:i] + word[i + 1:]
    if op == "double":
        return word[:i] + word[i] + word[i:]
    if op == "neighbour":
        return word[:i] + _neighbour_key(word[i], rng) + word[i + 1:]
    return word[:i] + rng.choice("etaoinshrdlu") + word[i:]


def _neighbour_key(char: str, rng: random.Random) -> str:
    for row in _KEYBOARD_ROWS:
        at = row.find(char.lower())
        if at >= 0:
            return rng.choice([row[k] for k in (at - 1, at + 1) if 0 <= k < len(row)])
    return char


# --- edits of the rendered text ---------------------------------------------------------------------

def forward(text: str, strength: str, rng: random.Random) -> str:
    """Prefix a forward or reply: a subject line, a client's header block, a note, nested forwards."""
    sender, recipient = person(rng), person(rng)
    subject = rng.choice(_SUBJECTS)
    if strength == "light":
        return rng.choice((
            f"Fwd: {subject}\n\n{text}",
            f"FW: {subject}\n{text}",
            f"On {_short_date(rng)}, {sender['first']} wrote:\n\n{text}",
            f"RE: {subject}\n\n{text}",
        ))
    block = _header_block(sender, recipient, subject, rng)
    if strength == "middle":
        return f"{block}\n\n{text}"
    note = rng.choice(_NOTES)
    if rng.random() < 0.5:
        quoted = "\n".join(f"> {line}" if line else ">" for line in text.splitlines())
        attribution = rng.choice((
            f"On {_short_date(rng)} {sender['first']} {sender['last']} <{sender['email']}> wrote:",
            f"Le {rng.randint(1, 28)} {rng.choice(('janv.', 'févr.', 'mars', 'avr.'))} 2022 à 10:{rng.randint(10, 59)}, "
            f"{sender['first']} {sender['last']} <{sender['email']}> a écrit :",
            f"Am {rng.randint(1, 28)}.{rng.randint(1, 12)}.2022 um 09:{rng.randint(10, 59)} schrieb "
            f"{sender['first']} {sender['last']}:",
        ))
        return f"{note}\n\n{attribution}\n\n{quoted}"
    outer = _header_block(person(rng), sender, f"Fwd: {subject}", rng)
    return f"{note}\n\n{outer}\n\n{block}\n\n{text}"


def _header_block(sender: dict[str, str], recipient: dict[str, str], subject: str, rng: random.Random) -> str:
    style = rng.randrange(5)
    if style == 0:
        return (f"---------- Forwarded message ---------\nFrom: {sender['first']} {sender['last']} "
                f"<{sender['email']}>\nDate: {_short_date(rng)}\nSubject: {subject}\n"
                f"To: {recipient['first']} {recipient['last']} <{recipient['email']}>")
    if style == 1:
        return (f"-----Original Message-----\nFrom: {sender['last']}, {sender['first']}\nSent: {_long_date(rng)}\n"
                f"To: {recipient['first']} {recipient['last']}; {person(rng)['first']}\n"
                f"Cc: {person(rng)['email']}\nSubject: RE: {subject}")
    if style == 2:
        return (f"Begin forwarded message:\n\nFrom: {sender['first']} {sender['last']} <{sender['email']}>\n"
                f"Subject: {subject}\nDate: {_long_date(rng)}\nTo: {recipient['email']}")
    if style == 3:
        return (f"________________________________\nVon: {sender['first']} {sender['last']} <{sender['email']}>\n"
                f"Gesendet: {_long_date(rng)}\nAn: {recipient['first']} {recipient['last']}\nBetreff: WG: {subject}")
    return (f"-------- Message transféré --------\nDe : {sender['first']} {sender['last']} <{sender['email']}>\n"
            f"Date : {_short_date(rng)}\nÀ : {recipient['email']}\nObjet : TR: {subject}")


def _short_date(rng: random.Random) -> str:
    return (f"{rng.choice(_WEEKDAYS)}, {rng.choice(_MONTHS)} {rng.randint(1, 28)}, 2022 at "
            f"{rng.randint(1, 12)}:{rng.randint(0, 59):02d} {rng.choice(('AM', 'PM'))}")


def _long_date(rng: random.Random) -> str:
    return (f"{rng.choice(_LONG_WEEKDAYS)}, {rng.choice(_LONG_MONTHS)} {rng.randint(1, 28)}, 2022 "
            f"{rng.randint(1, 12)}:{rng.randint(0, 59):02d} {rng.choice(('AM', 'PM'))}")


def signature(text: str, strength: str, rng: random.Random) -> str:
    """Append a sign-off and signature block in one of several layouts."""
    who = person(rng)
    last_line = text.rsplit("\n", 1)[-1].strip()
    has_closing = "\n" in text[-40:] and len(last_line.split()) <= 3 and not last_line.endswith(".")
    sign_off = "" if has_closing else rng.choice(_SIGN_OFFS) + "\n"
    if strength == "light":
        return rng.choice((f"{text}\n\n{rng.choice(_TAGLINES)}", f"{text}\n\n{sign_off}{who['first']}",
                           f"{text}\n\n-- \n{who['first']} {who['last']}"))
    name = f"{who['first']} {who['last']}"
    layouts = (
        f"{name}\n{who['title']}\n{who['company']}\nTel: {who['phone']}",
        f"{name} | {who['title']} | {who['company']}\nT {who['phone']} | {who['email']}",
        f"{name}\n{who['title']}, {who['company']}\nDirect: {who['phone']}\n{who['email']}",
    )
    block = f"{sign_off}{rng.choice(layouts)}"
    if strength == "middle":
        return f"{text}\n\n{block}"
    extras = [f"({rng.choice(('she/her', 'he/him', 'they/them'))})", who["address"],
              f"Mobile: {who['phone'][:-3]}{rng.randint(100, 999)}", f"www.{who['domain']}",
              rng.choice(("LinkedIn | Twitter | Instagram", "Follow us on LinkedIn", "Banking made simple.")),
              rng.choice(_REGISTRATION).format(**who), rng.choice(_TAGLINES)]
    return f"{text}\n\n{block}\n" + "\n".join(extras[:rng.randint(5, len(extras))])


def footer(text: str, strength: str, rng: random.Random) -> str:
    """Append a confidentiality or environment notice, short, one paragraph or long."""
    separator = rng.choice(_SEPARATORS)
    if strength == "light":
        return f"{text}{separator}{rng.choice(_SHORT_FOOTERS)}"
    notice = rng.choice(_MIDDLE_FOOTERS)
    if strength == "heavy":
        if rng.random() < 0.5:
            notice = f"{notice}\n\n{rng.choice(_LONG_FOOTER_EXTRA)}"
        else:
            notice = f"{notice}\n\n{rng.choice([f for f in _MIDDLE_FOOTERS if f != notice])}"
    return f"{text}{separator}{_wrap(notice, rng.randint(60, 100)) if rng.random() < 0.5 else notice}"


def case_whitespace(text: str, strength: str, rng: random.Random) -> str:
    """Re-wrap, re-space and re-case the text the way exports and copy-paste do."""
    if strength != "light":
        pieces = re.split(r"(?<=[.!?;])(\s+)", text)        # sentences at even indices, their gaps at odd
        pick = 2 * rng.randrange((len(pieces) + 1) // 2)
        pieces[pick] = pieces[pick].upper()
        text = "".join(pieces)
    if strength == "heavy":
        text = rng.choice((str.upper, str.lower))(text)
        text = text.replace(", ", " , ").replace("'", "\u2019")
    text = _wrap(text, rng.randint(55, 80), hyphenate=strength == "heavy", rng=rng)
    text = re.sub(r" ", lambda m: rng.choice((" ", " ", " ", " ", "  ")), text)
    if strength != "light":
        text = re.sub(r" ", lambda m: rng.choice((" ",) * 8 + ("\t", "\u00a0")), text)
        text = "\n".join(line + rng.choice(("", "", " ", "\t")) for line in text.split("\n"))
    return text.replace("\n", "\r\n") if rng.random() < 0.5 else text


def _wrap(text: str, width: int, hyphenate: bool = False, rng: random.Random | None = None) -> str:
    """Hard-wrap every line longer than ``width``, as plain-text mail and PDF exports do.

    Short lines (signatures, headers) keep their breaks.  With ``hyphenate``, a long word at
    a break is split across the lines with a hyphen half of the time.
    """
    out: list[str] = []
    for original in text.split("\n"):
        line = ""
        for word in original.split(" "):
            if line and len(line) + 1 + len(word) > width:
                if hyphenate and rng is not None and len(word) >= 6 and word.isalpha() and rng.random() < 0.5:
                    cut = rng.randint(3, len(word) - 3)
                    out.append(f"{line} {word[:cut]}-")
                    line = word[cut:]
                    continue
                out.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        out.append(line)
    return "\n".join(out)


def _ascii(name: str) -> str:
    return re.sub(r"[^A-Za-z ]", "", name.replace("ü", "ue").replace("é", "e").replace("ë", "e")) or "x"


DRAFT_EDITS: dict[str, Callable[[Draft, str, random.Random], Draft]] = {
    "number_words": number_words, "sentence_swap": sentence_swap, "typos": typos}
TEXT_EDITS: dict[str, Callable[[str, str, random.Random], str]] = {
    "signature": signature, "footer": footer, "forward": forward, "case_whitespace": case_whitespace}
